//! Memory: bytes and overhead per item against value size, per data type.

use super::*;

/// One mem case: medians over its repetitions.
#[derive(Clone, Debug, PartialEq)]
pub struct MemPoint {
    /// Line label, e.g. `string` or `hash k16 ttl`.
    pub line: String,
    pub value_size: f64,
    pub bytes_per_item: f64,
    pub overhead_bytes_per_item: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Memory {
    pub points: Vec<MemPoint>,
}

impl Draw for Memory {
    fn title(&self) -> String {
        "Memory per item and overhead against value size".into()
    }

    fn height(&self) -> u32 {
        680
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let points: Vec<LinePoint> = self
            .points
            .iter()
            .map(|p| LinePoint {
                line: &p.line,
                x: p.value_size.max(1.0).log2(),
                y: [p.bytes_per_item, p.overhead_bytes_per_item],
            })
            .collect();
        two_panels(
            root,
            &self.title(),
            &points,
            XAxis {
                desc: "value size in bytes (log scale)",
                format: |v| bytes(2f64.powf(v).round()),
                from_zero: false,
            },
            [
                ("bytes per item (data memory / items)", si),
                ("overhead bytes per item (beyond user data)", si),
            ],
        )
    }
}
