//! Lists of numbers as people type them on a command line: `16,64,1K`, `1..64x2` (1, 2,
//! 4, ... 64), `1..8` (1 to 8), `0..100+25` (0, 25, ... 100), mixed as `1,4..16x2,100`.
//!
//! Sizes take binary units (`1K` = `1KiB` = `1KB` = 1024 bytes, `M` = 1024²); counts take
//! decimal ones (`10K` = 10 000). Every error names the item and says what to write.

/// What the numbers are, which decides their units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes: `B`, `K`/`KB`/`KiB` (1024), `M`/`MB`/`MiB` (1024²).
    Bytes,
    /// Counts: `K` (1000), `M` (10⁶).
    Count,
}

/// The most values one list may expand to.
pub const MAX_VALUES: usize = 1000;

/// The values of `text`, in the order written, each within `min..=max`; none twice.
pub fn parse_list(text: &str, unit: Unit, min: u64, max: u64) -> Result<Vec<u64>, String> {
    let mut values = Vec::new();
    for item in text.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!(
                "{text:?}: an empty item; separate values with single commas, e.g. 16,64,1K"
            ));
        }
        match item.split_once("..") {
            None => values.push(number(item, unit)?),
            Some((from, rest)) => range(item, from, rest, unit, &mut values)?,
        }
        if values.len() > MAX_VALUES {
            return Err(format!(
                "{text:?}: more than {MAX_VALUES} values; use a coarser step"
            ));
        }
    }
    for &v in &values {
        if !(min..=max).contains(&v) {
            return Err(format!("{text:?}: {v} is outside {min} to {max}"));
        }
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(format!("{text:?}: {v} appears twice"));
        }
    }
    Ok(values)
}

/// `from..to`, `from..toxF` (times F), `from..to+S` (plus S); `to` is included when a step
/// lands on it.
fn range(item: &str, from: &str, rest: &str, unit: Unit, out: &mut Vec<u64>) -> Result<(), String> {
    enum Step {
        Add(u64),
        Times(u64),
    }
    let (to, step) = if let Some((to, f)) = rest.split_once('x') {
        let f: u64 = f.trim().parse().map_err(|_| {
            format!("{item:?}: the factor after x must be a whole number, e.g. 1..64x2")
        })?;
        if f < 2 {
            return Err(format!("{item:?}: multiply by 2 or more, e.g. 1..64x2"));
        }
        (to, Step::Times(f))
    } else if let Some((to, s)) = rest.split_once('+') {
        let s = number(s.trim(), unit).map_err(|e| format!("{item:?}: the step: {e}"))?;
        if s == 0 {
            return Err(format!("{item:?}: a step of 0 never ends; use +1 or more"));
        }
        (to, Step::Add(s))
    } else {
        (rest, Step::Add(1))
    };
    let (from, to) = (number(from.trim(), unit)?, number(to.trim(), unit)?);
    if from > to {
        return Err(format!(
            "{item:?}: {from} is above {to}; ranges go upwards, e.g. 1..64x2"
        ));
    }
    if from == 0 && matches!(step, Step::Times(_)) {
        return Err(format!(
            "{item:?}: a range that multiplies cannot start at 0"
        ));
    }
    let mut v = from;
    while v <= to {
        out.push(v);
        if out.len() > MAX_VALUES {
            return Err(format!(
                "{item:?}: more than {MAX_VALUES} values; use a coarser step"
            ));
        }
        let next = match step {
            Step::Add(s) => v.checked_add(s),
            Step::Times(f) => v.checked_mul(f),
        };
        match next {
            Some(n) => v = n,
            None => break,
        }
    }
    Ok(())
}

/// `64`, `1K`, `1KiB`, `2M`.
fn number(text: &str, unit: Unit) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let bad = || match unit {
        Unit::Bytes => format!("{text:?} is not a size; write e.g. 16, 512B, 1K or 4MiB"),
        Unit::Count => format!("{text:?} is not a whole number; write e.g. 16, 100 or 10K"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match (unit, suffix) {
        (_, "") => 1,
        (Unit::Bytes, "B") => 1,
        (Unit::Bytes, "K" | "KB" | "KiB" | "k") => 1 << 10,
        (Unit::Bytes, "M" | "MB" | "MiB") => 1 << 20,
        (Unit::Count, "K" | "k") => 1000,
        (Unit::Count, "M") => 1_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(text: &str) -> Result<Vec<u64>, String> {
        parse_list(text, Unit::Bytes, 1, 1 << 20)
    }

    fn counts(text: &str) -> Result<Vec<u64>, String> {
        parse_list(text, Unit::Count, 1, 10_000)
    }

    #[test]
    fn lists_ranges_and_units() {
        assert_eq!(sizes("16,64,1K"), Ok(vec![16, 64, 1024]));
        assert_eq!(sizes("512B, 4KiB ,1M"), Ok(vec![512, 4096, 1 << 20]));
        assert_eq!(counts("1..64x2"), Ok(vec![1, 2, 4, 8, 16, 32, 64]));
        assert_eq!(counts("1..100x4"), Ok(vec![1, 4, 16, 64]));
        assert_eq!(counts("1..4"), Ok(vec![1, 2, 3, 4]));
        assert_eq!(counts("10..50+20"), Ok(vec![10, 30, 50]));
        assert_eq!(counts("1,4..16x2,100"), Ok(vec![1, 4, 8, 16, 100]));
        assert_eq!(counts("2K"), Ok(vec![2000]));
        assert_eq!(sizes("1K..4K+1K"), Ok(vec![1024, 2048, 3072, 4096]));
    }

    #[test]
    fn errors_name_the_item_and_the_fix() {
        let e = sizes("16,,64").unwrap_err();
        assert!(e.contains("empty item"), "{e}");
        let e = sizes("1G").unwrap_err();
        assert!(e.contains("\"1G\" is not a size"), "{e}");
        let e = counts("1K1").unwrap_err();
        assert!(e.contains("not a whole number"), "{e}");
        let e = counts("64..1x2").unwrap_err();
        assert!(e.contains("64 is above 1"), "{e}");
        let e = counts("1..64x1").unwrap_err();
        assert!(e.contains("multiply by 2 or more"), "{e}");
        let e = counts("1..64+0").unwrap_err();
        assert!(e.contains("step of 0"), "{e}");
        let e = counts("0..8").unwrap_err();
        assert!(e.contains("0 is outside 1 to 10000"), "{e}");
        let e = counts("1..4,4").unwrap_err();
        assert!(e.contains("4 appears twice"), "{e}");
        let e = parse_list("1..100000", Unit::Count, 1, u64::MAX).unwrap_err();
        assert!(e.contains("more than 1000 values"), "{e}");
        let e = parse_list("1..18446744073709551615x2", Unit::Count, 1, u64::MAX).unwrap();
        assert_eq!(e.len(), 64, "stops before overflowing");
        assert!(counts("99999999999999999999K").is_err());
    }
}
