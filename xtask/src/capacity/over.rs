//! `capacity --over PARAM=VALUES`: one search per value of one matrix parameter (the
//! maximum acceptable load at 10, 20, 40 ... connections), and the table of their answers.

use bench_core::capacity::Outcome;
use bench_core::perf::{self, Matrix};
use bench_core::ranges::{self, Unit};

use super::Searched;

/// The parameters a capacity can be searched over: name, the matrix flag it stands for,
/// how its values read, their limits.
const PARAMS: [(&str, &str, Unit, (u64, u64)); 5] = [
    ("clients", "--clients", Unit::Count, perf::CLIENT_LIMITS),
    (
        "pipeline",
        "--pipelines",
        Unit::Count,
        perf::PIPELINE_LIMITS,
    ),
    (
        "value-size",
        "--value-sizes",
        Unit::Bytes,
        perf::VALUE_SIZE_LIMITS,
    ),
    (
        "io-threads",
        "--io-threads",
        Unit::Count,
        perf::IO_THREAD_LIMITS,
    ),
    (
        "keyspace",
        "--keyspaces",
        Unit::Count,
        perf::KEYSPACE_LIMITS,
    ),
];

/// Searches at most this many values in one run.
pub const MAX_VALUES: usize = 16;

/// The parameter searched over and its values, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Over {
    /// `clients`, `pipeline`, `value-size`, `io-threads` or `keyspace`.
    pub param: &'static str,
    /// The matrix flag it replaces (`--clients`).
    pub flag: &'static str,
    pub values: Vec<u64>,
}

/// Reads `clients=10..200x2`: a parameter, `=`, and values as the matrix flag takes them
/// (a list, ranges: `10,50,100`, `10..200x2`, `1K..16Kx2`).
pub fn parse(text: &str) -> Result<Over, String> {
    let names = || PARAMS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ");
    let Some((name, list)) = text.split_once('=') else {
        return Err(format!(
            "{text:?}: write PARAM=VALUES, e.g. clients=10..200x2 (PARAM is one of {})",
            names()
        ));
    };
    let name = name.trim();
    let Some(&(param, flag, unit, (low, high))) = PARAMS.iter().find(|p| p.0 == name) else {
        return Err(format!(
            "{name:?} is no parameter a capacity is searched over; give one of {}",
            names()
        ));
    };
    let values =
        ranges::parse_list(list.trim(), unit, low, high).map_err(|e| format!("{param}: {e}"))?;
    if values.len() < 2 {
        return Err(format!(
            "{param}={list}: one value is no curve; give two or more (or {flag} for one)"
        ));
    }
    if values.len() > MAX_VALUES {
        return Err(format!(
            "{param}={list} makes {} values; search at most {MAX_VALUES} in one run",
            values.len()
        ));
    }
    let mut seen = values.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != values.len() {
        return Err(format!("{param}={list}: a value appears twice"));
    }
    Ok(Over {
        param,
        flag,
        values,
    })
}

impl Over {
    /// `matrix` with this parameter set to `value`; an error when the matrix sets it too.
    pub fn apply(&self, value: u64, matrix: &Matrix) -> Result<Matrix, String> {
        let mut m = matrix.clone();
        let slot_given = match self.param {
            "clients" => m.clients.replace(vec![value as u32]).is_some(),
            "pipeline" => m.pipelines.replace(vec![value as u32]).is_some(),
            "value-size" => m.value_sizes.replace(vec![value]).is_some(),
            "io-threads" => m.io_threads.replace(vec![value as u32]).is_some(),
            _ => m.keyspaces.replace(vec![value]).is_some(),
        };
        if slot_given {
            return Err(format!(
                "--over {} and {} both set it; give the values to --over only",
                self.param, self.flag
            ));
        }
        Ok(m)
    }
}

/// One row per value: its answer, interval and whether it was verified.
pub fn table(over: &Over, objective: &str, searches: &[(u64, Searched)]) -> String {
    let mut text = format!(
        "capacity over {} within {objective}:\n{:>12}  {:>12}  {:>23}  verified",
        over.param, over.param, "capacity/s", "interval/s"
    );
    for (value, s) in searches {
        let row = match &s.outcome {
            Outcome::Found(a) => format!(
                "{:>12.0}  {:>23}  {}",
                a.rate,
                format!("{:.0}–{:.0}", a.interval.0, a.interval.1),
                match &a.verified {
                    Some(Ok(())) => "yes",
                    _ => "no",
                }
            ),
            Outcome::NothingPasses { lowest_tried } => {
                format!("none: no rate down to {lowest_tried:.0}/s passed")
            }
            Outcome::EverythingPasses { highest_tried } => {
                format!("above {highest_tried:.0}: every rate tried passed")
            }
            Outcome::GeneratorBound { rate, .. } | Outcome::Invalid { rate, .. } => {
                format!("stopped at {rate:.0}/s (see its search above)")
            }
        };
        text.push_str(&format!("\n{value:>12}  {row}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_reads_a_parameter_and_its_values() {
        let over = parse("clients=10..200x2").unwrap();
        assert_eq!((over.param, over.flag), ("clients", "--clients"));
        assert_eq!(over.values, [10, 20, 40, 80, 160]);
        assert_eq!(parse("value-size=16,1K").unwrap().values, [16, 1024]);
        assert_eq!(parse("pipeline = 1,16").unwrap().values, [1, 16]);
        for (bad, says) in [
            ("clients", "write PARAM=VALUES"),
            ("threads=1,2", "no parameter"),
            ("clients=50", "one value is no curve"),
            ("clients=0,10", "clients:"),
            ("clients=1..100000x2", "clients:"),
            ("clients=1..100+1", "at most 16"),
            ("clients=10,10", "appears twice"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn over_sets_its_parameter_unless_the_matrix_does() {
        let over = parse("io-threads=1,2").unwrap();
        let m = over.apply(2, &Matrix::default()).unwrap();
        assert_eq!(m.io_threads, Some(vec![2]));
        let given = Matrix {
            io_threads: Some(vec![4]),
            ..Matrix::default()
        };
        let err = over.apply(2, &given).unwrap_err();
        assert!(err.contains("--io-threads"), "{err}");
    }
}
