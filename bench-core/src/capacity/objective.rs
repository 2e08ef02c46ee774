//! A capacity search's objective, as typed: `p99<=1ms,p99.9<=5ms,errors<=0`.
//!
//! Each clause is a latency percentile with its bound (`p50`, `p99`, `p99.9`, ... in
//! `us`/`µs`, `ms` or `s`) or `errors<=N`, the errors a trial may have. Without an
//! `errors` clause a trial with errors is not judged at all (it measured something else);
//! with one, more errors than `N` fail it.

use std::fmt;

/// What a rate must hold to pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    /// Latency bounds, in the order typed.
    pub bounds: Vec<Bound>,
    /// The errors a trial may have, if the objective says.
    pub max_errors: Option<u64>,
}

/// `p<percentile> <= <max_us>`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// Between 0 and 100, exclusive: 99.9 for `p99.9`.
    pub percentile: f64,
    pub max_us: f64,
}

impl Bound {
    /// `p99.9`.
    pub fn name(&self) -> String {
        format!("p{}", self.percentile)
    }
}

/// A clause that cannot be read: which, why, and how to write it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectiveError {
    pub clause: String,
    pub why: String,
}

impl fmt::Display for ObjectiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--slo clause `{}`: {}; write clauses like p99<=1ms, p99.9<=500us or errors<=0, separated by commas",
            self.clause, self.why
        )
    }
}

impl std::error::Error for ObjectiveError {}

/// The longest bound taken: the histograms end at 60 s.
const MAX_US: f64 = 60e6;

impl Objective {
    pub fn parse(text: &str) -> Result<Objective, ObjectiveError> {
        let mut objective = Objective {
            bounds: Vec::new(),
            max_errors: None,
        };
        let clauses: Vec<&str> = text.split(',').map(str::trim).collect();
        for clause in clauses {
            let bad = |why: String| ObjectiveError {
                clause: clause.to_string(),
                why,
            };
            let Some((name, value)) = clause.split_once("<=") else {
                return Err(bad(match clause.is_empty() {
                    true => "empty".into(),
                    false => "no `<=`".into(),
                }));
            };
            let (name, value) = (name.trim(), value.trim());
            if name == "errors" {
                let max = value
                    .parse::<u64>()
                    .map_err(|_| bad(format!("{value:?} is not a whole number of errors")))?;
                if objective.max_errors.replace(max).is_some() {
                    return Err(bad("errors is bounded twice".into()));
                }
                continue;
            }
            let percentile = name
                .strip_prefix('p')
                .and_then(|p| p.parse::<f64>().ok())
                .ok_or_else(|| bad(format!("{name:?} is neither a percentile (p99) nor errors")))?;
            if !(percentile > 0.0 && percentile < 100.0) {
                return Err(bad(format!(
                    "percentile {percentile} is not between 0 and 100"
                )));
            }
            let max_us = duration_us(value).map_err(bad)?;
            if objective.bounds.iter().any(|b| b.percentile == percentile) {
                return Err(bad(format!("{name} is bounded twice")));
            }
            objective.bounds.push(Bound { percentile, max_us });
        }
        if objective.bounds.is_empty() {
            return Err(ObjectiveError {
                clause: text.to_string(),
                why: "no latency bound".into(),
            });
        }
        Ok(objective)
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut clauses: Vec<String> = self
            .bounds
            .iter()
            .map(|b| format!("{}<={}", b.name(), us_text(b.max_us)))
            .collect();
        if let Some(max) = self.max_errors {
            clauses.push(format!("errors<={max}"));
        }
        f.write_str(&clauses.join(","))
    }
}

/// `1ms`, `500us`, `500µs`, `0.25s` in µs.
fn duration_us(text: &str) -> Result<f64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
        .ok_or_else(|| format!("{text:?} has no unit (us, ms or s)"))?;
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "us" | "µs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        other => return Err(format!("unit {other:?} is not us, ms or s")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    let us = value * scale;
    if !(1.0..=MAX_US).contains(&us) {
        return Err(format!("{text} is not between 1us and 60s"));
    }
    Ok(us)
}

/// A bound as written back: `1ms`, `500us`, `1.5s`.
pub fn us_text(us: f64) -> String {
    if us >= 1e6 {
        format!("{}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{}ms", us / 1e3)
    } else {
        format!("{us}us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_read_with_their_units() {
        let o = Objective::parse("p99<=1ms, p99.9<=500us,p50<=250µs,errors<=0").unwrap();
        assert_eq!(
            o.bounds,
            vec![
                Bound {
                    percentile: 99.0,
                    max_us: 1000.0
                },
                Bound {
                    percentile: 99.9,
                    max_us: 500.0
                },
                Bound {
                    percentile: 50.0,
                    max_us: 250.0
                },
            ]
        );
        assert_eq!(o.max_errors, Some(0));
        assert_eq!(o.to_string(), "p99<=1ms,p99.9<=500us,p50<=250us,errors<=0");
        assert_eq!(Objective::parse("p99<=2s").unwrap().bounds[0].max_us, 2e6);
        assert_eq!(
            Objective::parse("p99<=1.5ms").unwrap().to_string(),
            "p99<=1.5ms"
        );
    }

    #[test]
    fn a_bad_clause_is_named_with_why() {
        for (text, clause, why) in [
            ("p101<=1ms", "p101<=1ms", "not between 0 and 100"),
            ("p0<=1ms", "p0<=1ms", "not between 0 and 100"),
            ("p99<=-1", "p99<=-1", "has no unit"),
            ("p99<=-1ms", "p99<=-1ms", "between 1us and 60s"),
            ("p99<=1.2.3ms", "p99<=1.2.3ms", "is not a number"),
            ("p99<=1h", "p99<=1h", "unit \"h\""),
            ("p99<=0.5us", "p99<=0.5us", "between 1us and 60s"),
            ("p99<=61s", "p99<=61s", "between 1us and 60s"),
            ("p99<1ms", "p99<1ms", "no `<=`"),
            ("latency<=1ms", "latency<=1ms", "neither a percentile"),
            ("p99<=1ms,", "", "empty"),
            ("p99<=1ms,p99<=2ms", "p99<=2ms", "bounded twice"),
            ("errors<=0", "errors<=0", "no latency bound"),
            ("p99<=1ms,errors<=-1", "errors<=-1", "not a whole number"),
            ("p99<=1ms,errors<=1,errors<=2", "errors<=2", "bounded twice"),
        ] {
            let e = Objective::parse(text).unwrap_err();
            assert_eq!(e.clause, clause, "{text}");
            assert!(e.why.contains(why), "{text}: {}", e.why);
            assert!(e.to_string().starts_with("--slo clause"), "{e}");
        }
    }
}
