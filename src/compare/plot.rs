//! `comparison.svg`: per task, the primary metric of baseline and candidate (points ×100) with
//! ±1.96·stderr error bars.
use super::Comparison;
use plotters::prelude::*;
use std::path::Path;

pub fn write_svg(c: &Comparison, path: &Path) -> anyhow::Result<()> {
    let rows: Vec<_> = c.metrics.iter().filter(|m| m.primary).collect();
    let width = (160 + 60 * rows.len().max(1)) as u32;
    let root = SVGBackend::new(path, (width.max(640), 480)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
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
    let pad = ((hi - lo) * 0.1).max(1.0);
    let n = rows.len().max(1);
    let labels: Vec<String> = rows
        .iter()
        .map(|m| format!("{} ({})", m.task, m.metric))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "baseline (blue) vs candidate (red), ±1.96·stderr",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(140)
        .y_label_area_size(50)
        .build_cartesian_2d(
            -0.5f64..(n as f64 - 0.5),
            (lo - pad).max(0.0)..(hi + pad).min(100.0),
        )
        .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_label_style(
            ("sans-serif", 11)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .y_desc("points")
        .disable_x_mesh()
        .draw()
        .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    for (side, color, off) in [(0, BLUE, -0.15), (1, RED, 0.15)] {
        let pts: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let (l, v, h) = if side == 0 {
                    bar(m.baseline, m.baseline_stderr)
                } else {
                    bar(m.candidate, m.candidate_stderr)
                };
                (i as f64 + off, l, v, h)
            })
            .collect();
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, l, v, h)| ErrorBar::new_vertical(x, l, v, h, color.filled(), 8)),
            )
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, _, v, _)| Circle::new((x, v), 4, color.filled())),
            )
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    }
    root.present()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}
