//! A runner on a Valkey queue: a consumer of the group `runners`, claiming with
//! XREADGROUP, renewing with XCLAIM JUSTID, taking dead runners' entries back with
//! XAUTOCLAIM, filing (and acknowledging) a task once its results are on disk.

use std::sync::Mutex;
use std::time::Duration;

use bench_core::client::Value;

use super::scripts::{CLAIM, FINISH, POISON, RECLAIM, RENEW, REPORT};
use super::{
    ENTRY_FIELD_BYTES, ENTRY_FIELDS, GROUP, MAX_SUMMARY_BYTES, ValkeyQueue, items, scripts, text,
};
use crate::queue::{Claimed, Outcome, Seat, Status, Task, check_id, now_ms};

/// The task a runner holds and its stream entry.
struct Held {
    id: String,
    entry: String,
}

/// A runner on a Valkey queue: a consumer of the group.
pub struct StreamSeat<'q> {
    queue: &'q ValkeyQueue,
    id: String,
    lease: Duration,
    held: Mutex<Option<Held>>,
}

impl<'q> StreamSeat<'q> {
    pub fn new(queue: &'q ValkeyQueue, id: String, lease: Duration) -> StreamSeat<'q> {
        StreamSeat {
            queue,
            id,
            lease,
            held: Mutex::new(None),
        }
    }

    fn held(&self) -> Option<(String, String)> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.as_ref().map(|h| (h.id.clone(), h.entry.clone()))
    }

    fn set_held(&self, held: Option<Held>) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
    }

    /// Makes a delivered entry this runner's task (or dead-letters it).
    fn take(&self, entry: &str, fields: &[Value], max: u32) -> anyhow::Result<Option<Claimed>> {
        let q = self.queue;
        let (stream, dead) = (q.key("stream"), q.key("dead"));
        let mut named = None;
        for pair in fields.chunks(2) {
            if let [k, v] = pair
                && text(k).as_deref() == Some("id")
            {
                named = text(v);
            }
        }
        let id = match named.map(|id| check_id(&id).map(|()| id)) {
            Some(Ok(id)) => id,
            other => {
                let why = match other {
                    Some(Err(e)) => format!("stream entry {entry}: {e}"),
                    _ => format!("stream entry {entry} names no task"),
                };
                q.conn.script(POISON, &[&stream, &dead], &[entry, &why])?;
                return Ok(Some(Claimed::Failed {
                    name: format!("entry {entry}"),
                    why,
                }));
            }
        };
        let hash = q.task_key(&id);
        let reply = q.conn.script(
            CLAIM,
            &[&hash, &stream, &dead],
            &[
                entry,
                &self.id,
                &max.to_string(),
                &now_ms().to_string(),
                &id,
                &crate::queue::MAX_TASK_BYTES.to_string(),
            ],
        )?;
        // By position: {'run', doc, deliveries}, {'dead', why} or {'skip'}.
        let parts: Vec<Option<String>> = items(&reply).iter().map(text).collect();
        let at = |i: usize| parts.get(i).cloned().flatten();
        match at(0).as_deref() {
            Some("run") => {
                let doc = at(1).unwrap_or_default();
                let parsed = Task::parse(doc.as_bytes()).and_then(|task| {
                    if task.id == id {
                        Ok(task)
                    } else {
                        Err(format!("id {:?} is not its key's ({id})", task.id))
                    }
                });
                match parsed {
                    Ok(mut task) => {
                        task.deliveries = at(2).and_then(|d| d.parse().ok()).unwrap_or(1);
                        self.set_held(Some(Held {
                            id: id.clone(),
                            entry: entry.to_string(),
                        }));
                        Ok(Some(Claimed::Task(task)))
                    }
                    Err(why) => {
                        // Held only while it is filed: a filing that fails leaves this
                        // runner's key holding nothing, so the task is taken back.
                        self.set_held(Some(Held {
                            id: id.clone(),
                            entry: entry.to_string(),
                        }));
                        let filed = self.file(&id, entry, "failed", &[("error", &why)]);
                        self.set_held(None);
                        filed?;
                        Ok(Some(Claimed::Failed { name: id, why }))
                    }
                }
            }
            Some("dead") => Ok(Some(Claimed::Failed {
                name: id,
                why: at(1).unwrap_or_default(),
            })),
            // Cancelled, removed or requeued meanwhile: dropped.
            Some("skip") => Ok(None),
            _ => anyhow::bail!("claiming {id}: the queue replied {reply:?}"),
        }
    }

    /// Runs FINISH for the held entry; whether it was still ours.
    fn file(
        &self,
        id: &str,
        entry: &str,
        state: &str,
        fields: &[(&str, &str)],
    ) -> anyhow::Result<bool> {
        let q = self.queue;
        let (hash, stream) = (q.task_key(id), q.key("stream"));
        let now = now_ms().to_string();
        let mut args = vec![entry, &self.id, state, &now, id];
        for (k, v) in fields {
            args.extend([*k, *v]);
        }
        let reply = q.conn.script(FINISH, &[&hash, &stream], &args)?;
        self.set_held(None);
        Ok(reply == Value::Integer(1))
    }
}

impl Seat for StreamSeat<'_> {
    fn id(&self) -> &str {
        &self.id
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn renew(&self) -> anyhow::Result<bool> {
        let q = self.queue;
        let (id, entry) = self.held().unwrap_or_default();
        let hash = q.task_key(if id.is_empty() { "-" } else { &id });
        let (stream, mine) = (q.key("stream"), q.key(&format!("runner:{}", self.id)));
        let reply = q.conn.script(
            RENEW,
            &[&hash, &stream, &mine],
            &[
                &self.id,
                &entry,
                &self.lease.as_millis().to_string(),
                &now_ms().to_string(),
            ],
        );
        let reply = match reply {
            Err(e) if format!("{e:#}").contains("NOGROUP") => {
                q.ensure_group()?;
                return Ok(entry.is_empty());
            }
            other => other?,
        };
        Ok(reply == Value::Integer(1))
    }

    fn claim(&self, max_deliveries: u32) -> anyhow::Result<Option<Claimed>> {
        let q = self.queue;
        let stream = q.key("stream");
        loop {
            let read = q.conn.script(
                &scripts::read(),
                &[&stream],
                &[
                    &self.id,
                    &ENTRY_FIELDS.to_string(),
                    &ENTRY_FIELD_BYTES.to_string(),
                ],
            );
            let read = match read {
                Err(e) if format!("{e:#}").contains("NOGROUP") => {
                    q.ensure_group()?;
                    continue;
                }
                other => other?,
            };
            // [[stream, [[entry, [field, value, ...]]]]], or nil when nothing is pending.
            let Some(first) = items(&read).first() else {
                return Ok(None);
            };
            let Some(delivered) = items(first).get(1).and_then(|e| items(e).first()) else {
                return Ok(None);
            };
            let Some(entry) = items(delivered).first().and_then(text) else {
                return Ok(None);
            };
            let fields = items(delivered).get(1).map(items).unwrap_or(&[]);
            if let Some(claimed) = self.take(&entry, fields, max_deliveries)? {
                return Ok(Some(claimed));
            }
        }
    }

    fn report(&self, task: &Task, status: &Status) -> anyhow::Result<()> {
        let q = self.queue;
        let hash = q.task_key(&task.id);
        q.conn.script(
            REPORT,
            &[&hash],
            &[
                &self.id,
                &status.step,
                &status.done.to_string(),
                &status.total.to_string(),
                &status.last,
                &status.updated_ms.to_string(),
                &serde_json::to_string(&status.figures).expect("figures serialize"),
                &serde_json::to_string(&status.warnings).expect("warnings serialize"),
                &status.unit,
                &serde_json::to_string(&status.seconds).expect("seconds serialize"),
                &status.seconds_total.to_string(),
                &status.hosts,
            ],
        )?;
        Ok(())
    }

    fn finish(&self, task: Task, outcome: Outcome) -> anyhow::Result<bool> {
        let Some((id, entry)) = self.held().filter(|(id, _)| *id == task.id) else {
            return Ok(false);
        };
        let results = task.results.clone().unwrap_or_default();
        match outcome {
            Outcome::Requeued => self.file(&id, &entry, "pending", &[]),
            Outcome::GivenBack => self.file(&id, &entry, "given_back", &[]),
            Outcome::Failed(why) => self.file(
                &id,
                &entry,
                "failed",
                &[("error", &why), ("results", &results)],
            ),
            Outcome::Done { summary } => {
                let mut summary = summary.unwrap_or_default();
                const CUT: &str = "\n[cut: the whole summary is in the results directory]\n";
                if summary.len() > MAX_SUMMARY_BYTES {
                    // The note fits inside what a reader of the queue gets (fields are
                    // read cut at MAX_SUMMARY_BYTES).
                    let mut cut = MAX_SUMMARY_BYTES - CUT.len();
                    while !summary.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    summary.truncate(cut);
                    summary.push_str(CUT);
                }
                let verdict = task.verdict.clone().unwrap_or_default();
                let mut fields = vec![("results", results.as_str()), ("summary", &summary)];
                if !verdict.is_empty() {
                    fields.push(("verdict", &verdict));
                }
                self.file(&id, &entry, "done", &fields)
            }
        }
    }

    fn reclaim_dead(&self) -> anyhow::Result<Vec<String>> {
        let q = self.queue;
        // Idle times are kept across a restart of the server; its runners' heartbeats were
        // not. Until the server has been up for a lease and a heartbeat, live runners may
        // not have renewed yet: nothing is taken.
        let info = q.conn.call(&["INFO", "server"])?;
        let uptime = text(&info)
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(f64::MAX);
        if uptime < (self.lease + self.lease / 3).as_secs_f64() + 1.0 {
            return Ok(Vec::new());
        }
        let stream = q.key("stream");
        let idle = self.lease.as_millis().to_string();
        let prefix = q.key("runner:");
        let mut taken = Vec::new();
        let mut cursor = "0-0".to_string();
        for _ in 0..100 {
            let reply = q.conn.script(
                &scripts::autoclaim(),
                &[&stream],
                &[
                    &self.id,
                    &idle,
                    &cursor,
                    &ENTRY_FIELDS.to_string(),
                    &ENTRY_FIELD_BYTES.to_string(),
                ],
            );
            let reply = match reply {
                Err(e) if format!("{e:#}").contains("NOGROUP") => {
                    q.ensure_group()?;
                    return Ok(taken);
                }
                other => other?,
            };
            // [next cursor, [[entry, fields]...], [deleted entries]]
            let parts = items(&reply);
            for deleted in parts
                .get(2)
                .map(items)
                .unwrap_or(&[])
                .iter()
                .filter_map(text)
            {
                q.conn.call(&["XACK", &stream, GROUP, &deleted])?;
            }
            for claimed in parts.get(1).map(items).unwrap_or(&[]) {
                let Some(entry) = items(claimed).first().and_then(text) else {
                    continue;
                };
                let fields = items(claimed).get(1).map(items).unwrap_or(&[]);
                let id = fields
                    .chunks(2)
                    .find(|p| p.first().and_then(text).as_deref() == Some("id"))
                    .and_then(|p| p.get(1).and_then(text));
                let Some(id) = id.filter(|id| check_id(id).is_ok()) else {
                    let why = format!("stream entry {entry} names no task");
                    q.conn
                        .script(POISON, &[&stream, &q.key("dead")], &[&entry, &why])?;
                    continue;
                };
                let hash = q.task_key(&id);
                let reply = q
                    .conn
                    .script(RECLAIM, &[&hash, &stream], &[&entry, &id, &prefix])?;
                if text(&reply).as_deref() == Some("requeued") {
                    taken.push(id);
                }
            }
            cursor = parts.first().and_then(text).unwrap_or_default();
            if cursor == "0-0" || cursor.is_empty() {
                break;
            }
        }
        // A killed runner's consumer stays in the group, empty once its entries are taken
        // back: deleting it here could race with a stalled runner reading a new entry
        // (DELCONSUMER drops what a consumer holds), so only `leave` deletes its own.
        Ok(taken)
    }

    fn held_elsewhere(&self) -> anyhow::Result<bool> {
        let q = self.queue;
        // [count, first, last, [[consumer, count], ...]]
        let summary = q.conn.call(&["XPENDING", &q.key("stream"), GROUP])?;
        Ok(items(&summary)
            .get(3)
            .map(items)
            .unwrap_or(&[])
            .iter()
            .any(|c| {
                items(c)
                    .first()
                    .and_then(text)
                    .is_some_and(|name| name != self.id)
            }))
    }

    fn leave(self: Box<Self>) -> anyhow::Result<()> {
        let q = self.queue;
        q.conn
            .call(&["DEL", &q.key(&format!("runner:{}", self.id))])?;
        // Its consumer goes once it holds nothing (a held entry keeps it, to be reclaimed).
        let pending =
            q.conn
                .call(&["XPENDING", &q.key("stream"), GROUP, "-", "+", "1", &self.id])?;
        if items(&pending).is_empty() {
            q.conn
                .call(&["XGROUP", "DELCONSUMER", &q.key("stream"), GROUP, &self.id])?;
        }
        Ok(())
    }
}
