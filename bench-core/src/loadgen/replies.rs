//! What a link's replies come to: the in-flight records they answer, and what each one
//! records (latency, hits and misses, errors).
//!
//! A link keeps its requests in flight as records, oldest first. The requests one pass of
//! the window sends of one template share a start, so in closed loop they share one
//! record with a count, and their replies are taken record by record: the latency, the
//! command's rules and the histogram update are worked out once per record, not once per
//! reply. (Per request, the records and the reply loop cost about as much as scanning the
//! reply itself.) Where requests may be re-sent (cluster mode) every request keeps a record
//! of its own, which knows its bytes.

use std::collections::VecDeque;

use super::stats::{HIGHEST_US, Run, WorkerStats};
use crate::cluster::Redirect;
use crate::resp::{self, ParseError, ReadKind, Reply};

/// The template index of a control request's reply (`ASKING`, `READONLY`).
pub(super) const CONTROL: u16 = u16::MAX;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Pending {
    /// Start (intended start in open loop), ns after the plan's origin: one u64
    /// subtraction per record instead of `Instant` arithmetic.
    pub start_ns: u64,
    /// Requests this record stands for (one where requests are kept).
    pub count: u32,
    /// Its bytes in its link's buffer (kept only when requests may be re-sent).
    pub len: u32,
    /// The template, or [`CONTROL`] for a reply nobody measures (`ASKING`, `READONLY`).
    pub template: u16,
    pub measured: bool,
    /// Redirects this request has followed.
    pub redirects: u8,
}

impl Pending {
    pub fn one(start_ns: u64, template: u16, measured: bool, len: u32) -> Pending {
        Pending {
            start_ns,
            count: 1,
            len,
            template,
            measured,
            redirects: 0,
        }
    }
}

/// Adds sent requests (`p.count` of them) to a link's records: to the newest when they
/// are the same kind of request sent at the same start and `merge` (requests are not
/// kept), else as a record of their own.
#[inline]
pub(super) fn push(inflight: &mut VecDeque<Pending>, p: Pending, merge: bool) {
    if merge
        && let Some(last) = inflight.back_mut()
        && (last.start_ns, last.template, last.measured) == (p.start_ns, p.template, p.measured)
    {
        last.count += p.count;
        return;
    }
    inflight.push_back(p);
}

/// How one template's replies count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Rule {
    /// What makes a reply a hit or a miss.
    pub read: ReadKind,
    /// The size every bulk reply must have (values of a fixed size), if any.
    pub value_len: Option<usize>,
}

/// A link's buffers and records, as [`take`] needs them.
pub(super) struct Replies<'a> {
    pub rbuf: &'a mut Vec<u8>,
    pub scanner: &'a mut resp::Scanner,
    pub inflight: &'a mut VecDeque<Pending>,
    /// The link's sent requests and where the oldest unanswered one starts (cluster mode).
    pub out: &'a [u8],
    pub acked: &'a mut usize,
    /// Cluster mode: this node's histogram in `WorkerStats::nodes`.
    pub node: Option<usize>,
}

/// What [`take`] took.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Taken {
    /// Requests answered (measured or not, redirected included).
    pub answered: usize,
    /// Measured replies recorded.
    pub done: u64,
    /// Bytes of whole replies, to drop from the front of the read buffer.
    pub used: usize,
    /// The offset of bytes that are no RESP, where scanning stopped.
    pub invalid: Option<usize>,
}

/// Scans every whole reply in `r.rbuf`, matches it to its record and records it by its
/// template's rule in `rules`, all as received at `received_ns` (ns after the plan's
/// origin) in the series' second `second`. With `keep`, a redirected request goes to
/// `redirects` with its bytes, to be re-sent.
pub(super) fn take(
    r: Replies,
    rules: &[Rule],
    stats: &mut WorkerStats,
    keep: bool,
    (received_ns, second): (u64, usize),
    redirects: &mut Vec<(Pending, Redirect, Vec<u8>)>,
) -> Taken {
    let mut taken = Taken::default();
    let mut pos = 0;
    // Records with one (template, µs) in a row update the histograms once.
    let mut run = Run::default();
    'records: loop {
        let buf = &r.rbuf[..];
        let Some(&p) = r.inflight.front() else {
            // Replies nobody asked for (e.g. pushes): skip them.
            match r.scanner.scan(&buf[pos..]) {
                Ok((_, used)) => {
                    pos += used;
                    continue;
                }
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Invalid { offset }) => {
                    taken.invalid = Some(pos + offset);
                    break;
                }
            }
        };
        let measured = p.measured && p.template != CONTROL;
        let t = usize::from(p.template);
        let Rule { read, value_len } = match measured {
            true => rules[t],
            false => Rule {
                read: ReadKind::NotRead,
                value_len: None,
            },
        };
        let (mut n, mut recorded, mut hits, mut misses, mut stop) = (0u32, 0u64, 0, 0, false);
        while n < p.count {
            let (reply, used) = match r.scanner.scan(&buf[pos..]) {
                Ok(found) => found,
                Err(ParseError::Incomplete) => {
                    stop = true;
                    break;
                }
                Err(ParseError::Invalid { offset }) => {
                    taken.invalid = Some(pos + offset);
                    stop = true;
                    break;
                }
            };
            let raw = &buf[pos..pos + used];
            pos += used;
            n += 1;
            if keep {
                let sent_at = *r.acked;
                *r.acked += p.len as usize;
                if reply == Reply::Error
                    && p.template != CONTROL
                    && let Some(redirect) = Redirect::parse(&raw[1..])
                {
                    let bytes = r.out[sent_at..sent_at + p.len as usize].to_vec();
                    redirects.push((Pending { count: 1, ..p }, redirect, bytes));
                    continue;
                }
            }
            if !measured {
                continue;
            }
            recorded += 1;
            if reply == Reply::Error {
                stats.commands[t].errors += 1;
                stats.second(second).errors += 1;
                stats.error(error_kind(&raw[1..]));
                continue;
            }
            let (h, m) = resp::hits_and_misses(read, reply, raw);
            hits += h;
            misses += m;
            if let (Reply::Bulk(len), Some(want)) = (reply, value_len)
                && len != want
            {
                stats.error("check: value of unexpected size");
            }
        }
        taken.answered += n as usize;
        if recorded > 0 {
            let us = (received_ns.saturating_sub(p.start_ns) / 1000).clamp(1, HIGHEST_US);
            if run.count > 0 && (run.template, run.us) != (t, us) {
                run.flush(stats, r.node, second);
            }
            (run.template, run.us) = (t, us);
            run.count += recorded;
            stats.commands[t].hits += hits;
            stats.commands[t].misses += misses;
            taken.done += recorded;
        }
        if n == p.count {
            r.inflight.pop_front();
        } else if let Some(front) = r.inflight.front_mut() {
            front.count -= n;
        }
        if stop {
            break 'records;
        }
    }
    run.flush(stats, r.node, second);
    if taken.done > 0 {
        stats.last_reply_ns = stats.last_reply_ns.max(received_ns);
    }
    taken.used = pos;
    taken
}

/// The first word of an error reply (`WRONGTYPE`, `ERR`, `OOM`, ...), `reply` without its
/// leading `-`.
pub(super) fn error_kind(reply: &[u8]) -> &str {
    let end = reply
        .iter()
        .position(|&b| b == b' ' || b == b'\r')
        .unwrap_or(reply.len())
        .min(32);
    std::str::from_utf8(&reply[..end]).unwrap_or("ERR")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::RedirectKind;

    const GET: Rule = Rule {
        read: ReadKind::Null,
        value_len: Some(3),
    };
    const SET: Rule = Rule {
        read: ReadKind::NotRead,
        value_len: None,
    };

    /// A link's state for `take`: `records` in flight, `bytes` received.
    struct Link {
        rbuf: Vec<u8>,
        scanner: resp::Scanner,
        inflight: VecDeque<Pending>,
        out: Vec<u8>,
        acked: usize,
    }

    impl Link {
        fn new(records: &[Pending], bytes: &[u8]) -> Link {
            Link {
                rbuf: bytes.to_vec(),
                scanner: resp::Scanner::default(),
                inflight: records.iter().copied().collect(),
                out: Vec::new(),
                acked: 0,
            }
        }

        fn take(
            &mut self,
            stats: &mut WorkerStats,
            keep: bool,
        ) -> (Taken, Vec<(Pending, Redirect, Vec<u8>)>) {
            let mut redirects = Vec::new();
            let replies = Replies {
                rbuf: &mut self.rbuf,
                scanner: &mut self.scanner,
                inflight: &mut self.inflight,
                out: &self.out,
                acked: &mut self.acked,
                node: None,
            };
            let taken = take(
                replies,
                &[GET, SET],
                stats,
                keep,
                (5_000_000, 0),
                &mut redirects,
            );
            (taken, redirects)
        }
    }

    fn records(count: u32, template: u16, start_ns: u64) -> Pending {
        Pending {
            count,
            ..Pending::one(start_ns, template, true, 0)
        }
    }

    #[test]
    fn requests_of_one_pass_share_a_record_unless_they_are_kept() {
        let mut inflight = VecDeque::new();
        for _ in 0..3 {
            push(&mut inflight, Pending::one(7, 0, true, 10), true);
        }
        push(&mut inflight, Pending::one(7, 1, true, 10), true);
        push(&mut inflight, Pending::one(8, 1, true, 10), true);
        push(&mut inflight, Pending::one(8, 1, false, 10), true);
        let counts: Vec<_> = inflight.iter().map(|p| (p.template, p.count)).collect();
        assert_eq!(counts, [(0, 3), (1, 1), (1, 1), (1, 1)]);

        let mut kept = VecDeque::new();
        for _ in 0..3 {
            push(&mut kept, Pending::one(7, 0, true, 10), false);
        }
        assert_eq!(kept.len(), 3);
    }

    #[test]
    fn replies_are_taken_record_by_record_with_each_records_latency() {
        // Three GETs sent at 1 ms (a hit, a miss, a hit), then two SETs sent at 2 ms.
        let mut link = Link::new(
            &[records(3, 0, 1_000_000), records(2, 1, 2_000_000)],
            b"$3\r\nabc\r\n$-1\r\n$3\r\nxyz\r\n+OK\r\n+OK\r\n",
        );
        let mut stats = WorkerStats::new(2);
        let (taken, redirects) = link.take(&mut stats, false);
        assert!(redirects.is_empty());
        assert_eq!((taken.answered, taken.done, taken.invalid), (5, 5, None));
        assert_eq!(taken.used, link.rbuf.len());
        assert!(link.inflight.is_empty());
        let get = &stats.commands[0];
        assert_eq!((get.hits, get.misses, get.errors), (2, 1, 0));
        // Received at 5 ms: GETs took 4,000 µs, SETs 3,000 µs.
        assert_eq!(get.latency.len(), 3);
        assert_eq!(get.latency.count_at(4000), 3);
        assert_eq!(stats.commands[1].latency.count_at(3000), 2);
        assert_eq!(stats.seconds[0].ops, 5);
        assert_eq!(stats.seconds[0].latency.len(), 5);
        assert_eq!(stats.last_reply_ns, 5_000_000);
    }

    #[test]
    fn a_reply_cut_short_leaves_its_record_with_the_rest() {
        let whole = b"$3\r\nabc\r\n$3\r\nabc\r\n";
        let mut bytes = whole.to_vec();
        bytes.extend_from_slice(b"$3\r\nab");
        let mut link = Link::new(&[records(4, 0, 0)], &bytes);
        let mut stats = WorkerStats::new(2);
        let (taken, _) = link.take(&mut stats, false);
        assert_eq!((taken.answered, taken.done), (2, 2));
        assert_eq!(taken.used, whole.len());
        assert_eq!(link.inflight[0].count, 2);
    }

    #[test]
    fn errors_unexpected_sizes_control_replies_and_strays_count_as_they_should() {
        let control = Pending::one(0, CONTROL, false, 0);
        let mut link = Link::new(
            &[control, records(3, 0, 0)],
            b"+OK\r\n-WRONGTYPE Operation against a key\r\n$4\r\nabcd\r\n$3\r\nabc\r\n>2\r\n+a\r\n+b\r\n",
        );
        let mut stats = WorkerStats::new(2);
        let (taken, _) = link.take(&mut stats, false);
        // The control reply is answered but not measured; the push after the last
        // record is nobody's and skipped.
        assert_eq!((taken.answered, taken.done), (4, 3));
        assert_eq!(taken.used, link.rbuf.len());
        assert_eq!(stats.commands[0].errors, 1);
        assert_eq!(stats.seconds[0].errors, 1);
        assert_eq!(stats.errors.get("WRONGTYPE"), Some(&1));
        assert_eq!(
            stats.errors.get("check: value of unexpected size"),
            Some(&1)
        );
        assert_eq!((stats.commands[0].hits, stats.commands[0].misses), (2, 0));
    }

    #[test]
    fn bytes_that_are_no_resp_stop_the_scan_where_they_start() {
        let mut link = Link::new(&[records(3, 0, 0)], b"$3\r\nabc\r\n?junk\r\n");
        let mut stats = WorkerStats::new(2);
        let (taken, _) = link.take(&mut stats, false);
        assert_eq!((taken.answered, taken.done, taken.invalid), (1, 1, Some(9)));
        assert_eq!(link.inflight[0].count, 2);
    }

    #[test]
    fn an_aggregate_split_over_reads_is_resumed_and_answers_one_request() {
        let reply = b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n";
        let cut = 12;
        let mut link = Link::new(&[records(1, 1, 0)], &reply[..cut]);
        let mut stats = WorkerStats::new(2);
        let (taken, _) = link.take(&mut stats, false);
        assert_eq!((taken.answered, taken.used), (0, 0));
        link.rbuf.extend_from_slice(&reply[cut..]);
        let (taken, _) = link.take(&mut stats, false);
        assert_eq!((taken.answered, taken.done), (1, 1));
        assert_eq!(taken.used, reply.len());
        assert!(link.inflight.is_empty());
    }

    #[test]
    fn a_kept_request_that_is_redirected_comes_back_with_its_bytes() {
        let mut link = Link::new(
            &[Pending::one(0, 0, true, 5), Pending::one(0, 0, true, 6)],
            b"-MOVED 3999 127.0.0.1:6381\r\n$3\r\nabc\r\n",
        );
        link.out = b"firstsecond".to_vec();
        let mut stats = WorkerStats::new(2);
        let (taken, redirects) = link.take(&mut stats, true);
        assert_eq!((taken.answered, taken.done), (2, 1));
        assert_eq!(link.acked, 11);
        let [(p, redirect, bytes)] = &redirects[..] else {
            panic!("one redirect expected, got {redirects:?}");
        };
        assert_eq!((p.count, p.len), (1, 5));
        assert_eq!(redirect.kind, RedirectKind::Moved);
        assert_eq!(redirect.slot, 3999);
        assert_eq!(bytes, b"first");
        // A redirect is no error and not measured.
        assert_eq!(stats.commands[0].errors, 0);
        assert_eq!(stats.commands[0].latency.len(), 1);
    }
}
