//! Open-loop send schedule: request k of connection c is due at
//! `offset(c) + k × interval`, with `interval = connections / rate`, and the connections'
//! offsets spread evenly over one interval so the total rate is smooth, not bursty.

use std::time::Duration;

/// One connection's schedule, relative to the run's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    interval_ns: f64,
    offset_ns: f64,
}

impl Schedule {
    /// `rate` is the total requests per second over all `connections`.
    pub fn new(rate: f64, connections: u32, connection: u32) -> Schedule {
        let interval_ns = 1e9 * f64::from(connections) / rate;
        let offset_ns = interval_ns * f64::from(connection) / f64::from(connections);
        Schedule {
            interval_ns,
            offset_ns,
        }
    }

    /// When request `k` (0-based) is due, after the run's start.
    pub fn due(&self, k: u64) -> Duration {
        Duration::from_nanos((self.offset_ns + k as f64 * self.interval_ns) as u64)
    }

    /// Requests due strictly before `elapsed`.
    pub fn due_before(&self, elapsed: Duration) -> u64 {
        let t = elapsed.as_nanos() as f64 - self.offset_ns;
        if t <= 0.0 {
            0
        } else {
            (t / self.interval_ns).ceil() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_share_the_rate_evenly() {
        // 1000/s over 4 connections: each sends every 4 ms, offsets 0, 1, 2, 3 ms.
        let s: Vec<Schedule> = (0..4).map(|c| Schedule::new(1000.0, 4, c)).collect();
        assert_eq!(s[0].due(0), Duration::ZERO);
        assert_eq!(s[1].due(0), Duration::from_millis(1));
        assert_eq!(s[3].due(2), Duration::from_millis(11));
        // Merged, the sends are 1 ms apart.
        let mut all: Vec<Duration> = s
            .iter()
            .flat_map(|x| (0..5).map(move |k| x.due(k)))
            .collect();
        all.sort();
        for pair in all.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(1));
        }
    }

    #[test]
    fn counts_due_requests() {
        let s = Schedule::new(1000.0, 1, 0); // every 1 ms from 0
        assert_eq!(s.due_before(Duration::ZERO), 0);
        assert_eq!(s.due_before(Duration::from_micros(1)), 1);
        assert_eq!(s.due_before(Duration::from_secs(1)), 1000);
        let total: u64 = (0..3)
            .map(|c| Schedule::new(3000.0, 3, c).due_before(Duration::from_secs(2)))
            .sum();
        assert_eq!(total, 6000);
    }
}
