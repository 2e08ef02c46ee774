//! A subscriber connection of a pub/sub workload: SUBSCRIBE to every channel before the
//! run starts, then time each message from the send time its payload carries.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::stats::{HIGHEST_US, WorkerStats};
use super::{Plan, Shared};
use crate::resp::{self, ParseError};
use crate::transport::Wire;
use crate::workload::STAMP_DIGITS;

/// How long subscribers keep reading after the last publisher stops.
const LINGER: Duration = Duration::from_millis(200);

/// Subscribes `stream` to channels `0..channels` and waits for every confirmation, within
/// the setup deadline.
pub(super) async fn subscribe(
    stream: &mut Wire,
    prefix: &str,
    digits: usize,
    channels: u64,
) -> std::io::Result<()> {
    let setup = subscribe_now(stream, prefix, digits, channels);
    super::slot_routing::within_setup("SUBSCRIBE", setup).await
}

async fn subscribe_now(
    stream: &mut Wire,
    prefix: &str,
    digits: usize,
    channels: u64,
) -> std::io::Result<()> {
    let names: Vec<String> = (0..channels)
        .map(|c| format!("{prefix}channel:{c:0digits$}"))
        .collect();
    let mut args: Vec<&str> = vec!["SUBSCRIBE"];
    args.extend(names.iter().map(String::as_str));
    let mut out = Vec::new();
    resp::encode_command(&mut out, &args);
    stream.send(&out).await?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut confirmed = 0;
    while confirmed < channels {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed during SUBSCRIBE",
            ));
        }
        let mut pos = 0;
        while let Ok((reply, used)) = resp::scan(&buf[pos..]) {
            if reply == resp::Reply::Error {
                let text = String::from_utf8_lossy(&buf[pos..pos + used])
                    .trim()
                    .to_string();
                return Err(std::io::Error::other(format!("SUBSCRIBE failed: {text}")));
            }
            confirmed += 1;
            pos += used;
        }
        buf.drain(..pos);
    }
    Ok(())
}

pub(super) struct Subscriber {
    pub stream: Wire,
    pub plan: Arc<Plan>,
    pub shared: Arc<Shared>,
    pub stats: Rc<RefCell<WorkerStats>>,
    /// Index of the delivery counters in `WorkerStats::commands`.
    pub slot: usize,
}

impl Subscriber {
    pub async fn run(mut self) {
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut quiet_since: Option<Instant> = None;
        loop {
            if self.shared.aborted.load(Ordering::Relaxed) || self.shared.shutdown.is_triggered() {
                return;
            }
            if self.shared.publishers_left.load(Ordering::SeqCst) == 0 {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() > LINGER {
                    return;
                }
            }
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
            let read = tokio::select! {
                biased;
                r = self.stream.read_buf(&mut buf) => r,
                () = super::runtime::sleep(Duration::from_millis(50)) => continue,
            };
            match read {
                Ok(0) | Err(_) => {
                    // The publishers notice the server going away and end the run.
                    self.stats
                        .borrow_mut()
                        .error("io: subscriber connection lost");
                    return;
                }
                Ok(_) => {}
            }
            let received = Instant::now();
            let mut pos = 0;
            let mut stats = self.stats.borrow_mut();
            loop {
                let used = match resp::scan(&buf[pos..]) {
                    Ok((_, used)) => used,
                    Err(ParseError::Incomplete) => break,
                    Err(ParseError::Invalid { .. }) => {
                        stats.error("io: invalid RESP on a subscriber connection");
                        return;
                    }
                };
                if let Some(stamp) =
                    resp::message_payload(&buf[pos..pos + used]).and_then(parse_stamp)
                {
                    let sent = self.plan.origin + Duration::from_nanos(stamp);
                    if sent >= self.plan.measure_from {
                        let us = (received.saturating_duration_since(sent).as_micros() as u64)
                            .clamp(1, HIGHEST_US);
                        stats.commands[self.slot].latency.saturating_record(us);
                        stats.commands[self.slot].hits += 1;
                    }
                }
                pos += used;
            }
            drop(stats);
            buf.drain(..pos);
        }
    }
}

fn parse_stamp(payload: &[u8]) -> Option<u64> {
    let digits = payload.get(..STAMP_DIGITS)?;
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}
