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
