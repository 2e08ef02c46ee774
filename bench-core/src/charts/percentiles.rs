//! Percentiles: latency against the percentile's nines, from HDR histograms.

use super::*;

/// A latency distribution as (percentile, µs) points, percentiles in 0..100.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Requests the histogram holds: the curve ends at 1 − 1/count, where the percentile
    /// is the maximum, and is marked there.
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Percentiles {
    pub title: String,
    pub curves: Vec<Curve>,
}

/// The x position of a percentile on the "nines" axis: 90 → 1, 99 → 2, 99.9 → 3.
pub fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).max(1e-9).log10()
}

/// Points of a histogram's percentile curve from p0 to the deepest percentile its count
/// supports (p99.99 needs 10,000 values), evenly spaced on the nines axis.
pub fn percentile_points(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    let count = h.len().max(1) as f64;
    let deepest = count.log10().clamp(1.0, 5.0);
    let steps = 120;
    (0..=steps)
        .map(|i| {
            let x = deepest * i as f64 / steps as f64;
            let p = 100.0 * (1.0 - 10f64.powf(-x));
            (p, h.value_at_quantile(p / 100.0).max(1) as f64)
        })
        .collect()
}

impl Draw for Percentiles {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn height(&self) -> u32 {
        480 + 20 * self.curves.len() as u32
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let all = self.curves.iter().flat_map(|c| c.points.iter());
        let (lo, hi) = all.fold((f64::MAX, 1.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let lo = if lo == f64::MAX { 1.0 } else { lo.max(1.0) };
        let x_max = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| nines(p.0)))
            .fold(2.0f64, f64::max);
        // Float noise must not add a whole empty nine.
        let x_max = (x_max - 1e-6).ceil();
        // The y axis is logarithmic by hand (log10 of µs), so the mesh stays f64. Headroom
        // above the highest curve holds the legend (upper left), so it covers none.
        let (ylo, top) = ((lo * 0.8).log10(), (hi * 1.25).log10());
        let legend_share = (0.07 * self.curves.len() as f64 + 0.06).min(0.6);
        let yhi = top + (top - ylo).max(0.5) * legend_share / (1.0 - legend_share);
        let mut chart = ChartBuilder::on(root)
            .caption(self.title(), caption_font())
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max + 0.2, ylo..yhi)
            .map_err(text)?;
        chart
            .configure_mesh()
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| {
                let p = 100.0 * (1.0 - 10f64.powf(-x));
                if *x == 0.0 {
                    "p0".to_string()
                } else {
                    format!("p{}", trim_float(p))
                }
            })
            // Latency ticks at 1, 2 and 5 of each decade, drawn below.
            .y_labels(0)
            .x_desc("percentile (each step right is one more nine; a dot marks a curve's last request, its max)")
            .y_desc("latency (log scale)")
            .axis_desc_style(label_font())
            .label_style(label_font())
            .draw()
            .map_err(text)?;
        latency_ticks(root, &mut chart, (0.0, x_max + 0.2), (ylo, yhi))?;
        for (i, curve) in self.curves.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(
                    curve
                        .points
                        .iter()
                        .map(|&(p, us)| (nines(p), us.max(1.0).log10())),
                    c.stroke_width(2),
                ))
                .map_err(text)?
                .label(format!("{} (n = {})", curve.label, si(curve.count as f64)))
                .legend(line_legend(c));
            // Past 1 − 1/n there are no more requests: the curve's last point is the max.
            // (Curves of over 10⁵ requests stop at p99.999, before their max: no dot.)
            let ends_at_count = (10..=100_000).contains(&curve.count);
            if let Some(&(p, us)) = curve.points.last().filter(|_| ends_at_count) {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (nines(p), us.max(1.0).log10()),
                        4,
                        c.filled(),
                    )))
                    .map_err(text)?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}
