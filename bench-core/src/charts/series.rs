//! TimeSeries: per-second ops and p99 per repetition, the warmup shaded.

use super::*;

/// One run's seconds: (second, ops, p99 µs). Warmup seconds are negative.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesLine {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimeSeries {
    pub title: String,
    pub lines: Vec<SeriesLine>,
}

impl Draw for TimeSeries {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn height(&self) -> u32 {
        620
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let points = || self.lines.iter().flat_map(|l| l.points.iter());
        let x_min = points().map(|p| p.0).fold(0.0, f64::min);
        let x_max = points().map(|p| p.0 + 1.0).fold(1.0, f64::max);
        let titled = root.titled(&self.title, caption_font()).map_err(text)?;
        let (top, bottom) = titled.split_vertically(titled.dim_in_pixel().1 / 2);
        type Value = fn(&(f64, f64, f64)) -> f64;
        type Format = fn(f64) -> String;
        let panels: [(&DrawingArea<DB, Shift>, &str, Value, Format); 2] = [
            (&top, "requests per second", |p| p.1, si),
            (&bottom, "p99 latency", |p| p.2, micros),
        ];
        for (n, (area, y_desc, value, format)) in panels.into_iter().enumerate() {
            let y_max = points().map(value).fold(1.0, f64::max) * 1.1;
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(x_min..x_max, 0.0..y_max)
                .map_err(text)?;
            chart
                .configure_mesh()
                .x_desc(
                    "seconds since the measured window began (shaded: warmup; a run's last, partial second is left out)",
                )
                .y_desc(y_desc)
                .y_label_formatter(&|v| format(*v))
                .axis_desc_style(label_font())
                .label_style(label_font())
                .draw()
                .map_err(text)?;
            if x_min < 0.0 {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x_min, 0.0), (0.0, y_max)],
                        RGBColor(200, 200, 200).mix(0.45).filled(),
                    )))
                    .map_err(text)?;
            }
            for (i, line) in self.lines.iter().enumerate() {
                let c = color(i);
                // Each second's figure is drawn at the middle of its second.
                let series = chart
                    .draw_series(LineSeries::new(
                        line.points.iter().map(|p| (p.0 + 0.5, value(p))),
                        c.stroke_width(2),
                    ))
                    .map_err(text)?;
                if n == 0 {
                    series.label(line.label.clone()).legend(line_legend(c));
                }
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .map(|p| Circle::new((p.0 + 0.5, value(p)), 3, c.filled())),
                    )
                    .map_err(text)?;
            }
            if n == 0 {
                legend(&mut chart, SeriesLabelPosition::LowerRight)?;
            }
        }
        Ok(())
    }
}
