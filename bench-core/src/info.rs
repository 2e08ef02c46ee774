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

    pub fn get_f64(&self, field: &str) -> Option<f64> {
        self.get(field)?.parse().ok()
    }

    /// Several servers' INFO as one: CPU seconds (`used_cpu_user`, `used_cpu_sys`) and
    /// `commandstats` calls and usec summed over them, every other field from the first.
    /// A cluster's cost per request is its primaries' together.
    pub fn sum(infos: &[Info]) -> Info {
        let Some(first) = infos.first() else {
            return Info::default();
        };
        let mut out = first.clone();
        for field in ["used_cpu_user", "used_cpu_sys"] {
            let total: Option<f64> = infos.iter().map(|i| i.get_f64(field)).sum();
            if let (Some(total), Some(section)) = (total, out.sections.get_mut("cpu")) {
                section.insert(field.into(), format!("{total:.6}"));
            }
        }
        let mut stats: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for info in infos {
            for (command, (calls, usec)) in info.commandstats() {
                let entry = stats.entry(command).or_default();
                entry.0 += calls;
                entry.1 += usec;
            }
        }
        if !stats.is_empty() {
            out.sections.insert(
                "commandstats".into(),
                stats
                    .into_iter()
                    .map(|(c, (calls, usec))| {
                        (format!("cmdstat_{c}"), format!("calls={calls},usec={usec}"))
                    })
                    .collect(),
            );
        }
        out
    }

    /// Server CPU seconds so far: `used_cpu_user` + `used_cpu_sys`.
    pub fn cpu_seconds(&self) -> Option<f64> {
        Some(self.get_f64("used_cpu_user")? + self.get_f64("used_cpu_sys")?)
    }

    /// `INFO commandstats`: lowercase command name → (calls, usec).
    /// Lines look like `cmdstat_get:calls=10,usec=20,usec_per_call=2.00,...`.
    pub fn commandstats(&self) -> BTreeMap<String, (u64, u64)> {
        let mut out = BTreeMap::new();
        let Some(fields) = self.sections.get("commandstats") else {
            return out;
        };
        for (key, value) in fields {
            let Some(command) = key.strip_prefix("cmdstat_") else {
                continue;
            };
            let mut calls = None;
            let mut usec = None;
            for part in value.split(',') {
                match part.split_once('=') {
                    Some(("calls", v)) => calls = v.parse().ok(),
                    Some(("usec", v)) => usec = v.parse().ok(),
                    _ => {}
                }
            }
            if let (Some(c), Some(u)) = (calls, usec) {
                out.insert(command.to_string(), (c, u));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Server\r\nvalkey_version:8.1.1\r\nio_threads_active:0\r\n\r\n\
                          # Memory\r\nused_memory:1015000\r\nused_memory_human:991.21K\r\n\
                          \r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n";

    #[test]
    fn reads_commandstats_and_cpu() {
        let info = Info::parse(
            "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\r\n# Commandstats\r\n\
             cmdstat_get:calls=10,usec=25,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_config|get:calls=1,usec=3,usec_per_call=3.00\r\n",
        );
        assert_eq!(info.cpu_seconds(), Some(3.75));
        let stats = info.commandstats();
        assert_eq!(stats["get"], (10, 25));
        assert_eq!(stats["config|get"], (1, 3));
        assert!(Info::parse("").commandstats().is_empty());
    }

    #[test]
    fn a_sum_adds_cpu_and_command_counts() {
        let one = |cpu: f64, calls: u64| {
            Info::parse(&format!(
                "# Server\r\nredis_version:8.1.1\r\n# CPU\r\nused_cpu_sys:{cpu}\r\nused_cpu_user:1.5\r\n\
                 # Commandstats\r\ncmdstat_get:calls={calls},usec={},usec_per_call=2.00\r\n",
                calls * 2
            ))
        };
        let sum = Info::sum(&[one(1.0, 10), one(2.0, 30)]);
        assert!((sum.cpu_seconds().unwrap() - 6.0).abs() < 1e-9);
        assert_eq!(sum.commandstats()["get"], (40, 80));
        assert_eq!(sum.get("redis_version"), Some("8.1.1"));
        assert_eq!(Info::sum(&[]).cpu_seconds(), None);
    }

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
