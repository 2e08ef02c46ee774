//! Two stacked panels of lines against one x axis (memory and sync charts).

use super::*;

/// A point of a line in [`two_panels`]: one x, a y per panel.
pub(super) struct LinePoint<'a> {
    pub(super) line: &'a str,
    pub(super) x: f64,
    pub(super) y: [f64; 2],
}

pub(super) struct XAxis {
    pub(super) desc: &'static str,
    pub(super) format: fn(f64) -> String,
    /// Start at 0 (a linear size axis), else half a unit around the data (a log axis).
    pub(super) from_zero: bool,
}

/// A panel's y axis: its description and how its numbers print.
type Panel = (&'static str, fn(f64) -> String);

/// Two stacked panels sharing x, one line per distinct `line` label, legend in the top.
pub(super) fn two_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    points: &[LinePoint<'_>],
    x: XAxis,
    panels: [Panel; 2],
) -> Result<(), String> {
    let lines = line_groups(points.iter().map(|p| p.line));
    let titled = root.titled(title, caption_font()).map_err(text)?;
    let (top, bottom) = titled.split_vertically(titled.dim_in_pixel().1 / 2);
    let min = points.iter().map(|p| p.x).fold(f64::MAX, f64::min);
    let max = points.iter().map(|p| p.x).fold(f64::MIN, f64::max);
    let (x_lo, x_hi) = if points.is_empty() {
        (0.0, 1.0)
    } else if x.from_zero {
        (0.0, max.max(0.1) * 1.1)
    } else {
        (min - 0.5, max + 0.5)
    };
    for (n, (area, (y_desc, format))) in [&top, &bottom].into_iter().zip(panels).enumerate() {
        let y_max = points.iter().map(|p| p.y[n]).fold(0.001, f64::max) * 1.15;
        let y_min = points.iter().map(|p| p.y[n]).fold(0.0, f64::min) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_lo..x_hi, y_min..y_max)
            .map_err(text)?;
        chart
            .configure_mesh()
            .x_desc(x.desc)
            .x_label_formatter(&|v| (x.format)(*v))
            .y_desc(y_desc)
            .y_label_formatter(&|v| format(*v))
            .axis_desc_style(label_font())
            .label_style(label_font())
            .draw()
            .map_err(text)?;
        for (i, line) in lines.iter().enumerate() {
            let c = color(i);
            let mut pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.line == line)
                .map(|p| (p.x, p.y[n]))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let series = chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(text)?;
            if n == 0 {
                series.label(line.clone()).legend(line_legend(c));
            }
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(text)?;
        }
        if n == 0 {
            legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }
    }
    Ok(())
}

/// Distinct labels in first-seen order.
pub(super) fn line_groups<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in labels {
        if !out.iter().any(|o| o == l) {
            out.push(l.to_string());
        }
    }
    out
}
