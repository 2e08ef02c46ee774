//! Throughput: cases' median throughput with min–max whiskers, one bar per run.

use super::*;

/// One case's bars, one per run (series).
#[derive(Clone, Debug, PartialEq)]
pub struct ThroughputRow {
    pub case: String,
    /// The command: rows of one command are shaded as a group.
    pub command: String,
    /// Per series: `None` where that run has no such case.
    pub bars: Vec<Option<Spread>>,
}

/// Median and spread of one case's repetitions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread {
            median: crate::stats::median(&v).unwrap_or(v[0]),
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Throughput {
    /// What the rows share, for the title (`pipeline 16`); `None` for every case.
    pub group: Option<String>,
    /// One label per run, in bar order.
    pub series: Vec<String>,
    pub rows: Vec<ThroughputRow>,
}

impl Draw for Throughput {
    fn title(&self) -> String {
        match &self.group {
            Some(g) => {
                format!("Throughput at {g} (bar: median of repetitions; whiskers: min to max)")
            }
            None => "Throughput per case (bar: median of repetitions; whiskers: min to max)".into(),
        }
    }

    fn height(&self) -> u32 {
        let band = 14 * self.series.len().max(1) as u32 + 12;
        (130 + band * self.rows.len() as u32 + 22 * self.series.len() as u32 + band).max(260)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        // Blank rows below the cases hold the legend, so it never covers a bar.
        let band = 14 * self.series.len().max(1) as u32 + 12;
        let legend_rows = ((22 * self.series.len() as u32 + 16) as f64 / band as f64).ceil();
        let rows = self.rows.len().max(1) as f64;
        let x_max = self
            .rows
            .iter()
            .flat_map(|r| r.bars.iter().flatten().map(|b| b.max))
            .fold(0.0, f64::max)
            .max(1.0)
            // Room right of the longest bar for its value.
            * 1.18;
        let label_area = self
            .rows
            .iter()
            .map(|r| label_width(&r.case))
            .max()
            .unwrap_or(60);
        let mut chart = ChartBuilder::on(root)
            .caption(self.title(), caption_font())
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(label_area)
            .build_cartesian_2d(0.0..x_max, (rows + legend_rows)..0.0)
            .map_err(text)?;
        // Shade every other command group.
        let mut shade = false;
        let mut previous: Option<&str> = None;
        for (i, row) in self.rows.iter().enumerate() {
            if previous != Some(row.command.as_str()) {
                shade = !shade;
                previous = Some(&row.command);
            }
            if shade {
                let y = i as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, y), (x_max, y + 1.0)],
                        RGBColor(238, 238, 245).filled(),
                    )))
                    .map_err(text)?;
            }
        }
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("requests per second")
            .x_label_formatter(&|v| si(*v))
            .axis_desc_style(label_font())
            .label_style(label_font())
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(text)?;
        let n = self.series.len().max(1) as f64;
        let bar = 0.8 / n;
        for (s, label) in self.series.iter().enumerate() {
            let c = color(s);
            let mut bars = Vec::new();
            let mut whiskers = Vec::new();
            for (i, row) in self.rows.iter().enumerate() {
                let Some(Some(b)) = row.bars.get(s) else {
                    continue;
                };
                let y0 = i as f64 + 0.1 + bar * s as f64;
                let (y1, ym) = (y0 + bar * 0.9, y0 + bar * 0.45);
                bars.push(Rectangle::new([(0.0, y0), (b.median, y1)], c.filled()));
                if b.n > 1 {
                    let cap = bar * 0.25;
                    for points in [
                        vec![(b.min, ym), (b.max, ym)],
                        vec![(b.min, ym - cap), (b.min, ym + cap)],
                        vec![(b.max, ym - cap), (b.max, ym + cap)],
                    ] {
                        whiskers.push(PathElement::new(points, BLACK.stroke_width(1)));
                    }
                }
            }
            chart
                .draw_series(bars)
                .map_err(text)?
                .label(label.clone())
                .legend(box_legend(c));
            chart.draw_series(whiskers).map_err(text)?;
            // Each bar's median as a figure, right of its whisker.
            let style = label_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            for (i, row) in self.rows.iter().enumerate() {
                let Some(Some(b)) = row.bars.get(s) else {
                    continue;
                };
                let ym = i as f64 + 0.1 + bar * s as f64 + bar * 0.45;
                let (px, py) = chart.backend_coord(&(b.max.max(b.median), ym));
                root.draw(&Text::new(si(b.median), (px + 5, py), style.clone()))
                    .map_err(text)?;
            }
        }
        let labels: Vec<String> = self.rows.iter().map(|r| r.case.clone()).collect();
        row_labels(root, &chart, 0.0, &labels)?;
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}
