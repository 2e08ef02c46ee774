//! Charts for reports, drawn with plotters into an SVG string and a PNG buffer.
//!
//! Every chart is a plain data struct implementing [`Draw`]; [`render`] draws it twice (SVG
//! and bitmap backends) so the two files always agree. Each has a title, axis descriptions
//! with units, and a legend where there is more than one series. Category labels (case
//! names) are drawn by hand, right-aligned beside their bars, so none overlap however
//! many there are.
//!
//! Text needs a TrueType font: call [`use_font`] once with the bytes of one (xtask loads
//! DejaVu Sans from the system).

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const FONT: &str = "sans-serif";
const WIDTH: u32 = 1000;

/// Okabe–Ito: distinguishable with the common colour-vision deficiencies.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Registers the font every chart's text uses. Call once per process before rendering.
pub fn use_font(bytes: &'static [u8]) -> Result<(), String> {
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| "not a TrueType font plotters can read".to_string())
}

/// A rendered chart: the same drawing as SVG and PNG.
#[derive(Clone, Debug)]
pub struct Chart {
    /// File stem, e.g. `throughput` or `latency-GET`.
    pub name: String,
    pub title: String,
    pub svg: String,
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// A chart's drawing, for any backend.
pub trait Draw {
    fn title(&self) -> String;
    fn height(&self) -> u32;
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Draws `chart` as SVG and as PNG.
pub fn render(name: &str, chart: &impl Draw) -> Result<Chart, String> {
    let (width, height) = (WIDTH, chart.height());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(text)?;
        chart.draw(&root)?;
        root.present().map_err(text)?;
    }
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(text)?;
        chart.draw(&root)?;
        root.present().map_err(text)?;
    }
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(text)?;
        writer.write_image_data(&pixels).map_err(text)?;
    }
    Ok(Chart {
        name: name.to_string(),
        title: chart.title(),
        svg,
        png,
        width,
        height,
    })
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn caption_font() -> FontDesc<'static> {
    (FONT, 20).into_font()
}

fn label_font() -> FontDesc<'static> {
    (FONT, 13).into_font()
}

/// `1234567` → `1.23M`, `45600` → `45.6k`.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    let mut n = format!("{x:.digits$}");
    if n.contains('.') {
        n = n.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{n}{unit}")
}

/// Bytes on an axis: `512`, `1KiB`, `64KiB`, `1MiB`.
pub fn bytes(v: f64) -> String {
    if v >= 1024.0 * 1024.0 {
        format!("{}MiB", trim_float(v / (1024.0 * 1024.0)))
    } else if v >= 1024.0 {
        format!("{}KiB", trim_float(v / 1024.0))
    } else {
        format!("{v:.0}")
    }
}

/// Latency in µs as people read it: `850µs`, `1.2ms`, `2.5s`.
pub fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.1}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.1}ms", us / 1e3)
    } else {
        format!("{us:.0}µs")
    }
}

/// Pixel width of a label, estimated (plotters measures only while drawing).
fn label_width(s: &str) -> u32 {
    (s.chars().count() as u32 * 7 + 16).clamp(60, 420)
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(label_font())
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(text)
}

fn line_legend(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
}

fn box_legend(c: RGBColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled())
}

/// Draws `labels[i]` right-aligned at the left edge of the plot, centred on row `i`.
fn row_labels<'a, DB: DrawingBackend + 'a>(
    root: &DrawingArea<DB, Shift>,
    chart: &ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    x_left: f64,
    labels: &[String],
) -> Result<(), String> {
    let style = label_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, label) in labels.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(x_left, i as f64 + 0.5));
        root.draw(&Text::new(label.clone(), (px - 8, py), style.clone()))
            .map_err(text)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Throughput per case

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
    /// One label per run, in bar order.
    pub series: Vec<String>,
    pub rows: Vec<ThroughputRow>,
}

impl Draw for Throughput {
    fn title(&self) -> String {
        "Throughput per case (bar: median of repetitions; whiskers: min to max)".into()
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
            * 1.08;
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
        }
        let labels: Vec<String> = self.rows.iter().map(|r| r.case.clone()).collect();
        row_labels(root, &chart, 0.0, &labels)?;
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

// ---------------------------------------------------------------------------------------
// Latency percentile curves

/// A latency distribution as (percentile, µs) points, percentiles in 0..100.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
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
        // The y axis is logarithmic by hand (log10 of µs), so the mesh stays f64.
        let (ylo, yhi) = ((lo * 0.8).log10(), (hi * 1.25).log10());
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
            .x_desc("percentile (each step right is one more nine)")
            .y_desc("latency (log scale)")
            .axis_desc_style(label_font())
            .label_style(label_font())
            .draw()
            .map_err(text)?;
        let style = label_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        for tick in decade_ticks(ylo, yhi) {
            let y = tick.log10();
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, y), (x_max + 0.2, y)],
                    BLACK.mix(0.25).stroke_width(1),
                )))
                .map_err(text)?;
            let (px, py) = chart.backend_coord(&(0.0, y));
            root.draw(&Text::new(micros(tick), (px - 6, py), style.clone()))
                .map_err(text)?;
        }
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
                .label(curve.label.clone())
                .legend(line_legend(c));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// 1, 2 and 5 times each power of ten whose log10 lies in `lo..=hi`.
fn decade_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    for e in (lo.floor() as i32)..=(hi.ceil() as i32) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if (lo..=hi).contains(&v.log10()) {
                ticks.push(v);
            }
        }
    }
    ticks
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

// ---------------------------------------------------------------------------------------
// Per-second time series

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

// ---------------------------------------------------------------------------------------
// Memory efficiency

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

/// A point of a line in [`two_panels`]: one x, a y per panel.
struct LinePoint<'a> {
    line: &'a str,
    x: f64,
    y: [f64; 2],
}

struct XAxis {
    desc: &'static str,
    format: fn(f64) -> String,
    /// Start at 0 (a linear size axis), else half a unit around the data (a log axis).
    from_zero: bool,
}

/// A panel's y axis: its description and how its numbers print.
type Panel = (&'static str, fn(f64) -> String);

/// Two stacked panels sharing x, one line per distinct `line` label, legend in the top.
fn two_panels<DB: DrawingBackend>(
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
fn line_groups<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in labels {
        if !out.iter().any(|o| o == l) {
            out.push(l.to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Full sync

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

// ---------------------------------------------------------------------------------------
// Compare

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
        Unstable => RGBColor(120, 120, 120),
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
                "candidate against baseline, % (dot: median ratio; bar: 95% CI; band: ±threshold)",
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
            Verdict::Unstable,
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

/// A compact description of a chart for the structure snapshot: its name and title.
pub fn describe(charts: &[Chart]) -> String {
    let mut out = String::new();
    for c in charts {
        let _ = writeln!(out, "{} ({}x{}): {}", c.name, c.width, c.height, c.title);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn font() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
            let bytes = std::fs::read(path).unwrap_or_else(|e| {
                panic!("{path}: {e}; install fonts-dejavu-core (.ci/run does)")
            });
            use_font(Box::leak(bytes.into_boxed_slice())).unwrap();
        });
    }

    fn png_size(png: &[u8]) -> (u32, u32) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        (info.width, info.height)
    }

    #[test]
    fn numbers_read_like_people_write_them() {
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(45_600.0), "45.6k");
        assert_eq!(si(999.0), "999");
        assert_eq!(si(0.0), "0");
        assert_eq!(si(1_200_000.0), "1.2M");
        assert_eq!(bytes(1024.0), "1KiB");
        assert_eq!(bytes(16.0), "16");
        assert_eq!(micros(850.0), "850µs");
        assert_eq!(micros(1250.0), "1.2ms");
        assert_eq!(trim_float(99.9), "99.9");
        assert_eq!(trim_float(50.0), "50");
    }

    #[test]
    fn latency_ticks_are_one_two_five() {
        assert_eq!(decade_ticks(1.9, 3.1), [100.0, 200.0, 500.0, 1000.0]);
    }

    #[test]
    fn the_nines_axis_puts_each_nine_one_step_right() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(0.0), 0.0);
    }

    #[test]
    fn percentile_points_stop_where_the_count_runs_out() {
        let mut h = crate::loadgen::stats::new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let points = percentile_points(&h);
        let last = points.last().unwrap();
        // 1,000 values support three nines (p99.9), not four.
        assert!((nines(last.0) - 3.0).abs() < 1e-6, "{last:?}");
        assert!(points.windows(2).all(|w| w[0].1 <= w[1].1), "monotone");
        assert!((last.1 - 999.0).abs() <= 1.0, "{last:?}");
    }

    #[test]
    fn a_throughput_chart_has_its_title_labels_and_legend() {
        font();
        let spread = |m: f64| {
            Some(Spread {
                median: m,
                min: m * 0.9,
                max: m * 1.1,
                n: 3,
            })
        };
        let chart = Throughput {
            series: vec!["8.1.1".into(), "9.1.2".into()],
            rows: vec![
                ThroughputRow {
                    case: "GET/32B/P1/c50/io1".into(),
                    command: "GET".into(),
                    bars: vec![spread(150_000.0), spread(140_000.0)],
                },
                ThroughputRow {
                    case: "SET/32B/P1/c50/io1".into(),
                    command: "SET".into(),
                    bars: vec![spread(130_000.0), None],
                },
            ],
        };
        let c = render("throughput", &chart).unwrap();
        for needle in [
            "Throughput per case",
            "requests per second",
            "GET/32B/P1/c50/io1",
            "SET/32B/P1/c50/io1",
            "8.1.1",
            "9.1.2",
        ] {
            assert!(c.svg.contains(needle), "{needle} missing");
        }
        assert_eq!(png_size(&c.png), (c.width, c.height));
    }

    #[test]
    fn every_chart_kind_renders() {
        font();
        let mut h = crate::loadgen::stats::new_histogram();
        for v in 1..=20_000u64 {
            h.record(v % 700 + 50).unwrap();
        }
        let charts = [
            render(
                "latency",
                &Percentiles {
                    title: "GET latency".into(),
                    curves: vec![Curve {
                        label: "GET/32B/P1".into(),
                        points: percentile_points(&h),
                    }],
                },
            ),
            render(
                "series",
                &TimeSeries {
                    title: "GET over time".into(),
                    lines: vec![SeriesLine {
                        label: "repetition 1".into(),
                        points: (-2..5).map(|s| (s as f64, 1e5 + s as f64, 300.0)).collect(),
                    }],
                },
            ),
            render(
                "memory",
                &Memory {
                    points: [16.0, 64.0, 256.0]
                        .iter()
                        .map(|&v| MemPoint {
                            line: "string".into(),
                            value_size: v,
                            bytes_per_item: v + 50.0,
                            overhead_bytes_per_item: 50.0 - v / 10.0,
                        })
                        .collect(),
                },
            ),
            render(
                "sync",
                &Sync {
                    points: vec![SyncPoint {
                        line: "disk".into(),
                        data_bytes: 16.0 * 1024.0 * 1024.0,
                        sync_secs: 0.4,
                        throughput_bytes_per_sec: 40e6,
                    }],
                },
            ),
            render(
                "compare",
                &Compare {
                    title: "8.1.1 against 9.1.2".into(),
                    threshold_pct: 2.0,
                    rows: vec![CompareRow {
                        label: "GET/32B/P16 · throughput".into(),
                        values: "1.02M → 0.98M ops/s".into(),
                        change_pct: -3.9,
                        ci_pct: Some((-5.0, -2.5)),
                        verdict: crate::compare::Verdict::Regression,
                    }],
                },
            ),
        ];
        let titles = [
            ("latency", "percentile (each step right is one more nine)"),
            ("series", "shaded: warmup"),
            ("memory", "bytes per item"),
            ("sync", "full-sync time"),
            ("compare", "regression"),
        ];
        for (chart, (name, needle)) in charts.into_iter().zip(titles) {
            let c = chart.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(c.svg.contains(needle), "{name}: {needle} missing");
            assert_eq!(png_size(&c.png), (c.width, c.height), "{name}");
        }
    }
}
