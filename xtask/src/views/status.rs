//! A queued task's live status: the run's events folded into a [`Status`] (its step, how
//! many records or trials of how many, the last record's line), each change sent down a
//! channel. The runner's heartbeat thread publishes the latest to the queue, so a slow
//! queue server never holds up a measurement.

use std::sync::mpsc::Sender;

use crate::events::{Event, Sink};
use crate::queue::{MAX_STATUS_SECONDS, Status, now_ms};

/// The most warnings a status carries (the latest).
const MAX_WARNINGS: usize = 5;

pub struct StatusSink {
    status: Status,
    tx: Sender<Status>,
}

impl StatusSink {
    pub fn new(tx: Sender<Status>) -> StatusSink {
        StatusSink {
            status: Status::default(),
            tx,
        }
    }
}

impl Sink for StatusSink {
    fn event(&mut self, event: &Event) {
        let s = &mut self.status;
        match event {
            Event::RunStarted {
                suite,
                cases,
                expected_records,
                hosts,
                ..
            } => {
                s.step = format!("{suite}: {cases} case(s)");
                s.hosts = hosts.clone();
                // Perf counts records; mem and sync count cases (sync writes a record
                // per replica).
                (s.total, s.unit) = if *expected_records > 0 {
                    (*expected_records, "records".into())
                } else {
                    (*cases as u64, "cases".into())
                };
                s.done = 0;
            }
            Event::CompareStarted {
                suite,
                baseline,
                candidate,
                mode,
                ..
            } => {
                s.step = format!("compare {suite} ({mode}): {baseline} vs {candidate}");
                (s.done, s.total) = (0, 0);
                s.unit = "trials".into();
                s.figures.clear();
            }
            Event::CaseStarted { case, index, cases } => {
                s.step = format!("case {index}/{cases}: {case}");
            }
            Event::RecordWritten {
                case,
                done,
                line,
                figures,
                ..
            } => {
                if s.unit == "records" {
                    s.done = *done;
                }
                s.last = format!("{case}: {line}");
                s.figures = figures.clone();
            }
            Event::TrialStarted { case, trial } => s.step = format!("trial {trial} of {case}"),
            Event::TrialFinished {
                case,
                trial,
                change_pct,
                ..
            } => {
                s.done += 1;
                s.last = match change_pct {
                    Some(pct) => format!("{case}: trial {trial} moved {pct:+.2}%"),
                    None => format!("{case}: trial {trial}"),
                };
            }
            Event::CaseVerdict {
                case,
                verdict,
                change_pct,
                look,
            } => s.last = format!("{case}: {verdict} ({change_pct:+.2}%, look {look})"),
            Event::Verdicts {
                regressions,
                improvements,
                no_change,
                inconclusive,
                ..
            } => {
                s.last = format!(
                    "{regressions} regression(s), {improvements} improvement(s), \
                     {no_change} unchanged, {inconclusive} inconclusive"
                )
            }
            Event::Step { message } => s.step = message.clone(),
            Event::CapacityStep {
                case,
                passed,
                failed,
                line,
                ..
            } => {
                let end = |r: &Option<f64>| r.map_or("?".into(), |r| format!("{r:.0}/s"));
                s.step = format!(
                    "capacity of {case}: passed {}, failed {}",
                    end(passed),
                    end(failed)
                );
                s.last = line.trim_start().to_string();
            }
            Event::Warning { message } => {
                s.warnings.push(message.clone());
                if s.warnings.len() > MAX_WARNINGS {
                    s.warnings.remove(0);
                }
            }
            Event::CaseFinished { index, .. } if s.unit == "cases" => s.done = *index as u64,
            // A record's seconds: added to the tail, counted in the total.
            Event::Requests { seconds, .. } if !seconds.is_empty() => {
                s.seconds.extend_from_slice(seconds);
                let excess = s.seconds.len().saturating_sub(MAX_STATUS_SECONDS);
                s.seconds.drain(..excess);
                s.seconds_total += seconds.len() as u64;
            }
            Event::CaseFinished { .. }
            | Event::Requests { .. }
            | Event::Errors { .. }
            | Event::LoadSecond { .. } => {
                return;
            }
            Event::Finished { complete, .. } => {
                s.step = if *complete { "finished" } else { "stopped" }.into();
            }
        }
        s.updated_ms = now_ms();
        // The runner may have stopped listening (its task is over): nothing to tell.
        let _ = self.tx.send(s.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perf_run_counts_records_and_names_its_case() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut sink = StatusSink::new(tx);
        sink.event(&Event::RunStarted {
            run_id: "r".into(),
            suite: "perf".into(),
            cases: 2,
            repetitions: Some(3),
            expected_records: 6,
            valkey_version: "8.1.1".into(),
            source_id: "s".into(),
            engine: "native".into(),
            results: "/tmp/r".into(),
            hosts: "servers on h3; load from h1, h2".into(),
        });
        sink.event(&Event::CaseStarted {
            case: "GET-64B-p1".into(),
            index: 2,
            cases: 2,
        });
        sink.event(&Event::RecordWritten {
            case: "GET-64B-p1".into(),
            index: 2,
            cases: 2,
            repetition: 1,
            done: 4,
            line: "GET 64B: 100k req/s".into(),
            figures: [("ops_per_sec".to_string(), 1e5)].into(),
        });
        let last = rx.try_iter().last().unwrap();
        assert_eq!(last.hosts, "servers on h3; load from h1, h2");
        assert_eq!(
            (
                last.step.as_str(),
                last.done,
                last.total,
                last.last.as_str()
            ),
            (
                "case 2/2: GET-64B-p1",
                4,
                6,
                "GET-64B-p1: GET 64B: 100k req/s"
            )
        );
        assert_eq!(last.figures["ops_per_sec"], 1e5);
        assert_eq!(last.unit, "records");
    }
}
