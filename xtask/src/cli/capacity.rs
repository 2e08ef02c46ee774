//! `cargo xtask capacity`: the highest rate one perf case sustains within a latency
//! objective, or each of a parameter's values (`--over`): `capacity/` runs the trials and
//! words the answer, `bench_core::capacity` decides.

use std::path::PathBuf;
use std::time::Duration;

use bench_core::capacity::{Guards, Objective, Outcome};
use bench_core::loadgen::engine::NativeEngine;
use bench_core::shutdown::Shutdown;
use clap::Args;
use serde_json::json;

use super::ValkeyArgs;
use super::args::{MatrixArgs, TopologyArgs};
use crate::capacity::answer::{answer_text, json_of, knee};
use crate::capacity::over::{self, Over};
use crate::capacity::{self, Deployment, Searched, Setup};
use crate::case::{CaseContext, Deploy};
use crate::error::{Unverified, UsageError};
use crate::events::Event;
use crate::rundir::{RunDir, new_run, run_id};

#[derive(Args, Debug)]
pub struct CapacityCmd {
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    /// The objective every trial must hold: latency percentiles with their bounds, and
    /// optionally the errors a trial may have (`p99<=1ms,p99.9<=5ms,errors<=0`).
    #[arg(long, value_name = "OBJECTIVE")]
    pub slo: String,
    /// The case's command, value size, pipeline, connections, io-threads and keyspace,
    /// one value each (default GET of 32 B, pipeline 16, 50 connections, 100,000 keys).
    #[command(flatten)]
    pub matrix: MatrixArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,
    /// The first rate tried, requests/s (default: half the closed-loop peak, measured
    /// first).
    #[arg(long, value_name = "RATE")]
    pub start: Option<f64>,
    /// Stop bisecting when the bracket's ends are this close, percent.
    #[arg(long, default_value_t = 2.0, value_name = "PERCENT")]
    pub resolution: f64,
    /// Each trial's measured window, seconds (a quarter more runs before it as warmup).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub trial_seconds: f64,
    #[arg(long, default_value_t = 9000)]
    pub base_port: u16,
    /// Results directory (default: results/<run-id>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the search's progress events here, one JSON object per line, flushed as
    /// they happen (step, capacity_step for every trial and decided rate with the bracket
    /// so far, warning, finished).
    #[arg(long, value_name = "FILE")]
    pub progress_json: Option<PathBuf>,
    /// Search once per value of one parameter (`clients`, `pipeline`, `value-size`,
    /// `io-threads`, `keyspace`), its values as the matrix flag takes them:
    /// `clients=10..200x2`. The answers' table and chart follow the searches.
    #[arg(long, value_name = "PARAM=VALUES", value_parser = over::parse)]
    pub over: Option<Over>,
    /// Print the answer, every rate and every trial as JSON.
    #[arg(long)]
    pub json: bool,
}

impl CapacityCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let (deployment, setups) = self.setups()?;
        let read_from = self.topology.read_from(deployment.topology)?;
        let mut sinks =
            crate::views::terminal_and_json(self.progress_json.as_deref(), self.out.as_deref())?;
        let binaries = self.valkey.binaries(shutdown)?;
        let topology = crate::topology::from_spec(deployment.topology, read_from);
        let servers = Deploy {
            topology: topology.as_ref(),
            hosts: crate::host::local_hosts(),
        };
        let host = crate::host::info();
        let run_id = run_id("capacity");
        let run_dir = RunDir::create(&new_run(&run_id, self.out.as_deref())?)?;
        let ctx = CaseContext {
            run_id: &run_id,
            binaries: &binaries,
            host: &host,
            hosts: crate::host::local_hosts(),
            engine: &NativeEngine,
            base_port: self.base_port,
            shutdown,
            servers: &servers,
            tls: deployment.tls,
        };
        let cases: Vec<&str> = setups.iter().map(|(_, s)| s.case.name.as_str()).collect();
        let header = format!(
            "# Capacity run {run_id}\n\n- case: {}\n- objective: {}\n- Valkey: {} ({}; {})\n- host: {}, {} CPUs\n- command: `{}`\n",
            cases.join(", "),
            self.slo,
            binaries.version,
            binaries.source_id,
            binaries.build,
            host.hostname,
            host.cpus,
            crate::rundir::command_line()
        );
        let mut searches: Vec<(u64, Searched)> = Vec::new();
        // Records appended, for the `finished` event (a failed search's too).
        let appended = std::cell::Cell::new(0usize);
        let mut texts = Vec::new();
        for (value, setup) in &setups {
            sinks.emit(Event::Step {
                message: format!(
                    "capacity of {} on Valkey {} within {}",
                    setup.case.name, binaries.version, setup.objective
                ),
            });
            let searched =
                capacity::run(&ctx, setup, &mut |event| sinks.emit(event), &mut |record| {
                    run_dir.append_serialized(&record)?;
                    appended.set(appended.get() + 1);
                    Ok(())
                });
            let searched = match searched {
                Ok(searched) => searched,
                Err(e) => {
                    let summary = format!(
                        "{header}\n```text\n{}\n```\n\n**incomplete**: {e:#}\n",
                        texts.join("\n\n")
                    );
                    // The search's own error is what the user needs; a summary that
                    // cannot be written is a warning beside it.
                    let mut written = run_dir.write_file("summary.md", &summary);
                    // The searches done keep their answers (`--over`).
                    if let (Some(over), false) = (&self.over, searches.is_empty()) {
                        let mut json = over_json(over, &searches, &setups);
                        json["incomplete"] = json!(format!("{e:#}"));
                        written = written
                            .and(run_dir.write_file("capacity.json", &format!("{json:#}\n")));
                    }
                    if let Err(w) = written {
                        sinks.emit(Event::Warning {
                            message: format!("the run's summary was not written: {w:#}"),
                        });
                    }
                    sinks.emit(Event::Finished {
                        run_id: Some(run_id.clone()),
                        records: appended.get(),
                        dir: Some(run_dir.path().to_path_buf()),
                        complete: false,
                        error: Some(format!("{e:#}")),
                    });
                    return Err(e);
                }
            };
            let text = format!("{}:\n{}", setup.case.name, answer_text(&searched, setup));
            if self.over.is_some() {
                // Each answer as it is found; the table of them all goes to stdout.
                sinks.emit(Event::Step {
                    message: text.clone(),
                });
            }
            texts.push(text);
            // The chart illustrates; a machine without a font still has the answer.
            let name = match &self.over {
                Some(over) => format!("knee-{}-{value}", over.param),
                None => "knee".into(),
            };
            if let Err(e) =
                crate::publish::write_chart(run_dir.path(), &name, &knee(&searched, setup))
            {
                sinks.emit(Event::Warning {
                    message: format!("the {name} chart was not written: {e:#}"),
                });
            }
            searches.push((*value, searched));
        }
        let (text, json) = match &self.over {
            None => {
                let (_, setup) = &setups[0];
                let s = &searches[0].1;
                (answer_text(s, setup), json_of(s, setup))
            }
            Some(over) => {
                let table = over::table(over, &self.slo, &searches);
                texts.push(table.clone());
                (table, over_json(over, &searches, &setups))
            }
        };
        run_dir.write_file(
            "summary.md",
            &format!("{header}\n```text\n{}\n```\n", texts.join("\n\n")),
        )?;
        run_dir.write_file("capacity.json", &format!("{json:#}\n"))?;
        let exit = exit(searches.iter().map(|(_, s)| &s.outcome));
        // A search stopped (generator-bound, or trials that did not count) is no complete
        // run; an unverified answer is.
        let stopped = exit.as_ref().err().filter(|e| !e.is::<Unverified>());
        sinks.emit(Event::Finished {
            run_id: Some(run_id.clone()),
            records: appended.get(),
            dir: Some(run_dir.path().to_path_buf()),
            complete: stopped.is_none(),
            error: stopped.map(|e| format!("{e:#}")),
        });
        eprintln!("results: {}", run_dir.path().display());
        if self.json {
            println!("{json}");
        } else {
            println!("{text}");
        }
        exit
    }

    /// Everything checked before anything is built or started: per value searched (0
    /// without `--over`), its setup.
    fn setups(&self) -> Result<(Deployment, Vec<(u64, Setup)>), UsageError> {
        if let Some(out) = &self.out {
            crate::rundir::check_unused(out).map_err(UsageError)?;
        }
        if self.topology.read_from.as_deref() == Some("replicas") {
            return Err(UsageError(
                "capacity --read-from replicas: the server costs would count the primaries only, which serve none of the reads; not there yet (docs/capacity.md, \"Not yet\")".into(),
            ));
        }
        let deployment = Deployment {
            topology: self.topology.spec()?.unwrap_or_default(),
            tls: self.topology.tls(self.valkey.tls),
        };
        let objective = Objective::parse(&self.slo).map_err(|e| UsageError(e.to_string()))?;
        if !(self.resolution.is_finite() && (0.1..=50.0).contains(&self.resolution)) {
            return Err(UsageError(format!(
                "--resolution {}: give a percentage from 0.1 to 50",
                self.resolution
            )));
        }
        if !(self.trial_seconds.is_finite() && (0.2..=600.0).contains(&self.trial_seconds)) {
            return Err(UsageError(format!(
                "--trial-seconds {}: give 0.2 to 600 seconds",
                self.trial_seconds
            )));
        }
        if let Some(start) = self.start {
            bench_core::loadgen::engine::check_rate(Some(start))
                .map_err(|why| UsageError(format!("--start: {why}")))?;
        }
        let matrix = self.matrix.matrix();
        let matrices = match &self.over {
            None => vec![(0, matrix)],
            Some(over) => over
                .values
                .iter()
                .map(|&v| Ok((v, over.apply(v, &matrix)?)))
                .collect::<Result<_, String>>()
                .map_err(UsageError)?,
        };
        let machine = crate::host::machine();
        matrices
            .into_iter()
            .map(|(value, m)| {
                let case = capacity::case(&m, deployment, &machine).map_err(UsageError)?;
                Ok((
                    value,
                    Setup {
                        case,
                        objective: objective.clone(),
                        trial: Duration::from_secs_f64(self.trial_seconds),
                        start: self.start,
                        resolution: self.resolution / 100.0,
                        guards: Guards::default(),
                    },
                ))
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|setups| {
                // A parameter the command does not use (a value size for PING) makes the
                // same case at every value: nothing would differ but the label.
                for (i, (value, setup)) in setups.iter().enumerate() {
                    if let Some((other, _)) =
                        setups[..i].iter().find(|(_, s)| s.case.name == setup.case.name)
                    {
                        let param = self.over.as_ref().map_or("", |o| o.param);
                        return Err(UsageError(format!(
                            "--over {param}: {other} and {value} make the same case, {} (its command does not use {param}); search over another parameter",
                            setup.case.name
                        )));
                    }
                }
                Ok((deployment, setups))
            })
    }
}

/// `--over`'s JSON: each search done as a single search's JSON, with its value.
fn over_json(
    over: &Over,
    searches: &[(u64, Searched)],
    setups: &[(u64, Setup)],
) -> serde_json::Value {
    json!({
        "over": over.param,
        "objective": setups[0].1.objective.to_string(),
        "searches": searches
            .iter()
            .zip(setups)
            .map(|((value, s), (_, setup))| {
                let mut j = json_of(s, setup);
                j["value"] = json!(value);
                j
            })
            .collect::<Vec<_>>(),
    })
}

/// The exit of a run whose searches ended in `outcomes`: the worst of them. 0: every
/// answer verified; 3: one not verified, or none found; 2 (an error): a search stopped.
fn exit<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> anyhow::Result<()> {
    let mut unverified = None;
    for outcome in outcomes {
        match outcome {
            Outcome::Found(answer) if answer.verified == Some(Ok(())) => {}
            Outcome::Found(_) => {
                unverified.get_or_insert("the answer was not verified");
            }
            Outcome::NothingPasses { .. } | Outcome::EverythingPasses { .. } => {
                unverified.get_or_insert("no capacity within the rates tried");
            }
            // Nothing was measured where it stopped: the search could not run.
            Outcome::GeneratorBound { rate, why } | Outcome::Invalid { rate, why } => {
                anyhow::bail!("the search stopped at {rate:.0}/s: {why}")
            }
        }
    }
    match unverified {
        Some(why) => Err(Unverified(why.into()).into()),
        None => Ok(()),
    }
}
