//! The Prometheus text exposition format (version 0.0.4), written from plain data: a
//! family's `# HELP` and `# TYPE`, its samples with escaped label values, and latency
//! histograms whose buckets come from our HDR histograms.
//!
//! A bucket's count is the HDR histogram's count of values up to its bound
//! (`count_between(0, bound)`), which counts the whole HDR bucket holding the bound: it
//! may hold values up to the HDR's resolution above the bound (3 significant figures:
//! 0.1% above the larger bounds; latencies are whole µs, so up to 25.999 µs in the 25 µs
//! bucket), never miss one below. Buckets of several records add exactly, as the bounds
//! are fixed. `_sum` is the HDR mean times the count (the same resolution).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// The latency buckets' upper bounds, µs: 25 µs to 10 s, about three per decade.
pub const LATENCY_BOUNDS_US: [u64; 18] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram as Prometheus reads one: cumulative counts at
/// [`LATENCY_BOUNDS_US`], the total count and the sum, in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    /// Values at or below each bound of [`LATENCY_BOUNDS_US`].
    pub cumulative: [u64; LATENCY_BOUNDS_US.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Buckets {
    /// The buckets of a histogram of microseconds.
    pub fn from_hdr(h: &Histogram<u64>) -> Buckets {
        let mut cumulative = [0; LATENCY_BOUNDS_US.len()];
        for (slot, bound) in cumulative.iter_mut().zip(LATENCY_BOUNDS_US) {
            *slot = h.count_between(0, bound);
        }
        Buckets {
            cumulative,
            count: h.len(),
            sum_seconds: h.mean() * h.len() as f64 / 1e6,
        }
    }

    /// Adds another record's buckets (same bounds: exact).
    pub fn add(&mut self, other: &Buckets) {
        for (a, b) in self.cumulative.iter_mut().zip(other.cumulative) {
            *a += b;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }
}

/// Labels of one sample, in order.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// A page of metrics being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

/// A label value as the format quotes it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: Labels<'_>, extra: Option<(&str, &str)>) -> String {
    let all: Vec<String> = pairs
        .iter()
        .copied()
        .chain(extra)
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if all.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", all.join(","))
    }
}

/// A sample's value: integers without a fraction, `+Inf`, `NaN` as the format spells them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        debug_assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "{name}"
        );
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn samples(&mut self, name: &str, samples: &[(Labels<'_>, f64)]) {
        for (pairs, value) in samples {
            let _ = writeln!(self.out, "{name}{} {}", labels(pairs, None), number(*value));
        }
    }

    /// A counter family (`name` should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, f64)]) {
        self.family(name, "counter", help);
        self.samples(name, samples);
    }

    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, f64)]) {
        self.family(name, "gauge", help);
        self.samples(name, samples);
    }

    /// A histogram family in seconds: `_bucket` (with `le`, `+Inf` last), `_sum`, `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, series: &[(Labels<'_>, &Buckets)]) {
        self.family(name, "histogram", help);
        for (pairs, b) in series {
            for (bound, count) in LATENCY_BOUNDS_US.iter().zip(b.cumulative) {
                let le = format!("{}", *bound as f64 / 1e6);
                let _ = writeln!(
                    self.out,
                    "{name}_bucket{} {count}",
                    labels(pairs, Some(("le", &le)))
                );
            }
            let _ = writeln!(
                self.out,
                "{name}_bucket{} {}",
                labels(pairs, Some(("le", "+Inf"))),
                b.count
            );
            let _ = writeln!(
                self.out,
                "{name}_sum{} {}",
                labels(pairs, None),
                number(b.sum_seconds)
            );
            let _ = writeln!(self.out, "{name}_count{} {}", labels(pairs, None), b.count);
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_an_hdr_histogram_at_their_bounds_and_add() {
        let mut h = crate::loadgen::stats::new_histogram();
        for v in [10, 30, 30, 700, 2_000, 20_000_000] {
            h.record(v).unwrap();
        }
        let b = Buckets::from_hdr(&h);
        assert_eq!(&b.cumulative[..6], &[1, 3, 3, 3, 3, 4]);
        assert_eq!(b.cumulative[6], 5); // 2.5 ms
        assert_eq!(b.cumulative[17], 5); // 10 s: the 20 s value is only in +Inf
        assert_eq!(b.count, 6);
        assert!((b.sum_seconds - 20.00277).abs() < 0.03, "{}", b.sum_seconds);
        let mut twice = b.clone();
        twice.add(&b);
        assert_eq!(twice.cumulative[1], 6);
        assert_eq!(twice.count, 12);
    }

    #[test]
    fn the_page_is_the_text_format() {
        let mut page = Exposition::default();
        page.counter(
            "x_requests_total",
            "Requests.\nAll of them.",
            &[(&[("command", "GET \"a\"\\b\n")], 3.0)],
        );
        page.gauge("x_up", "Up.", &[(&[], 1.5)]);
        let b = Buckets {
            cumulative: [1; 18],
            count: 2,
            sum_seconds: 0.25,
        };
        page.histogram(
            "x_latency_seconds",
            "Latency.",
            &[(&[("command", "GET")], &b)],
        );
        let text = page.finish();
        assert!(text.starts_with(
            "# HELP x_requests_total Requests.\\nAll of them.\n# TYPE x_requests_total counter\n\
             x_requests_total{command=\"GET \\\"a\\\"\\\\b\\n\"} 3\n"
        ));
        assert!(text.contains("x_up 1.5\n"), "{text}");
        assert!(text.contains("x_latency_seconds_bucket{command=\"GET\",le=\"0.000025\"} 1\n"));
        assert!(text.contains("x_latency_seconds_bucket{command=\"GET\",le=\"10\"} 1\n"));
        assert!(text.contains("x_latency_seconds_bucket{command=\"GET\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("x_latency_seconds_sum{command=\"GET\"} 0.25\n"));
        assert!(text.contains("x_latency_seconds_count{command=\"GET\"} 2\n"));
    }
}
