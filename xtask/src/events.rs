//! What a run reports as it goes, as typed events, and the sinks that show them.
//!
//! The run loops emit [`Event`]s and never print progress themselves; the terminal view
//! (`views::terminal`) and the JSON-lines stream (`views::json_lines`, `--progress-json FILE`)
//! are sinks. A TUI or a metrics endpoint is one more sink, with no change to the suites.
//! A sink never changes what is measured, and a sink that fails (a full disk under the
//! progress file) warns once and keeps the run going: progress is not a result.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// One thing that happened during a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run has its id, its build and its directory, and is about to start its cases.
    RunStarted {
        run_id: String,
        suite: String,
        cases: usize,
        /// Perf: repetitions per case, and the records the run will write (cases ×
        /// repetitions). Mem and sync: `None` and 0, progress counts cases.
        repetitions: Option<u32>,
        expected_records: u64,
        valkey_version: String,
        source_id: String,
        engine: String,
        results: PathBuf,
        /// Where the servers and the load run, when not all on this machine
        /// (`servers on h3; load from h1, h2`); empty otherwise.
        hosts: String,
    },
    /// A comparison has both builds and its directory, and is about to run trials.
    CompareStarted {
        run_id: String,
        suite: String,
        mode: String,
        threshold_pct: f64,
        baseline: String,
        baseline_version: String,
        baseline_source_id: String,
        candidate: String,
        candidate_version: String,
        candidate_source_id: String,
        dir: PathBuf,
    },
    /// A compare trial (both sides of one case, fresh servers) begins.
    TrialStarted { case: String, trial: usize },
    /// It ended, giving the case `pairs` pairs so far; `change_pct` is the trial's own
    /// reading of the primary metric (the median over its pairs), signed as it moved.
    TrialFinished {
        case: String,
        trial: usize,
        pairs: usize,
        change_pct: Option<f64>,
    },
    /// A case's verdict at a look (`inconclusive` until a look decides it),
    /// with the primary metric's change in percent.
    CaseVerdict {
        case: String,
        verdict: String,
        change_pct: f64,
        /// The look (1-based) this verdict is from.
        look: usize,
    },
    /// Every case's final verdict is in: counts by verdict and why trials stopped.
    Verdicts {
        regressions: usize,
        improvements: usize,
        no_change: usize,
        inconclusive: usize,
        stopped: String,
    },
    /// A case begins (1-based `index` of `cases`).
    CaseStarted {
        case: String,
        index: usize,
        cases: usize,
    },
    /// A record was appended: one measured repetition (perf), case (mem) or replica
    /// (sync). `line` is its one-line summary, `figures` its headline numbers.
    RecordWritten {
        case: String,
        /// The case's 1-based index of `cases`.
        index: usize,
        cases: usize,
        repetition: u32,
        /// Records written so far in this run.
        done: u64,
        line: String,
        figures: BTreeMap<String, f64>,
    },
    /// Requests a record (perf) or a load generator run measured for one command: what a
    /// metrics endpoint counts. `histogram` is the HDR histogram of their latencies (µs,
    /// V2, base64), left out of the JSON lines (it is in the record).
    Requests {
        command: String,
        requests: u64,
        /// Of them, error replies.
        errors: u64,
        #[serde(skip_serializing)]
        histogram: Option<String>,
        /// A perf record's seconds: `[replies, p50 µs, p99 µs]` each (empty elsewhere).
        #[serde(skip_serializing)]
        seconds: Vec<[u64; 3]>,
    },
    /// A load generator run's errors by kind, all commands together (the first word of an
    /// error reply, `io: ...`, `lost in flight ...`, `check: ...`).
    Errors { by_kind: BTreeMap<String, u64> },
    /// A second of a load generator run went by: measured replies so far and in that
    /// second (none during the warmup).
    LoadSecond {
        completed: u64,
        ops_last_second: u64,
    },
    /// A capacity search judged a trial (`trial` its 1-based index at the rate) or decided
    /// a rate (`trial` absent): where the search stands.
    CapacityStep {
        case: String,
        /// `search`, `verify` or `headroom`.
        stage: String,
        rate: f64,
        trial: Option<usize>,
        /// The trial's judgment (`measured`, `broken: ...`, `invalid: ...`) or the rate's
        /// verdict (`pass`, `fail`, `undecided`, ...).
        outcome: String,
        /// The bracket so far: the highest rate that passed below the lowest that failed.
        passed: Option<f64>,
        failed: Option<f64>,
        /// What the terminal prints.
        line: String,
    },
    /// A step of a long phase worth a line (`profiling GET/32B on both sides`).
    Step { message: String },
    /// Something the user should know that does not stop the run (a fallback taken, an
    /// optional step that failed); the figures stand.
    Warning { message: String },
    /// A case is over (all its records written).
    CaseFinished { case: String, index: usize },
    /// The run is over, its summary and report written: always the last event, also
    /// when the run failed before it started (then without `run_id` and `dir`).
    /// `complete` is false when it failed or was interrupted, with `error` saying why.
    Finished {
        run_id: Option<String>,
        records: usize,
        dir: Option<PathBuf>,
        complete: bool,
        error: Option<String>,
    },
}

/// Where events go.
pub trait Sink {
    fn event(&mut self, event: &Event);
}

/// Every sink of a run, each given every event in order.
#[derive(Default)]
pub struct Sinks {
    sinks: Vec<Box<dyn Sink>>,
    finished: bool,
}

impl Sinks {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Sinks {
        Sinks {
            sinks,
            finished: false,
        }
    }

    pub fn emit(&mut self, event: Event) {
        self.finished |= matches!(event, Event::Finished { .. });
        for sink in &mut self.sinks {
            sink.event(&event);
        }
    }

    /// Adds a sink; it sees the events from now on.
    pub fn push(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    /// Whether `Finished` was emitted.
    pub fn finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(std::rc::Rc<std::cell::RefCell<Vec<Event>>>);

    impl Sink for Recorder {
        fn event(&mut self, event: &Event) {
            self.0.borrow_mut().push(event.clone());
        }
    }

    #[test]
    fn every_sink_gets_every_event_in_order() {
        let (a, b) = (Default::default(), Default::default());
        let mut sinks = Sinks::new(vec![
            Box::new(Recorder(std::rc::Rc::clone(&a))),
            Box::new(Recorder(std::rc::Rc::clone(&b))),
        ]);
        let started = Event::CaseStarted {
            case: "GET".into(),
            index: 1,
            cases: 2,
        };
        let finished = Event::CaseFinished {
            case: "GET".into(),
            index: 1,
        };
        sinks.emit(started.clone());
        sinks.emit(finished.clone());
        assert_eq!(*a.borrow(), vec![started.clone(), finished.clone()]);
        assert_eq!(*b.borrow(), vec![started, finished]);
    }

    #[test]
    fn events_serialize_with_their_kind() {
        let e = Event::RecordWritten {
            case: "GET/32B".into(),
            index: 1,
            cases: 3,
            repetition: 2,
            done: 5,
            line: "100 ops/s".into(),
            figures: BTreeMap::from([("ops_per_sec".to_string(), 100.0)]),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["event"], "record_written");
        assert_eq!(json["case"], "GET/32B");
        assert_eq!(json["figures"]["ops_per_sec"], 100.0);
        let w = serde_json::to_value(Event::Warning {
            message: "--flamegraph GET: perf failed".into(),
        })
        .unwrap();
        assert_eq!(w["event"], "warning");
        assert_eq!(w["message"], "--flamegraph GET: perf failed");
    }
}
