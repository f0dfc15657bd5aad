//! The lesson's figures, as SVG, drawn from the arrival times the benchmark measured: the
//! tutorial's timeline of each model serving the same clients, and the time to the last byte
//! against the number of clients.

use std::path::Path;

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::clients::Timeline;
use crate::report::thousands;

/// One colour per model, in the order the lesson runs them.
const COLOURS: [RGBColor; 3] =
    [RGBColor(200, 60, 40), RGBColor(40, 100, 200), RGBColor(30, 150, 70)];

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// The tutorial's picture: a panel per model, a line per client from its connect to its last
/// byte, a mark where each `chunk`-byte chunk arrived, all on the same time axis.
pub fn timelines(
    path: &Path,
    caption: &[String],
    panels: &[(&str, &[Timeline])],
    chunk: usize,
) -> Drawn {
    let foot_height = 18 * caption.len() as u32 + 8;
    let height = foot_height + 200 * panels.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plots, foot) = root.split_vertically(height - foot_height);
    let end = panels
        .iter()
        .flat_map(|(_, clients)| clients.iter())
        .filter_map(|client| client.reads.last())
        .map(|(at, _)| at.as_secs_f64())
        .fold(0.0, f64::max);
    let end = (end * 1.05).max(0.1);
    for (i, (area, (name, clients))) in
        plots.split_evenly((panels.len(), 1)).iter().zip(panels).enumerate()
    {
        let colour = COLOURS[i % COLOURS.len()];
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end, 0.5..clients.len() as f64 + 0.5)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(clients.len())
            .y_label_formatter(&|y| format!("{y:.0}"))
            .x_desc("seconds since the first connect")
            .y_desc("client")
            .draw()?;
        for (k, client) in clients.iter().enumerate() {
            let y = k as f64 + 1.0;
            let last = client.reads.last().map_or(0.0, |(at, _)| at.as_secs_f64());
            chart.draw_series(LineSeries::new(
                [(client.connect.as_secs_f64(), y), (last, y)],
                colour.mix(0.35).stroke_width(2),
            ))?;
            // A read may bring several chunks at once: each is marked where it arrived.
            let mut marks = Vec::new();
            let mut before = 0;
            for &(at, bytes) in &client.reads {
                for _ in before / chunk..bytes / chunk {
                    marks.push(at.as_secs_f64());
                }
                before = bytes;
            }
            chart.draw_series(marks.into_iter().map(|x| {
                PathElement::new([(x, y - 0.35), (x, y + 0.35)], colour.stroke_width(2))
            }))?;
        }
    }
    for (k, line) in caption.iter().enumerate() {
        foot.draw(&Text::new(line.as_str(), (10, 6 + 18 * k as i32), ("sans-serif", 13)))?;
    }
    root.present()?;
    Ok(())
}

/// Time to the last byte against the number of clients, a line per model, both axes
/// logarithmic, with the ideal (one poem's time) for scale. Each model has its own marker and
/// line (solid, dashed, dotted), and its points are shifted sideways a little (`SHIFT`), so
/// that where two models measured the same time neither hides the other.
pub fn scaling(
    path: &Path,
    caption: &[String],
    ideal: f64,
    series: &[(&str, Vec<(usize, f64)>)],
) -> Drawn {
    let foot_height = 18 * caption.len() as u32 + 8;
    let root = SVGBackend::new(path, (900, 560 + foot_height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, foot) = root.split_vertically(560);
    let most =
        series.iter().flat_map(|(_, points)| points.iter().map(|p| p.0)).max().unwrap_or(1) as f64;
    let longest =
        series.iter().flat_map(|(_, points)| points.iter().map(|p| p.1)).fold(ideal, f64::max);
    let (low, high) = (ideal * 0.7, longest * 1.4);
    // Ticks at 1, 2 and 4 of every power of ten, so that 0.4 s and 40 s can be read.
    let mut ticks: Vec<f64> = (-2..4)
        .flat_map(|e| [1.0, 2.0, 4.0].map(|m| m * 10f64.powi(e)))
        .chain([ideal])
        .filter(|t| (low..=high).contains(t))
        .collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup_by(|a, b| (*a / *b - 1.0).abs() < 1e-6);
    let counts: Vec<f64> = (0..6).map(|e| 10f64.powi(e)).filter(|&n| n <= most * 1.01).collect();
    let mut chart = ChartBuilder::on(&plot)
        .caption("Time until the last client has the whole poem", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0.6..most * 1.6).log_scale().with_key_points(counts),
            (low..high).log_scale().with_key_points(ticks),
        )?;
    chart
        .configure_mesh()
        .x_desc("clients connecting at once")
        .y_desc("seconds to the last byte")
        .x_label_formatter(&|x| thousands(x.round() as usize))
        .y_label_formatter(&|y| seconds(*y))
        .label_style(("sans-serif", 14))
        .draw()?;
    let dashed = |colour: RGBColor| ShapeStyle::from(colour).stroke_width(2);
    chart
        .draw_series(DashedLineSeries::new(
            [(0.6, ideal), (most * 1.6, ideal)],
            8,
            6,
            ShapeStyle::from(BLACK.mix(0.6)).stroke_width(2),
        ))?
        .label(format!("ideal: one poem, {} s", seconds(ideal)))
        .legend(|(x, y)| {
            DashedPathElement::new([(x, y), (x + 24, y)], 5, 3, BLACK.mix(0.6).stroke_width(2))
        });
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let shift = SHIFT[i % SHIFT.len()];
        let points: Vec<(f64, f64)> = points.iter().map(|&(n, t)| (n as f64 * shift, t)).collect();
        let style = dashed(colour);
        // Solid, dashed, dotted, with a circle, a triangle, a cross: a line stays told apart
        // where another runs over it.
        let drawn = match i % 3 {
            0 => chart.draw_series(LineSeries::new(points.clone(), style))?,
            1 => chart.draw_series(DashedLineSeries::new(points.clone(), 10, 5, style))?,
            _ => chart.draw_series(DashedLineSeries::new(points.clone(), 2, 5, style))?,
        };
        let drawn = drawn.label(*name);
        match i % 3 {
            0 => {
                drawn.legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new([(0, 0), (24, 0)], style)
                        + Circle::new((12, 0), 5, colour.filled())
                });
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, colour.filled())))?;
            }
            1 => {
                drawn.legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + DashedPathElement::new([(0, 0), (24, 0)], 6, 3, style)
                        + TriangleMarker::new((12, 0), 7, colour.filled())
                });
                chart.draw_series(
                    points.iter().map(|&p| TriangleMarker::new(p, 7, colour.filled())),
                )?;
            }
            _ => {
                drawn.legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + DashedPathElement::new([(0, 0), (24, 0)], 2, 4, style)
                        + Cross::new((12, 0), 6, colour.stroke_width(3))
                });
                chart.draw_series(
                    points.iter().map(|&p| Cross::new(p, 6, colour.stroke_width(3))),
                )?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    for (k, line) in caption.iter().enumerate() {
        foot.draw(&Text::new(line.as_str(), (10, 6 + 18 * k as i32), ("sans-serif", 13)))?;
    }
    root.present()?;
    Ok(())
}

/// How far each model's points are moved along the client axis (a factor, the axis being
/// logarithmic), so that equal times sit side by side rather than on top of each other.
const SHIFT: [f64; 3] = [0.87, 1.0, 1.15];

/// Seconds with as many decimals as they need: 0.4, 4, 40.
fn seconds(s: f64) -> String {
    let text = format!("{s:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
