//! Knee: a capacity search's trials against the rate offered, latency above (log scale)
//! with the objective's bounds, achieved rate below, the answer and its interval marked.

use super::*;

/// One trial of a capacity search.
#[derive(Clone, Debug, PartialEq)]
pub struct KneeTrial {
    /// Requests/s offered and achieved.
    pub offered: f64,
    pub achieved: f64,
    /// p50, p99 and p99.9 of the measured window, µs, where measured.
    pub latency_us: [Option<f64>; 3],
    /// False for a trial that did not count (invalid): drawn hollow.
    pub counted: bool,
    /// A trial that counts against its rate whatever its latency (the rate not sustained,
    /// or errors over the allowance): drawn as a cross.
    pub broken: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Knee {
    pub title: String,
    pub trials: Vec<KneeTrial>,
    /// The objective's latency bounds: the percentile's name (`p99`) and its bound, µs.
    pub bounds: Vec<(String, f64)>,
    /// The answer r* and the interval's top (the lowest rate that failed).
    pub answer: Option<(f64, f64)>,
    /// Whether the answer was verified (0.9 r* passed and 1.1 r* failed).
    pub verified: bool,
}

const PERCENTILES: [&str; 3] = ["p50", "p99", "p99.9"];

impl Draw for Knee {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn height(&self) -> u32 {
        720
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let offered = || self.trials.iter().map(|t| t.offered);
        let x_hi = offered().fold(1.0, f64::max) * 1.08;
        let latencies = || {
            self.trials
                .iter()
                .flat_map(|t| t.latency_us.iter().flatten().copied())
                .chain(self.bounds.iter().map(|b| b.1))
        };
        let lo = latencies().fold(f64::MAX, f64::min);
        let lo = if lo == f64::MAX { 1.0 } else { lo.max(1.0) };
        let hi = latencies().fold(1.0, f64::max);
        let (ylo, yhi) = ((lo * 0.8).log10(), (hi * 2.5).log10());
        let titled = root.titled(&self.title, caption_font()).map_err(text)?;
        let (top, bottom) = titled.split_vertically(titled.dim_in_pixel().1 * 3 / 5);

        let mut chart = ChartBuilder::on(&top)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_hi, ylo..yhi)
            .map_err(text)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| si(*v))
            .y_labels(0)
            .x_desc("offered, requests/s")
            .y_desc("latency per trial (log scale)")
            .axis_desc_style(label_font())
            .label_style(label_font())
            .draw()
            .map_err(text)?;
        latency_ticks(root, &mut chart, (0.0, x_hi), (ylo, yhi))?;
        self.mark_answer(&mut chart, ylo, yhi)?;
        for (name, us) in &self.bounds {
            // In its percentile's colour where that is drawn.
            let c = PERCENTILES
                .iter()
                .position(|p| p == name)
                .map_or(BLACK, color);
            let y = us.max(1.0).log10();
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, y), (x_hi, y)],
                    8,
                    5,
                    c.stroke_width(2),
                ))
                .map_err(text)?
                .label(format!("objective: {name} ≤ {}", micros(*us)))
                .legend(line_legend(c));
        }
        for (n, name) in PERCENTILES.iter().enumerate() {
            let c = color(n);
            let points: Vec<((f64, f64), &KneeTrial)> = self
                .trials
                .iter()
                .filter_map(|t| Some(((t.offered, t.latency_us[n]?.max(1.0).log10()), t)))
                .collect();
            marks(&mut chart, &points, c)?
                .label(*name)
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;

        let y_hi = self
            .trials
            .iter()
            .map(|t| t.achieved.max(t.offered))
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_hi, 0.0..y_hi)
            .map_err(text)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| si(*v))
            .y_label_formatter(&|v| si(*v))
            .x_desc("offered, requests/s (hollow: a trial that did not count; ×: the rate not sustained, or errors over the allowance)")
            .y_desc("achieved, requests/s")
            .axis_desc_style(label_font())
            .label_style(label_font())
            .draw()
            .map_err(text)?;
        self.mark_answer(&mut chart, 0.0, y_hi)?;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (x_hi, x_hi)],
                6,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(text)?
            .label("achieved = offered")
            .legend(line_legend(RGBColor(128, 128, 128)));
        let c = color(0);
        let points: Vec<((f64, f64), &KneeTrial)> = self
            .trials
            .iter()
            .map(|t| ((t.offered, t.achieved), t))
            .collect();
        marks(&mut chart, &points, c)?
            .label("trial")
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

impl Knee {
    /// The interval [r*, top] shaded and r* drawn as a line, between `y0` and `y1`.
    fn mark_answer<'a, DB: DrawingBackend + 'a>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
        y0: f64,
        y1: f64,
    ) -> Result<(), String> {
        let Some((rate, top)) = self.answer else {
            return Ok(());
        };
        let green = RGBColor(0, 158, 115);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(rate, y0), (top, y1)],
                green.mix(0.18).filled(),
            )))
            .map_err(text)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(rate, y0), (rate, y1)],
                green.stroke_width(2),
            )))
            .map_err(text)?
            .label(format!(
                "capacity {}/s (interval shaded){}",
                si(rate),
                if self.verified { "" } else { ", not verified" }
            ))
            .legend(line_legend(green));
        Ok(())
    }
}

/// Draws each trial's mark: a dot, hollow when the trial did not count, a cross when it
/// counts against its rate whatever its latency. Returns the dots' series, to label.
fn marks<'a, 'b, DB: DrawingBackend + 'a>(
    chart: &'b mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: &[((f64, f64), &KneeTrial)],
    c: RGBColor,
) -> Result<&'b mut plotters::chart::SeriesAnno<'a, DB>, String> {
    chart
        .draw_series(
            points
                .iter()
                .filter(|(_, t)| t.broken)
                .map(|&(at, _)| Cross::new(at, 5, c.stroke_width(2))),
        )
        .map_err(text)?;
    chart
        .draw_series(points.iter().filter(|(_, t)| !t.broken).map(|&(at, t)| {
            let style = ShapeStyle {
                filled: t.counted,
                ..c.stroke_width(2)
            };
            Circle::new(at, 4, style)
        }))
        .map_err(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(offered: f64, achieved: f64, p99: f64, counted: bool) -> KneeTrial {
        KneeTrial {
            offered,
            achieved,
            latency_us: [Some(p99 / 4.0), Some(p99), None],
            counted,
            broken: offered > 10_000.0 && counted,
        }
    }

    #[test]
    fn the_knee_marks_the_objective_and_the_answer() {
        super::super::tests::font();
        let mut knee = Knee {
            title: "Capacity of GET/32B within p99<=1ms".into(),
            trials: vec![
                trial(5_000.0, 5_000.0, 300.0, true),
                trial(10_000.0, 10_000.0, 800.0, true),
                trial(10_500.0, 10_100.0, 4_000.0, true),
                trial(20_000.0, 12_000.0, 90_000.0, false),
            ],
            bounds: vec![("p99".into(), 1000.0), ("p95".into(), 700.0)],
            answer: Some((10_000.0, 10_500.0)),
            verified: false,
        };
        let chart = render("knee", &knee).unwrap();
        assert_eq!((chart.width, chart.height), (1000, 720));
        for text in [
            "Capacity of GET/32B within p99&lt;=1ms",
            "objective: p99 ≤ 1.0ms",
            "objective: p95 ≤ 700µs",
            "capacity 10k/s (interval shaded), not verified",
            "achieved = offered",
            "hollow: a trial that did not count",
        ] {
            assert!(chart.svg.contains(text), "{text}");
        }
        assert!(!chart.png.is_empty());
        // No answer, no capacity line.
        knee.answer = None;
        let chart = render("knee", &knee).unwrap();
        assert!(!chart.svg.contains("capacity 10k/s"));
    }
}
