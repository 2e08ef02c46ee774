//! Compare: change % with its 95% interval per case, the threshold band, verdict colours.
//! Rows come as costs (time per operation, instructions, CPU per request), so slower or
//! more work is always to the right.

use super::*;

/// One compared case's primary metric.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareRow {
    /// `GET/32B/P16/c50/io1 · throughput`.
    pub label: String,
    /// `1.02M → 0.98M` (the unit is in the label).
    pub values: String,
    pub change_pct: f64,
    pub ci_pct: Option<(f64, f64)>,
    pub verdict: crate::compare::Verdict,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Compare {
    pub title: String,
    pub threshold_pct: f64,
    pub rows: Vec<CompareRow>,
}

/// Blank rows under the cases for the legend (four verdicts).
const COMPARE_LEGEND_ROWS: u32 = 3;

fn verdict_color(v: crate::compare::Verdict) -> RGBColor {
    use crate::compare::Verdict::*;
    match v {
        Regression => RGBColor(213, 94, 0),
        Improvement => RGBColor(0, 158, 115),
        NoChange => RGBColor(0, 114, 178),
        Inconclusive => RGBColor(120, 120, 120),
    }
}

impl Draw for Compare {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn height(&self) -> u32 {
        (150 + 34 * (self.rows.len() as u32 + COMPARE_LEGEND_ROWS)).max(280)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        use crate::compare::Verdict;
        let extent = self
            .rows
            .iter()
            .flat_map(|r| {
                let (lo, hi) = r.ci_pct.unwrap_or((r.change_pct, r.change_pct));
                [lo.abs(), hi.abs(), r.change_pct.abs()]
            })
            .fold(self.threshold_pct * 2.0, f64::max)
            .max(1.0)
            * 1.15;
        let rows = self.rows.len().max(1) as f64;
        let label_area = self
            .rows
            .iter()
            .map(|r| label_width(&r.label))
            .max()
            .unwrap_or(60);
        let mut chart = ChartBuilder::on(root)
            .caption(self.title(), caption_font())
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(label_area)
            .right_y_label_area_size(230)
            .build_cartesian_2d(
                -extent..extent,
                (rows + f64::from(COMPARE_LEGEND_ROWS))..0.0,
            )
            .map_err(text)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(
                "cost per request, candidate against baseline, % (right: slower or more work; bar: 95% CI; band: ±threshold)",
            )
            .x_label_formatter(&|v| format!("{v:+.0}%"))
            .light_line_style(TRANSPARENT)
            .axis_desc_style(label_font())
            .label_style(label_font())
            .draw()
            .map_err(text)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(-self.threshold_pct, 0.0), (self.threshold_pct, rows)],
                RGBColor(0, 114, 178).mix(0.08).filled(),
            )))
            .map_err(text)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (0.0, rows)],
                BLACK.stroke_width(1),
            )))
            .map_err(text)?;
        for verdict in [
            Verdict::Regression,
            Verdict::Improvement,
            Verdict::NoChange,
            Verdict::Inconclusive,
        ] {
            let c = verdict_color(verdict);
            let mine: Vec<(usize, &CompareRow)> = self
                .rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.verdict == verdict)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut elements: Vec<PathElement<(f64, f64)>> = Vec::new();
            for &(i, r) in &mine {
                if let Some((lo, hi)) = r.ci_pct {
                    let y = i as f64 + 0.5;
                    elements.push(PathElement::new(vec![(lo, y), (hi, y)], c.stroke_width(3)));
                    for x in [lo, hi] {
                        elements.push(PathElement::new(
                            vec![(x, y - 0.18), (x, y + 0.18)],
                            c.stroke_width(2),
                        ));
                    }
                }
            }
            chart.draw_series(elements).map_err(text)?;
            chart
                .draw_series(
                    mine.iter()
                        .map(|(i, r)| Circle::new((r.change_pct, *i as f64 + 0.5), 6, c.filled())),
                )
                .map_err(text)?
                .label(verdict.label())
                .legend(move |(x, y)| Circle::new((x + 6, y), 5, c.filled()));
        }
        let labels: Vec<String> = self.rows.iter().map(|r| r.label.clone()).collect();
        row_labels(root, &chart, -extent, &labels)?;
        let style = label_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, r) in self.rows.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(extent, i as f64 + 0.5));
            let note: String = format!("{:+.1}% {}", r.change_pct, r.values)
                .chars()
                .take(36)
                .collect();
            root.draw(&Text::new(note, (px + 8, py), style.clone()))
                .map_err(text)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerLeft)
    }
}
