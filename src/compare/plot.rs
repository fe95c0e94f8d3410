//! `comparison.svg`: a forest plot. One row per task (its primary metric, the one the suite
//! average uses), baseline and candidate as points (×100) with ±1.96·stderr error bars.
use super::Comparison;
use plotters::prelude::*;
use std::path::Path;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("comparison chart: {e}")
}

pub fn write_svg(c: &Comparison, path: &Path) -> anyhow::Result<()> {
    let rows: Vec<_> = c.metrics.iter().filter(|m| m.primary).collect();
    let n = rows.len().max(1);
    let labels: Vec<String> = rows
        .iter()
        .map(|m| {
            format!(
                "{} ({}){}",
                m.task,
                m.metric,
                if m.regression { " REGRESSION" } else { "" }
            )
        })
        .collect();
    let label_px = labels.iter().map(|l| l.chars().count()).max().unwrap_or(10) as u32 * 7 + 10;
    let height = 110 + 36 * n as u32;
    let root = SVGBackend::new(path, (label_px + 560, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let bar = |v: f64, se: Option<f64>| {
        let h = 1.96 * se.unwrap_or(0.0);
        ((v - h) * 100.0, v * 100.0, (v + h) * 100.0)
    };
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for m in &rows {
        for (l, _, h) in [
            bar(m.baseline, m.baseline_stderr),
            bar(m.candidate, m.candidate_stderr),
        ] {
            lo = lo.min(l);
            hi = hi.max(h);
        }
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 100.0);
    }
    let pad = ((hi - lo) * 0.05).max(1.0);
    // Row 0 at the top.
    let y_of = |i: usize| (n - 1 - i) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("baseline vs candidate, ±1.96·stderr", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(label_px)
        .build_cartesian_2d(
            (lo - pad).max(0.0)..(hi + pad).min(100.0),
            -0.5f64..(n as f64 - 0.5),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .y_labels(n)
        .y_label_formatter(&|y| {
            let r = y.round();
            if (y - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < n {
                labels.get(n - 1 - r as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("points (×100)")
        .disable_y_mesh()
        .draw()
        .map_err(err)?;
    for (side, color, off, name) in [(0, BLUE, 0.15, "baseline"), (1, RED, -0.15, "candidate")] {
        let pts: Vec<(f64, f64, f64, f64)> = rows
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let (l, v, h) = if side == 0 {
                    bar(m.baseline, m.baseline_stderr)
                } else {
                    bar(m.candidate, m.candidate_stderr)
                };
                (y_of(i) + off, l, v, h)
            })
            .collect();
        chart
            .draw_series(
                pts.iter()
                    .map(|&(y, l, v, h)| ErrorBar::new_horizontal(y, l, v, h, color.filled(), 6)),
            )
            .map_err(err)?;
        chart
            .draw_series(
                pts.iter()
                    .map(|&(y, _, v, _)| Circle::new((v, y), 4, color.filled())),
            )
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}
