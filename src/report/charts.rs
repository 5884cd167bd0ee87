//! The report's charts, drawn with plotters into SVG strings.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// Chart size in pixels.
const W: u32 = 420;
const H: u32 = 260;

/// Palette of the series (colour-blind safe, Okabe–Ito).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Drawn = Result<(), Box<dyn std::error::Error>>;

/// Draw one chart into an SVG string; a drawing error yields an empty string (the report then
/// lacks that chart rather than failing).
fn svg(draw: impl FnOnce(&Area) -> Drawn) -> String {
    let mut out = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        root.fill(&WHITE).is_ok() && draw(&root).is_ok() && root.present().is_ok()
    };
    if drawn { out } else { String::new() }
}

/// The chart's frame: caption, margins and f64 axes over `x` × `y`.
fn frame<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    Ok(ChartBuilder::on(root)
        .caption(title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(x, y)?)
}

/// The legend, when there is more than one series to tell apart.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, series: usize) -> Drawn {
    if series > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 11))
            .draw()?;
    }
    Ok(())
}

/// One line of a line chart.
pub(crate) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn bounds(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    let pad = |a: f64, b: f64| if a == b { (a - 0.5, b + 0.5) } else { (a, b) };
    (pad(x0, x1), pad(y0.min(0.0), y1 * 1.05))
}

/// A line chart with markers.
pub fn lines(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let ((x0, x1), (y0, y1)) = bounds(series);
    svg(|root| {
        let mut chart = frame(root, title, x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 11))
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2))
                });
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        }
        legend(&mut chart, series.len())
    })
}

/// Grouped bars: one group per label, one bar per series value.
pub fn bars(
    title: &str,
    y_label: &str,
    labels: &[String],
    series: &[(String, Vec<f64>)],
) -> String {
    let groups = labels.len().max(1);
    let per = series.len().max(1);
    let y1 = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    svg(|root| {
        let mut chart = frame(root, title, -0.5..groups as f64 - 0.5, 0.0..y1)?;
        // Groups sit on the integers, so the axis's integer ticks carry their labels.
        let names = labels.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.min(24))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_label)
            .label_style(("sans-serif", 11))
            .draw()?;
        let width = 0.8 / per as f64;
        for (j, (name, values)) in series.iter().enumerate() {
            let c = COLOURS[j % COLOURS.len()];
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| {
                    let x = i as f64 - 0.4 + j as f64 * width;
                    Rectangle::new([(x, 0.0), (x + width * 0.95, v)], c.filled())
                }))?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 10, y + 4)], c.filled()));
        }
        legend(&mut chart, series.len())
    })
}
