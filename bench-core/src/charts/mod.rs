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

mod compare;
mod knee;
mod memory;
mod panels;
mod percentiles;
mod series;
mod sync;
mod throughput;

pub use compare::*;
pub use knee::*;
pub use memory::*;
use panels::{LinePoint, XAxis, two_panels};
pub use percentiles::*;
pub use series::*;
pub use sync::*;
pub use throughput::*;

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

/// The font's bytes, for the PNG rasterizer.
static FONT_BYTES: std::sync::OnceLock<&'static [u8]> = std::sync::OnceLock::new();

/// Registers the font every chart's text uses. Call once per process before rendering.
pub fn use_font(bytes: &'static [u8]) -> Result<(), String> {
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| "not a TrueType font plotters can read".to_string())?;
    let _ = FONT_BYTES.set(bytes);
    Ok(())
}

/// The SVG rasterized (resvg), its text laid out with the font's own advances and kerning
/// (plotters' bitmap text drops each glyph's side bearing: "SE T", "P1 6").
fn rasterize(svg: &str, width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut options = resvg::usvg::Options::default();
    if let Some(bytes) = FONT_BYTES.get() {
        let db = options.fontdb_mut();
        db.load_font_data(bytes.to_vec());
        let family = db
            .faces()
            .next()
            .and_then(|f| f.families.first())
            .map(|f| f.0.clone());
        if let Some(family) = family {
            db.set_sans_serif_family(family);
        }
    }
    let tree = resvg::usvg::Tree::from_str(svg, &options).map_err(text)?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(width, height).ok_or("a chart of no pixels")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(text)
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
    let png = rasterize(&svg, width, height)?;
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

/// A log latency axis drawn by hand (the chart's y is log10 of µs): a grid line and a
/// label (`micros`) at 1, 2 and 5 of each decade in `ylo..=yhi`, across `x0..x1`. The
/// labels are drawn on `root` at the backend's pixels, so they land right on any panel.
fn latency_ticks<'a, DB: DrawingBackend + 'a>(
    root: &DrawingArea<DB, Shift>,
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    (x0, x1): (f64, f64),
    (ylo, yhi): (f64, f64),
) -> Result<(), String> {
    let style = label_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for tick in decade_ticks(ylo, yhi) {
        let y = tick.log10();
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x0, y), (x1, y)],
                BLACK.mix(0.2).stroke_width(1),
            )))
            .map_err(text)?;
        let (px, py) = chart.backend_coord(&(x0, y));
        root.draw(&Text::new(micros(tick), (px - 6, py), style.clone()))
            .map_err(text)?;
    }
    Ok(())
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
            group: None,
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
                        count: h.len(),
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
            ("latency", "a dot marks a curve"),
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
