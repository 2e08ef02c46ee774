//! The Create tab's form: a bench or compare task with the lists in human units, turned
//! into the flags `queue add` takes. Pure: editing and the flags; the planner that counts
//! and validates the tasks is the caller's.

use crate::queue::TaskKind;

/// What a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// One of a few values, changed with ←/→.
    Choice(&'static [&'static str]),
    /// Text typed in.
    Text,
}

#[derive(Clone, Debug)]
pub struct Field {
    pub label: &'static str,
    /// The flag it becomes (empty: the form's own: the kind).
    pub flag: &'static str,
    pub kind: FieldKind,
    pub value: String,
    /// Which task kinds show it.
    pub bench: bool,
    pub compare: bool,
    pub hint: &'static str,
}

const KINDS: &[&str] = &["bench", "compare"];
const SUITES: &[&str] = &["perf", "mem", "sync"];
const YES_NO: &[&str] = &["no", "yes"];
const MODES: &[&str] = &["auto", "time", "instructions"];

fn field(
    label: &'static str,
    flag: &'static str,
    kind: FieldKind,
    (bench, compare): (bool, bool),
    hint: &'static str,
) -> Field {
    let value = match kind {
        FieldKind::Choice(values) => values[0].to_string(),
        FieldKind::Text => String::new(),
    };
    Field {
        label,
        flag,
        kind,
        value,
        bench,
        compare,
        hint,
    }
}

#[derive(Clone, Debug)]
pub struct Form {
    pub fields: Vec<Field>,
    /// The focused row among the visible fields; one past the last is the submit line.
    pub focus: usize,
}

impl Default for Form {
    fn default() -> Form {
        use FieldKind::{Choice, Text};
        let both = (true, true);
        Form {
            fields: vec![
                field("kind", "", Choice(KINDS), both, "←/→"),
                field("suite", "--suite", Choice(SUITES), both, "←/→"),
                field(
                    "builds",
                    "--valkey-version",
                    Text,
                    (true, false),
                    "pinned versions, e.g. 8.1.1,9.1.2",
                ),
                field(
                    "baseline",
                    "--baseline",
                    Text,
                    (false, true),
                    "a pinned version or a revision",
                ),
                field(
                    "candidate",
                    "--candidate",
                    Text,
                    (false, true),
                    "a pinned version or a revision",
                ),
                field("mode", "--mode", Choice(MODES), (false, true), "←/→"),
                field("commands", "--commands", Text, both, "e.g. GET,SET"),
                field("value sizes", "--value-sizes", Text, both, "e.g. 16,64,1K"),
                field("pipelines", "--pipelines", Text, both, "e.g. 1..64x2"),
                field("clients", "--clients", Text, both, "e.g. 10,50"),
                field("io-threads", "--io-threads", Text, both, "e.g. 1..4"),
                field("keyspaces", "--keyspaces", Text, both, "e.g. 100K,1M"),
                field("quick", "--quick", Choice(YES_NO), both, "←/→"),
                field("topology", "--topology", Text, both, "e.g. cluster:3x0"),
                field(
                    "other flags",
                    "",
                    Text,
                    both,
                    "as the command takes them, e.g. --duration 10",
                ),
            ],
            focus: 0,
        }
    }
}

impl Form {
    pub fn kind(&self) -> TaskKind {
        match self.fields[0].value.as_str() {
            "compare" => TaskKind::Compare,
            _ => TaskKind::Bench,
        }
    }

    /// The fields this kind shows, by index into `fields`.
    pub fn visible(&self) -> Vec<usize> {
        let compare = self.kind() == TaskKind::Compare;
        (0..self.fields.len())
            .filter(|&i| {
                let f = &self.fields[i];
                if compare { f.compare } else { f.bench }
            })
            .collect()
    }

    /// Whether the focus is on the submit line.
    pub fn on_submit(&self) -> bool {
        self.focus >= self.visible().len()
    }

    fn focused(&mut self) -> Option<&mut Field> {
        let visible = self.visible();
        let i = *visible.get(self.focus)?;
        Some(&mut self.fields[i])
    }

    pub fn up(&mut self) {
        self.focus = self.focus.saturating_sub(1);
    }

    pub fn down(&mut self) {
        self.focus = (self.focus + 1).min(self.visible().len());
    }

    /// ←/→ on a choice.
    pub fn cycle(&mut self, forward: bool) {
        if let Some(f) = self.focused()
            && let FieldKind::Choice(values) = f.kind
        {
            let at = values.iter().position(|v| *v == f.value).unwrap_or(0);
            let next = if forward {
                (at + 1) % values.len()
            } else {
                (at + values.len() - 1) % values.len()
            };
            f.value = values[next].to_string();
        }
        self.focus = self.focus.min(self.visible().len());
    }

    pub fn type_char(&mut self, c: char) {
        if let Some(f) = self.focused()
            && f.kind == FieldKind::Text
            && !c.is_control()
            && f.value.len() < 400
        {
            f.value.push(c);
        }
    }

    pub fn backspace(&mut self) {
        if let Some(f) = self.focused()
            && f.kind == FieldKind::Text
        {
            f.value.pop();
        }
    }

    /// The flags `queue add KIND` gets, in the form's order.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for i in self.visible().into_iter().skip(1) {
            let f = &self.fields[i];
            let value = f.value.trim();
            match (f.flag, f.kind) {
                ("--quick", _) if value == "yes" => args.push("--quick".to_string()),
                ("--quick", _) => {}
                ("--suite", _) if value == "perf" && self.kind() == TaskKind::Bench => {}
                ("--mode", _) if value == "auto" => {}
                ("", _) => args.extend(value.split_whitespace().map(str::to_string)),
                (_, _) if value.is_empty() => {}
                (flag, _) => args.extend([flag.to_string(), value.to_string()]),
            }
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_makes_the_flags_queue_add_takes() {
        let mut form = Form::default();
        assert_eq!(form.args(), Vec::<String>::new());
        form.focus = form
            .visible()
            .iter()
            .position(|&i| form.fields[i].flag == "--commands")
            .unwrap();
        for c in "GET,SET".chars() {
            form.type_char(c);
        }
        form.down();
        for c in "16,1K".chars() {
            form.type_char(c);
        }
        form.backspace();
        form.type_char('K');
        let quick = form
            .visible()
            .iter()
            .position(|&i| form.fields[i].flag == "--quick")
            .unwrap();
        form.focus = quick;
        form.cycle(true);
        assert_eq!(
            form.args(),
            ["--commands", "GET,SET", "--value-sizes", "16,1K", "--quick"]
        );
        // A compare shows its sides, not bench's builds; the suite is always named.
        form.focus = 0;
        form.cycle(true);
        assert_eq!(form.kind(), TaskKind::Compare);
        let labels: Vec<&str> = form
            .visible()
            .iter()
            .map(|&i| form.fields[i].label)
            .collect();
        assert!(
            labels.contains(&"baseline") && !labels.contains(&"builds"),
            "{labels:?}"
        );
        assert_eq!(&form.args()[..2], ["--suite", "perf"]);
        // Typing into a choice does nothing; the submit line is past the last field.
        form.type_char('x');
        assert_eq!(form.fields[0].value, "compare");
        for _ in 0..40 {
            form.down();
        }
        assert!(form.on_submit());
    }
}
