//! The errors that decide an exit code, and the mapping, the same for every command: 0
//! success, 1 a regression found (compare), 2 could not run (bad input, a failed build, a
//! server that died: the message says which), 3 inconclusive (compare: no regression found,
//! but not every case decided; capacity: an answer not verified, or none), 130 interrupted,
//! 141 the output's reader left before the end (as a tool killed by SIGPIPE). A CI gate
//! fails on 1 and asks a human on 2 and 3.
//!
//! Any layer may return these; only `main` turns them into a process exit code.

/// An error in what the user asked for (flags, files): exit code 2, not 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The comparison ran and found a regression: exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0} regression(s) found")]
pub struct RegressionFound(pub usize);

/// The comparison found no regression but left cases undecided: exit code 3, so a gate
/// can tell "no regression" from "could not tell".
#[derive(Debug, thiserror::Error)]
#[error("inconclusive: {0} case(s) undecided, no regression found")]
pub struct Inconclusive(pub usize);

/// A capacity search ran but its answer is not verified, or it found none in the rates it
/// tried: exit code 3, as an inconclusive comparison.
#[derive(Debug, thiserror::Error)]
#[error("inconclusive: {0}")]
pub struct Unverified(pub String);

/// The comparison could not run (bad spec, failed build, server failure): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("the comparison could not run: {0:#}")]
pub struct CouldNotRun(pub anyhow::Error);

/// A command ended early because the user interrupted it (SIGINT/SIGTERM).
pub const INTERRUPTED: u8 = 130;

/// A command ended early because its standard output's reader closed the pipe
/// (`... | head`): 128 + SIGPIPE, what a shell reports for a tool SIGPIPE killed, so a
/// `pipefail` job never reads it as a pass (the command's own outcome was not reached).
pub const OUTPUT_CLOSED: u8 = 141;

/// How a command's outcome is reported: the exit code, and what to print on stderr.
pub fn outcome(result: &anyhow::Result<()>, interrupted: bool) -> (u8, Option<String>) {
    match result {
        Ok(()) => (0, None),
        Err(_) if interrupted => (
            INTERRUPTED,
            Some("interrupted; every server was stopped".into()),
        ),
        Err(e) if e.is::<RegressionFound>() => (1, Some(e.to_string())),
        Err(e) if e.is::<Inconclusive>() || e.is::<Unverified>() => (3, Some(e.to_string())),
        Err(e) => (2, Some(format!("error: {e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_exit_code() {
        assert_eq!(outcome(&Ok(()), false), (0, None));
        let usage: anyhow::Result<()> =
            Err(anyhow::Error::new(UsageError("--count 0".into())).context("starting"));
        assert_eq!(
            outcome(&usage, false),
            (2, Some("error: starting: --count 0".into()))
        );
        let regression: anyhow::Result<()> = Err(RegressionFound(2).into());
        assert_eq!(
            outcome(&regression, false),
            (1, Some("2 regression(s) found".into()))
        );
        let could_not: anyhow::Result<()> = Err(CouldNotRun(anyhow::anyhow!("no build")).into());
        assert_eq!(outcome(&could_not, false).0, 2);
        let open: anyhow::Result<()> = Err(Inconclusive(4).into());
        assert_eq!(
            outcome(&open, false),
            (
                3,
                Some("inconclusive: 4 case(s) undecided, no regression found".into())
            )
        );
        let unverified: anyhow::Result<()> = Err(Unverified("not verified".into()).into());
        assert_eq!(
            outcome(&unverified, false),
            (3, Some("inconclusive: not verified".into()))
        );
        // Not a regression: whatever stopped the run, it could not run.
        let failed: anyhow::Result<()> = Err(anyhow::anyhow!("server died"));
        assert_eq!(outcome(&failed, false).0, 2);
        assert_eq!(outcome(&failed, true).0, INTERRUPTED);
        assert_eq!(outcome(&usage, true).0, INTERRUPTED);
    }
}
