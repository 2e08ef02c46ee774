//! Plans: what a run or a comparison executes, chosen before anything is built, and the
//! policies that order it. `suite_file.rs` is `bench`'s plan (a suite's cases from its
//! file or the built-in matrix, with the flags applied); `cases.rs` selects a built-in
//! suite's cases for `compare` (`--quick`, `--cases`); `interleave.rs` is a comparison's
//! schedule (AB/BA pairs, the minimum first,
//! then more trials for the undecided cases until each is decided or the time is spent).

pub mod cases;
pub mod interleave;
pub mod suite_file;

/// Which side of a comparison a trial is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Baseline,
    Candidate,
}

impl Side {
    /// Its index in `[baseline, candidate]` arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Side {
        if i == 0 {
            Side::Baseline
        } else {
            Side::Candidate
        }
    }
}

/// `flags` over `file` side by side, checked against this machine's CPUs: exit 2 for an
/// absent or shared CPU; the warnings (client and server on one core) are returned.
pub fn placement(
    file: &bench_core::placement::Placement,
    flags: &bench_core::placement::Placement,
) -> Result<(bench_core::placement::Placement, Vec<String>), crate::error::UsageError> {
    let placement = bench_core::placement::Placement {
        server_cpus: flags
            .server_cpus
            .clone()
            .or_else(|| file.server_cpus.clone()),
        client_cpus: flags
            .client_cpus
            .clone()
            .or_else(|| file.client_cpus.clone()),
    };
    let warnings = placement
        .check(&crate::host::machine())
        .map_err(crate::error::UsageError)?;
    Ok((placement, warnings))
}
