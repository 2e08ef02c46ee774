//! Sync: full-sync time and throughput against data size, per mode.

use super::*;

/// One sync case: medians over replicas and repetitions.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncPoint {
    /// `disk`, `diskless`, with ` + writes` under a write load.
    pub line: String,
    pub data_bytes: f64,
    pub sync_secs: f64,
    pub throughput_bytes_per_sec: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sync {
    pub points: Vec<SyncPoint>,
}

impl Draw for Sync {
    fn title(&self) -> String {
        "Full sync: time and throughput against data size".into()
    }

    fn height(&self) -> u32 {
        680
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        const MIB: f64 = 1024.0 * 1024.0;
        let points: Vec<LinePoint> = self
            .points
            .iter()
            .map(|p| LinePoint {
                line: &p.line,
                x: p.data_bytes / MIB,
                y: [p.sync_secs, p.throughput_bytes_per_sec / MIB],
            })
            .collect();
        two_panels(
            root,
            &self.title(),
            &points,
            XAxis {
                desc: "data on the primary (MiB)",
                format: |v| trim_float((v * 10.0).round() / 10.0),
                from_zero: true,
            },
            [
                ("full-sync time (s)", |v| {
                    trim_float((v * 100.0).round() / 100.0)
                }),
                ("throughput (MiB/s)", |v| {
                    trim_float((v * 10.0).round() / 10.0)
                }),
            ],
        )
    }
}
