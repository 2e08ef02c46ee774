//! Which cases of a built-in suite run: the default matrix or `--quick`'s, narrowed by
//! `--cases` (comma-separated substrings of case names). A filter that matches nothing is
//! bad input, found before anything is built.

use bench_core::perf::{Matrix, PerfCase, PerfSpec};
use bench_core::placement::Placement;
use bench_core::topology::TopologySpec;
use bench_core::transport::TlsMode;
use bench_core::{mem, sync};

use crate::error::UsageError;

/// The `--quick` and `--cases` choice.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only cases whose name contains one of these comma-separated strings.
    pub cases: Option<String>,
    /// The short built-in matrix of the suite.
    pub quick: bool,
    /// Where perf cases run (`--topology`); their names say so outside standalone.
    pub topology: TopologySpec,
    /// The CPUs perf cases' servers and generator are pinned to (checked by the caller).
    pub placement: Placement,
    /// Perf cases' servers speak TLS only (`--tls`); their names end with `/tls`.
    pub tls: Option<TlsMode>,
    /// `--commands`, `--value-sizes`, ...: lists replacing the perf matrix's (the caller
    /// refuses them for other suites).
    pub matrix: Matrix,
}

impl Selection {
    pub fn selected(&self, name: &str) -> bool {
        match &self.cases {
            None => true,
            Some(filter) => filter
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .any(|f| name.contains(f)),
        }
    }

    fn nonempty(&self, names: Vec<&String>) -> anyhow::Result<()> {
        if names.is_empty() {
            return Err(UsageError(format!(
                "--cases {:?} matches no case of the {} suite; case names look like GET/32B/P16/c50/io1",
                self.cases.as_deref().unwrap_or(""),
                if self.quick { "quick" } else { "default" }
            ))
            .into());
        }
        Ok(())
    }

    /// The built-in suite's cases (default or quick) that `--cases` selects.
    fn built_in<T, E: std::fmt::Display>(
        &self,
        [default, quick]: [&str; 2],
        parse: impl Fn(&str) -> Result<Vec<T>, E>,
        name: impl Fn(&T) -> &String,
    ) -> anyhow::Result<Vec<T>> {
        let text = if self.quick { quick } else { default };
        let cases: Vec<T> = parse(text)
            .map_err(|e| anyhow::anyhow!("built-in suite: {e}"))?
            .into_iter()
            .filter(|c| self.selected(name(c)))
            .collect();
        self.nonempty(cases.iter().map(&name).collect())?;
        Ok(cases)
    }

    /// The perf cases, each slice (warmup and measured) `slice_seconds` long.
    pub fn perf(&self, slice_seconds: f64) -> anyhow::Result<Vec<PerfCase>> {
        let text = if self.quick {
            bench_core::perf::QUICK_PERF
        } else {
            bench_core::perf::DEFAULT_PERF
        };
        let mut spec = PerfSpec::from_toml(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        spec.topology = self.topology;
        spec.placement = self.placement.clone();
        spec.tls = self.tls;
        self.matrix.apply(&mut spec);
        spec.check_size()
            .map_err(|e| crate::error::UsageError(format!("with the flags: {e}")))?;
        let cases: Vec<PerfCase> = spec
            .expand()
            .into_iter()
            .filter(|c| self.selected(&c.name))
            .map(|mut c| {
                c.measure_seconds = slice_seconds;
                c.warmup_seconds = slice_seconds;
                c
            })
            .collect();
        self.nonempty(cases.iter().map(|c| &c.name).collect())?;
        Ok(cases)
    }

    pub fn mem(&self) -> anyhow::Result<Vec<mem::MemCase>> {
        self.built_in(
            [mem::DEFAULT_MEM, mem::QUICK_MEM],
            |t| mem::MemSpecFile::parse(t).map_err(|e| e.to_string()),
            |c| &c.name,
        )
    }

    pub fn sync(&self) -> anyhow::Result<Vec<sync::SyncCase>> {
        self.built_in(
            [sync::DEFAULT_SYNC, sync::QUICK_SYNC],
            sync::SyncSpecFile::parse,
            |c| &c.name,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_filter_by_substrings_and_refuse_to_match_nothing() {
        let all = Selection {
            cases: None,
            quick: true,
            ..Default::default()
        };
        let n = all.perf(0.5).unwrap().len();
        let some = Selection {
            cases: Some(" GET/ ,nothing".into()),
            quick: true,
            ..Default::default()
        };
        let got = some.perf(0.5).unwrap();
        assert!(!got.is_empty() && got.len() < n);
        assert!(got.iter().all(|c| c.name.contains("GET/")));
        assert!(got.iter().all(|c| c.measure_seconds == 0.5));
        let none = Selection {
            cases: Some("no-such-case".into()),
            quick: true,
            ..Default::default()
        };
        let e = none.mem().unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
        assert!(e.to_string().contains("no-such-case"), "{e}");
        let cluster = Selection {
            cases: Some("GET/32B/P1/".into()),
            quick: true,
            topology: "cluster:3x1".parse().unwrap(),
            ..Default::default()
        };
        let names: Vec<String> = cluster
            .perf(0.5)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["GET/32B/P1/c50/io1/10k-keys/cluster:3x1"]);
    }
}
