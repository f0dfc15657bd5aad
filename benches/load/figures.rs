//! The lesson's figures, as SVG, drawn from the arrival times the benchmark measured: the
//! tutorial's timeline of each model serving the same clients, and the time to the last byte
//! against the number of clients.

use std::path::Path;

use plotters::prelude::*;

use crate::clients::Timeline;

/// One colour per model, in the order the lesson runs them.
const COLOURS: [RGBColor; 3] =
    [RGBColor(200, 60, 40), RGBColor(40, 100, 200), RGBColor(30, 150, 70)];

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// The tutorial's picture: a panel per model, a line per client from its connect to its last
/// byte, a mark where each `chunk`-byte chunk arrived, all on the same time axis.
pub fn timelines(
    path: &Path,
    caption: &str,
    panels: &[(&str, &[Timeline])],
    chunk: usize,
) -> Drawn {
    let height = 40 + 200 * panels.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plots, foot) = root.split_vertically(height - 40);
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
    foot.draw(&Text::new(caption, (10, 12), ("sans-serif", 13)))?;
    root.present()?;
    Ok(())
}

/// Time to the last byte against the number of clients, a line per model, both axes
/// logarithmic, with the ideal (one poem's time) for scale.
pub fn scaling(
    path: &Path,
    caption: &str,
    ideal: f64,
    series: &[(&str, Vec<(usize, f64)>)],
) -> Drawn {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, foot) = root.split_vertically(520);
    let most =
        series.iter().flat_map(|(_, points)| points.iter().map(|p| p.0)).max().unwrap_or(1) as f64;
    let longest =
        series.iter().flat_map(|(_, points)| points.iter().map(|p| p.1)).fold(ideal, f64::max);
    let mut chart = ChartBuilder::on(&plot)
        .caption("Time until the last client has the whole poem", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0.8..most * 1.25).log_scale(),
            (ideal * 0.8..longest * 1.25).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("clients connecting at once")
        .y_desc("seconds to the last byte")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    chart
        .draw_series(LineSeries::new([(0.8, ideal), (most * 1.25, ideal)], BLACK.mix(0.3)))?
        .label(format!("ideal: one poem, {ideal} s"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.3)));
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = points.iter().map(|&(n, t)| (n as f64, t)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        // Smaller dots for later models, so that where lines overlap every dot still shows.
        let radius = 6 - 2 * (i % 3) as i32;
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, radius, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    foot.draw(&Text::new(caption, (10, 12), ("sans-serif", 13)))?;
    root.present()?;
    Ok(())
}
