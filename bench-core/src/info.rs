//! Parsing of the `INFO` reply into sections of `field:value` pairs.

use std::collections::BTreeMap;

/// The `INFO` reply: section name (lowercase, as in `# Memory` → `memory`) to its fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Info {
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Info {
    pub fn parse(text: &str) -> Info {
        let mut info = Info::default();
        let mut section = String::from("default");
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(name) = line.strip_prefix("# ") {
                section = name.trim().to_ascii_lowercase();
                info.sections.entry(section.clone()).or_default();
            } else if let Some((key, value)) = line.split_once(':') {
                info.sections
                    .entry(section.clone())
                    .or_default()
                    .insert(key.to_string(), value.to_string());
            }
        }
        info
    }

    /// A field from any section (field names are unique across INFO sections).
    pub fn get(&self, field: &str) -> Option<&str> {
        self.sections
            .values()
            .find_map(|fields| fields.get(field))
            .map(String::as_str)
    }

    pub fn get_u64(&self, field: &str) -> Option<u64> {
        self.get(field)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Server\r\nvalkey_version:8.1.1\r\nio_threads_active:0\r\n\r\n\
                          # Memory\r\nused_memory:1015000\r\nused_memory_human:991.21K\r\n\
                          \r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n";

    #[test]
    fn finds_fields_by_section_and_by_name() {
        let info = Info::parse(SAMPLE);
        assert_eq!(info.get("valkey_version"), Some("8.1.1"));
        assert_eq!(info.get_u64("used_memory"), Some(1_015_000));
        assert_eq!(info.sections["memory"]["used_memory_human"], "991.21K");
        assert_eq!(
            info.sections["keyspace"]["db0"],
            "keys=3,expires=0,avg_ttl=0"
        );
        assert_eq!(info.get("missing"), None);
        assert_eq!(info.get_u64("used_memory_human"), None);
    }
}
