//! Rendering a [`Comparison`]: terminal table (comfy-table) and `comparison.md`.
use super::{Comparison, MetricComparison};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use std::fmt::Write;

const HEADER: [&str; 10] = [
    "Task",
    "Metric",
    "Baseline ± se",
    "Candidate ± se",
    "Δ pts",
    "Test",
    "p",
    "Changed",
    "mean |Δll|",
    "Verdict",
];

fn pct(v: f64, se: Option<f64>) -> String {
    match se {
        Some(s) => format!("{:.2} ± {:.2}", v * 100.0, s * 100.0),
        None => format!("{:.2}", v * 100.0),
    }
}

fn p_str(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn verdict(m: &MetricComparison) -> &'static str {
    if m.regression {
        "REGRESSION"
    } else if m.test.is_none() {
        "untested"
    } else if m.significant && m.delta_points < 0.0 {
        "worse"
    } else if m.significant {
        "better"
    } else {
        "ok"
    }
}

fn rows(c: &Comparison) -> Vec<[String; 10]> {
    c.metrics
        .iter()
        .map(|m| {
            let agr = c.agreement.iter().find(|a| a.task == m.task);
            [
                m.task.clone(),
                m.metric.clone(),
                pct(m.baseline, m.baseline_stderr),
                pct(m.candidate, m.candidate_stderr),
                format!("{:+.2}", m.delta_points),
                m.test
                    .as_ref()
                    .map(|t| t.method.label().to_string())
                    .unwrap_or_else(|| "-".into()),
                m.test
                    .as_ref()
                    .map(|t| p_str(t.p_value))
                    .unwrap_or_else(|| "-".into()),
                agr.map(|a| format!("{:.1}%", a.changed_choice * 100.0))
                    .unwrap_or_else(|| "-".into()),
                agr.map(|a| format!("{:.4}", a.mean_abs_delta_loglik))
                    .unwrap_or_else(|| "-".into()),
                verdict(m).to_string(),
            ]
        })
        .collect()
}

fn suite_row(s: &super::SuiteComparison) -> [String; 6] {
    [
        s.suite.clone(),
        format!("{:.2}", s.baseline),
        format!("{:.2}", s.candidate),
        format!("{:+.2}", s.delta_points),
        s.p_value.map(p_str).unwrap_or_else(|| "-".into()),
        if s.regression {
            "REGRESSION".into()
        } else {
            format!("ok ({} tasks)", s.tasks.len())
        },
    ]
}

/// The terminal table: one row per task metric, then the suite averages.
pub fn render_table(c: &Comparison) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(HEADER);
    for r in rows(c) {
        t.add_row(r);
    }
    let mut out = t.to_string();
    if !c.suites.is_empty() {
        let mut s = Table::new();
        s.load_preset(UTF8_FULL_CONDENSED).set_header([
            "Suite",
            "Baseline",
            "Candidate",
            "Δ pts",
            "p",
            "Verdict",
        ]);
        for r in &c.suites {
            s.add_row(suite_row(r));
        }
        out.push('\n');
        out.push_str(&s.to_string());
    }
    for n in &c.notes {
        out.push_str(&format!("\nnote: {n}"));
    }
    out
}

/// `comparison.md`.
pub fn render_markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let name = |m: &Option<String>, d: &std::path::Path| {
        m.clone().unwrap_or_else(|| d.display().to_string())
    };
    let _ = writeln!(s, "# Comparison\n");
    let _ = writeln!(
        s,
        "- Baseline: `{}` ({})",
        name(&c.baseline_model, &c.baseline_dir),
        c.baseline_results.display()
    );
    let _ = writeln!(
        s,
        "- Candidate: `{}` ({})",
        name(&c.candidate_model, &c.candidate_dir),
        c.candidate_results.display()
    );
    let o = &c.options;
    let gate = |g: Option<f64>| {
        g.map(|d| format!("{d} points"))
            .unwrap_or_else(|| "off".into())
    };
    let _ = writeln!(
        s,
        "- Gate: max drop {} per task, {} per suite average, alpha {}; bootstrap {} resamples, seed {}",
        gate(o.max_drop),
        gate(o.max_avg_drop),
        o.alpha,
        o.resamples,
        o.seed
    );
    let _ = writeln!(s, "- Regressions: {}\n", c.regressions());
    let _ = writeln!(s, "| {} |", HEADER.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(HEADER.len()));
    for r in rows(c) {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    if !c.suites.is_empty() {
        let _ = writeln!(
            s,
            "\n| Suite | Baseline | Candidate | Δ pts | p | Verdict |\n|---|---|---|---|---|---|"
        );
        for r in &c.suites {
            let _ = writeln!(s, "| {} |", suite_row(r).join(" | "));
        }
    }
    if !c.only_in_baseline.is_empty() {
        let _ = writeln!(
            s,
            "\nOnly in the baseline (not compared): {}",
            c.only_in_baseline.join(", ")
        );
    }
    if !c.only_in_candidate.is_empty() {
        let _ = writeln!(
            s,
            "\nOnly in the candidate (not compared): {}",
            c.only_in_candidate.join(", ")
        );
    }
    if !c.notes.is_empty() {
        let _ = writeln!(s);
        for n in &c.notes {
            let _ = writeln!(s, "- note: {n}");
        }
    }
    let _ = writeln!(
        s,
        "\nTests: McNemar (exact binomial when fewer than 25 discordant pairs, else χ² with continuity correction) \
         for 0/1 metrics; seeded paired bootstrap for continuous metrics; paired z-test for suite averages. \
         A metric regresses iff it drops by more than the threshold and p < alpha."
    );
    s
}
