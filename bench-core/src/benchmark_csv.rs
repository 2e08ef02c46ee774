//! Parsing of `valkey-benchmark --csv` output.
//!
//! Format (valkey-benchmark.c, 8.x and 9.x): a header line
//! `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"`
//! then one line per test with every field quoted; latencies are milliseconds.

/// One data line of the CSV, latencies converted to microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvRow {
    pub test: String,
    pub rps: f64,
    pub avg_us: f64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

const HEADER: [&str; 8] = [
    "test",
    "rps",
    "avg_latency_ms",
    "min_latency_ms",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "max_latency_ms",
];

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum CsvError {
    #[error("valkey-benchmark printed no CSV header (expected `\"test\",\"rps\",...`)")]
    NoHeader,
    #[error("unexpected CSV header {0:?}; this valkey-benchmark's format is not supported")]
    Header(String),
    #[error("CSV line {line}: {problem}: {text:?}")]
    Line {
        line: usize,
        problem: &'static str,
        text: String,
    },
}

/// Parses every data row. Lines before the header (progress output) are ignored.
pub fn parse(output: &str) -> Result<Vec<CsvRow>, CsvError> {
    let mut rows = Vec::new();
    let mut seen_header = false;
    for (index, raw) in output.lines().enumerate() {
        // Progress output is redrawn with carriage returns; the record is the last part.
        let line = raw.rsplit('\r').next().unwrap_or(raw).trim();
        if !line.starts_with('"') {
            continue;
        }
        let fields = split_quoted(line).ok_or_else(|| CsvError::Line {
            line: index + 1,
            problem: "fields are not all quoted",
            text: line.to_string(),
        })?;
        if !seen_header {
            if fields != HEADER {
                return Err(CsvError::Header(line.to_string()));
            }
            seen_header = true;
            continue;
        }
        let bad = |problem| CsvError::Line {
            line: index + 1,
            problem,
            text: line.to_string(),
        };
        if fields.len() != HEADER.len() {
            return Err(bad("expected 8 fields"));
        }
        let number = |i: usize| -> Result<f64, CsvError> {
            fields[i]
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| bad("a field is not a non-negative number"))
        };
        let ms_to_us = |i: usize| number(i).map(|ms| ms * 1000.0);
        rows.push(CsvRow {
            test: fields[0].to_string(),
            rps: number(1)?,
            avg_us: ms_to_us(2)?,
            min_us: ms_to_us(3)?,
            p50_us: ms_to_us(4)?,
            p95_us: ms_to_us(5)?,
            p99_us: ms_to_us(6)?,
            max_us: ms_to_us(7)?,
        });
    }
    if !seen_header {
        return Err(CsvError::NoHeader);
    }
    Ok(rows)
}

fn split_quoted(line: &str) -> Option<Vec<&str>> {
    line.split(',')
        .map(|field| field.strip_prefix('"')?.strip_suffix('"'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER_LINE: &str = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"";

    #[test]
    fn parses_rows_and_converts_ms_to_us() {
        let out = format!(
            "{HEADER_LINE}\n\"SET\",\"81234.56\",\"0.310\",\"0.080\",\"0.287\",\"0.471\",\"0.639\",\"2.111\"\n"
        );
        let rows = parse(&out).unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.test, "SET");
        assert_eq!(row.rps, 81234.56);
        assert!((row.p50_us - 287.0).abs() < 1e-9);
        assert!((row.max_us - 2111.0).abs() < 1e-9);
    }

    #[test]
    fn skips_progress_lines_and_carriage_returns() {
        let out = format!(
            "SET: rps=12.0 (overall: 12.0) avg_msec=1.0\r{HEADER_LINE}\n\"PING_MBULK\",\"1.00\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\"\n"
        );
        assert_eq!(parse(&out).unwrap()[0].test, "PING_MBULK");
    }

    #[test]
    fn reports_what_is_wrong() {
        assert_eq!(parse("nothing here\n"), Err(CsvError::NoHeader));
        assert!(matches!(parse("\"a\",\"b\"\n"), Err(CsvError::Header(_))));
        let short = format!("{HEADER_LINE}\n\"SET\",\"1\"\n");
        assert!(matches!(parse(&short), Err(CsvError::Line { line: 2, .. })));
        let nan = format!("{HEADER_LINE}\n\"SET\",\"x\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\"\n");
        assert!(matches!(parse(&nan), Err(CsvError::Line { line: 2, .. })));
    }
}
