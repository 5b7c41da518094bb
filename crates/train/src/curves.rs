//! Loss and accuracy curves drawn to PNG with plotters.

use crate::TrainError;
use crate::history::History;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans (Bitstream Vera licence, see `assets/DejaVuSans-LICENSE`), bundled so that text renders
/// without system font libraries.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_bundled_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font compiled into the binary; failure would be a build defect.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws the loss curve (train and valid) and, when present, the accuracy curve side by side into `png`.
/// The epoch means are drawn at each epoch's end; `steps` (epochs as fractions, each batch's training
/// loss), when given, are drawn beneath them, so that a run of one or two epochs shows its course too.
pub fn plot_history(
    history: &History,
    steps: &[(f64, f64)],
    title: &str,
    png: &Path,
) -> Result<(), TrainError> {
    register_bundled_font();
    let err = |e: &dyn std::fmt::Display| TrainError::Plot {
        path: png.to_path_buf(),
        message: e.to_string(),
    };
    let metrics: Vec<&str> = ["loss", "accuracy"]
        .into_iter()
        .filter(|m| {
            !history.series("train", m).is_empty() || !history.series("valid", m).is_empty()
        })
        .collect();
    if metrics.is_empty() {
        return Err(err(&"no metrics logged"));
    }
    let root = BitMapBackend::new(png, (560 * metrics.len() as u32, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((1, metrics.len()));
    for (panel, metric) in panels.iter().zip(&metrics) {
        let train = history.series("train", metric);
        let valid = history.series("valid", metric);
        let batches: &[(f64, f64)] = if *metric == "loss" { steps } else { &[] };
        let all: Vec<(f64, f64)> = train
            .iter()
            .chain(&valid)
            .map(|&(e, v)| (e as f64, v))
            .chain(batches.iter().copied())
            .filter(|p| p.1.is_finite())
            .collect();
        let max_epoch = all.iter().map(|p| p.0).fold(1.0, f64::max);
        let min_epoch = if batches.is_empty() { 1.0 } else { 0.0 };
        let max_epoch = if max_epoch <= min_epoch + 1.0 && batches.is_empty() {
            2.0
        } else {
            max_epoch
        };
        let lo = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.05).max(1e-6);
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{title}: {metric}"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(min_epoch..max_epoch, (lo - pad)..(hi + pad))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(if *metric == "accuracy" {
                "accuracy (%)"
            } else {
                *metric
            })
            .draw()
            .map_err(|e| err(&e))?;
        if !batches.is_empty() {
            let light = BLUE.mix(0.3);
            chart
                .draw_series(LineSeries::new(
                    batches.iter().copied().filter(|p| p.1.is_finite()),
                    light.stroke_width(1),
                ))
                .map_err(|e| err(&e))?
                .label("train (per batch)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], light));
        }
        for (points, name, colour) in [(&train, "train", BLUE), (&valid, "valid", RED)] {
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|&(e, v)| (e as f64, v)),
                    colour.stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
            // A run of one epoch has one point per series: a marker shows it.
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(e, v)| Circle::new((e as f64, v), 3, colour.filled())),
                )
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// One point of a scatter plot: x, y and the point's own label.
pub type LabelledPoint = (f64, f64, String);

/// The points of `points` that no other point beats on both axes (smaller x and larger y), by x: the
/// Pareto frontier of "small and accurate".
pub fn pareto_frontier(points: &[LabelledPoint]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = points
        .iter()
        .map(|(x, y, _)| (*x, *y))
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut frontier: Vec<(f64, f64)> = Vec::new();
    for p in sorted {
        if frontier.last().is_none_or(|last| p.1 > last.1) {
            frontier.push(p);
        }
    }
    frontier
}

/// A scatter plot of named point series (one colour each, every point labelled, each series' Pareto
/// frontier drawn as a dashed line) into `png`, the x axis logarithmic: used for accuracy against size.
pub fn plot_scatter(
    series: &[(String, Vec<LabelledPoint>)],
    title: &str,
    (x_desc, y_desc): (&str, &str),
    png: &Path,
) -> Result<(), TrainError> {
    register_bundled_font();
    let err = |e: &dyn std::fmt::Display| TrainError::Plot {
        path: png.to_path_buf(),
        message: e.to_string(),
    };
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, y, _)| (*x, *y)))
        .filter(|p| p.0 > 0.0 && p.0.is_finite() && p.1.is_finite())
        .collect();
    if points.is_empty() {
        return Err(err(&"no points to plot"));
    }
    let (x_lo, x_hi) = points.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let (y_lo, y_hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let y_pad = ((y_hi - y_lo) * 0.08).max(0.1);
    let root = BitMapBackend::new(png, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(
            ((x_lo / 1.5)..(x_hi * 1.5)).log_scale(),
            (y_lo - y_pad)..(y_hi + y_pad),
        )
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(&e))?;
    let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let frontier = pareto_frontier(pts);
        chart
            .draw_series(DashedLineSeries::new(
                frontier,
                6,
                4,
                colour.mix(0.6).stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(
                pts.iter()
                    .map(|(x, y, _)| Circle::new((*x, *y), 5, colour.filled())),
            )
            .map_err(|e| err(&e))?
            .label(format!("{name} (dashed: Pareto frontier)"))
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
        chart
            .draw_series(pts.iter().map(|(x, y, label)| {
                Text::new(
                    label.clone(),
                    (*x, *y),
                    ("sans-serif", 11).into_font().color(&colour.mix(0.9)),
                )
            }))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerMiddle)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// A line chart of named series (one colour each, a marker at every point) over fixed axis ranges into
/// `png`; with `diagonal`, the line y = x is drawn dashed beneath them (a reliability diagram's "perfectly
/// calibrated").
pub fn plot_lines(
    series: &[(String, Vec<(f64, f64)>)],
    title: &str,
    (x_desc, y_desc): (&str, &str),
    (x_range, y_range): (std::ops::Range<f64>, std::ops::Range<f64>),
    diagonal: bool,
    png: &Path,
) -> Result<(), TrainError> {
    register_bundled_font();
    let err = |e: &dyn std::fmt::Display| TrainError::Plot {
        path: png.to_path_buf(),
        message: e.to_string(),
    };
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Err(err(&"no points to plot"));
    }
    let root = BitMapBackend::new(png, (720, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x_range.clone(), y_range)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(&e))?;
    if diagonal {
        chart
            .draw_series(DashedLineSeries::new(
                [(x_range.start, x_range.start), (x_range.end, x_range.end)],
                6,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
    }
    let colours = [
        BLUE,
        RED,
        GREEN,
        MAGENTA,
        CYAN,
        RGBColor(255, 140, 0),
        BLACK,
    ];
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let points: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_keeps_the_points_nothing_beats_on_both_axes() {
        let p = |x: f64, y: f64| (x, y, String::new());
        let points = [
            p(4.0, 0.95),
            p(1.0, 0.90),
            p(2.0, 0.97),
            p(3.0, 0.96),
            p(2.0, 0.80),
            p(5.0, 0.99),
        ];
        assert_eq!(
            pareto_frontier(&points),
            [(1.0, 0.90), (2.0, 0.97), (5.0, 0.99)]
        );
    }
}
