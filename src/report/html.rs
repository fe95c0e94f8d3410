//! `report.html`: a self-contained page (inline CSS and SVG, no script, nothing fetched) with the
//! tables, one chart per suite with error bars (run vs card, or baseline vs candidate), and the
//! failure-reason breakdowns of the generative tasks.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use super::card::CardComparison;
use super::TaskResult;
use crate::compare::Comparison;
use crate::error::{Error, Result};
use crate::tasks::Registry;

/// Error bars span ± this many standard errors (a 95 % interval).
pub const ERROR_BAR_Z: f64 = 1.96;

/// Why the samples of one task failed, with counts.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureBreakdown {
    pub task: String,
    pub n: usize,
    pub reasons: Vec<(String, usize)>,
}

/// One series of a chart: a value and stderr per label (`None`: absent).
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub values: Vec<Option<(f64, Option<f64>)>>,
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;font-size:14px}\
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.flag td{background:#fde2e2}\
h2{margin-top:1.6em;border-bottom:1px solid #ddd}.note{color:#555;font-size:14px}svg{display:block;margin:0.5em 0}";

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head>\n<body>\n<h1>{}</h1>\n{body}</body></html>\n",
        esc(title),
        esc(title)
    )
}

fn num(x: f64, prec: usize) -> String {
    if x.is_finite() {
        format!("{x:.prec$}")
    } else {
        "nan".into()
    }
}

/// A horizontal bar chart, one group of bars per label, with ± [`ERROR_BAR_Z`]·se whiskers.
/// Values are fractions (0..1) unless `percent`.
pub fn svg_chart(title: &str, labels: &[String], series: &[Series], percent: bool) -> String {
    let scale = if percent { 100.0 } else { 1.0 };
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .map(|(v, se)| v + ERROR_BAR_Z * se.unwrap_or(0.0))
        .filter(|x| x.is_finite())
        .fold(scale, f64::max);
    // Room for the longest label at ~7 px a character (12 px sans-serif).
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let left = (7.0 * longest as f64 + 12.0).clamp(120.0, 520.0);
    let (width, bar, gap) = (420.0, 10.0, 8.0);
    let group = bar * series.len() as f64 + gap;
    let height = 40.0 + group * labels.len() as f64 + 30.0;
    let x = |v: f64| left + width * (v / max).clamp(0.0, 1.0);
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        left + width + 40.0,
        esc(title)
    );
    let _ = write!(
        o,
        "<text x=\"0\" y=\"16\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    for (k, s) in series.iter().enumerate() {
        let lx = left + 140.0 * k as f64;
        let _ = write!(
            o,
            "<rect x=\"{lx}\" y=\"24\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"33\" font-size=\"12\">{}</text>",
            s.color,
            lx + 14.0,
            esc(&s.name)
        );
    }
    for (i, label) in labels.iter().enumerate() {
        let y0 = 40.0 + group * i as f64;
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y0 + group / 2.0,
            esc(label)
        );
        for (k, s) in series.iter().enumerate() {
            let Some(Some((v, se))) = s.values.get(i) else {
                continue;
            };
            if !v.is_finite() {
                continue;
            }
            let y = y0 + bar * k as f64;
            let _ = write!(
                o,
                "<rect x=\"{left}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\"><title>{}: {}</title></rect>",
                x(*v) - left,
                bar - 1.0,
                s.color,
                esc(&s.name),
                num(*v, 4)
            );
            if let Some(se) = se.filter(|s| s.is_finite() && *s > 0.0) {
                let (a, b) = (x(v - ERROR_BAR_Z * se), x(v + ERROR_BAR_Z * se));
                let yc = y + (bar - 1.0) / 2.0;
                let _ = write!(
                    o,
                    "<path d=\"M{a:.1} {yc}H{b:.1}M{a:.1} {}V{}M{b:.1} {}V{}\" stroke=\"#000\" fill=\"none\"/>",
                    yc - 3.0,
                    yc + 3.0,
                    yc - 3.0,
                    yc + 3.0
                );
            }
        }
    }
    let ya = 40.0 + group * labels.len() as f64;
    let _ = write!(
        o,
        "<line x1=\"{left}\" y1=\"{ya}\" x2=\"{}\" y2=\"{ya}\" stroke=\"#888\"/>",
        left + width
    );
    for t in 0..=4 {
        let v = max * t as f64 / 4.0;
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            x(v),
            ya + 14.0,
            num(v, 2)
        );
    }
    o.push_str("</svg>\n");
    o
}

/// The metric a suite averages for a task (first of the rule's metrics present), and its value.
fn primary<'a>(rule: &[String], r: &'a TaskResult) -> Option<&'a (String, f64, f64)> {
    rule.iter()
        .find_map(|m| r.metrics.iter().find(|x| &x.0 == m))
}

fn failures_html(failures: &[FailureBreakdown]) -> String {
    let mut o = String::new();
    if failures.is_empty() {
        return o;
    }
    o.push_str("<h2>Failure reasons</h2>\n");
    for f in failures {
        let _ = write!(o, "<h3>{} ({} samples)</h3>\n<table><tr><th>Reason</th><th>Samples</th><th>Share</th></tr>", esc(&f.task), f.n);
        for (r, c) in &f.reasons {
            let share = if f.n > 0 {
                100.0 * *c as f64 / f.n as f64
            } else {
                f64::NAN
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{c}</td><td class=\"n\">{}%</td></tr>",
                esc(r),
                num(share, 1)
            );
        }
        o.push_str("</table>\n");
    }
    o
}

/// `report.html` for one run, with the card beside it when there is one.
pub fn run_html(
    title: &str,
    registry: &Registry,
    results: &[TaskResult],
    card: Option<&CardComparison>,
    failures: &[FailureBreakdown],
) -> String {
    let mut body = String::new();
    if let Some(c) = card {
        let _ = writeln!(body, "<p class=\"note\">Beside the card <b>{}</b> ({}). Card values: {}. Δ = run − card; z = Δ/√(se_run²+se_card²); rows with |z| &gt; {} are marked. Error bars: ±{ERROR_BAR_Z}·se.</p>", esc(&c.card), esc(&c.model), esc(&c.source), super::card::Z_FLAG);
        if c.doc_notes.is_empty() {
            body.push_str("<p class=\"note\">Documents: the same full sets as the card.</p>\n");
        } else {
            body.push_str(
                "<p class=\"note\">Documents differ from the card's:</p><ul class=\"note\">",
            );
            for n in &c.doc_notes {
                let _ = write!(body, "<li>{}</li>", esc(n));
            }
            body.push_str("</ul>\n");
        }
    }
    let mut shown = std::collections::BTreeSet::new();
    for s in registry.suites() {
        if s.tasks.is_empty() {
            continue;
        }
        let rs: Vec<&TaskResult> = s
            .tasks
            .iter()
            .filter_map(|t| results.iter().find(|r| &r.task == t))
            .collect();
        let card_rows = card
            .and_then(|c| c.suites.iter().find(|(t, _)| t == &s.title))
            .map(|x| &x.1);
        if rs.is_empty() && card_rows.is_none() {
            continue;
        }
        let _ = writeln!(body, "<h2>{}</h2>", esc(&s.title));
        // Table.
        if let Some(rows) = card_rows {
            body.push_str("<table><tr><th>Task</th><th>Metric</th><th>Run</th><th>±</th><th>Card</th><th>±</th><th>Δ</th><th>z</th></tr>");
            for r in rows {
                shown.insert(r.task.clone());
                let (rv, rse) = r
                    .run
                    .map(|(v, se)| (num(v, 4), num(se, 4)))
                    .unwrap_or(("—".into(), String::new()));
                let _ = write!(
                    body,
                    "<tr{}><td>{}</td><td>{}</td><td class=\"n\">{rv}</td><td class=\"n\">{rse}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    if r.flagged { " class=\"flag\"" } else { "" },
                    esc(&r.task),
                    esc(&r.metric),
                    num(r.card.0, 4),
                    r.card.1.map(|x| num(x, 4)).unwrap_or_else(|| "n/a".into()),
                    r.delta.map(|d| format!("{d:+.4}")).unwrap_or_default(),
                    r.z.map(|z| format!("{z:+.2}")).unwrap_or_default(),
                );
            }
            body.push_str("</table>\n");
        }
        let run_only: Vec<&&TaskResult> = rs.iter().filter(|r| !shown.contains(&r.task)).collect();
        if !run_only.is_empty() {
            body.push_str("<table><tr><th>Task</th><th>Version</th><th>Metric</th><th>Value</th><th>±</th><th>Docs</th></tr>");
            for r in run_only {
                shown.insert(r.task.clone());
                for (i, (m, v, se)) in r.metrics.iter().enumerate() {
                    let (t, ver, n) = if i == 0 {
                        (esc(&r.task), r.version.to_string(), r.n.to_string())
                    } else {
                        Default::default()
                    };
                    let _ = write!(body, "<tr><td>{t}</td><td class=\"n\">{ver}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{n}</td></tr>", esc(m), num(*v, 4), num(*se, 4));
                }
            }
            body.push_str("</table>\n");
        }
        // Chart: the suite's averaged metric per task.
        let labels: Vec<String> = s
            .tasks
            .iter()
            .filter(|t| {
                results.iter().any(|r| &r.task == *t)
                    || card_rows.is_some_and(|rows| rows.iter().any(|r| &r.task == *t))
            })
            .cloned()
            .collect();
        let run_vals = labels
            .iter()
            .map(|t| {
                results
                    .iter()
                    .find(|r| &r.task == t)
                    .and_then(|r| primary(&s.average, r))
                    .map(|m| (m.1, Some(m.2)))
            })
            .collect();
        let mut series = vec![Series {
            name: "run".into(),
            color: "#3b6fb6",
            values: run_vals,
        }];
        if let Some(rows) = card_rows {
            let vals = labels
                .iter()
                .map(|t| {
                    s.average
                        .iter()
                        .find_map(|m| rows.iter().find(|r| &r.task == t && &r.metric == m))
                        .map(|r| r.card)
                })
                .collect();
            series.push(Series {
                name: "card".into(),
                color: "#b0b0b0",
                values: vals,
            });
        }
        let metric = s.average.join(" / ");
        body.push_str(&svg_chart(
            &format!("{} — {metric}", s.title),
            &labels,
            &series,
            false,
        ));
    }
    if let Some(c) = card.filter(|c| !c.averages.is_empty()) {
        body.push_str("<h2>Suite averages (percent)</h2>\n<table><tr><th>Suite</th><th>Run</th><th>±</th><th>Card</th><th>±</th><th>Δ</th><th>z</th></tr>");
        for a in &c.averages {
            let (rv, rse) = a
                .run
                .map(|(v, se)| (num(v, 2), num(se, 2)))
                .unwrap_or(("—".into(), String::new()));
            let _ = write!(
                body,
                "<tr{}><td>{}{}</td><td class=\"n\">{rv}</td><td class=\"n\">{rse}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                if a.flagged { " class=\"flag\"" } else { "" },
                esc(&a.title),
                if a.card_printed { "" } else { " (card average computed from its rows)" },
                num(a.card.0, 2),
                num(a.card.1, 2),
                a.delta.map(|d| format!("{d:+.2}")).unwrap_or_default(),
                a.z.map(|z| format!("{z:+.2}")).unwrap_or_default(),
            );
        }
        body.push_str("</table>\n");
    }
    // Tasks in no suite (generative tasks, fc/json).
    let rest: Vec<&TaskResult> = results
        .iter()
        .filter(|r| !shown.contains(&r.task))
        .collect();
    let card_rest = card
        .and_then(|c| c.suites.iter().find(|(t, _)| t == "Other"))
        .map(|x| &x.1);
    if !rest.is_empty() || card_rest.is_some() {
        body.push_str("<h2>Other tasks</h2>\n<table><tr><th>Task</th><th>Metric</th><th>Run</th><th>±</th><th>Card</th><th>Δ</th></tr>");
        let mut labels = Vec::new();
        let mut vals = Vec::new();
        for r in &rest {
            for (m, v, se) in &r.metrics {
                let c = card_rest
                    .and_then(|rows| rows.iter().find(|x| x.task == r.task && &x.metric == m));
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&r.task),
                    esc(m),
                    num(*v, 4),
                    num(*se, 4),
                    c.map(|c| num(c.card.0, 4)).unwrap_or_default(),
                    c.map(|c| format!("{:+.4}", v - c.card.0)).unwrap_or_default()
                );
                labels.push(format!("{} {m}", r.task));
                vals.push(Some((*v, Some(*se))));
            }
        }
        if let Some(rows) = card_rest {
            for c in rows.iter().filter(|c| c.run.is_none()) {
                let _ = write!(body, "<tr><td>{}</td><td>{}</td><td class=\"n\">—</td><td></td><td class=\"n\">{}</td><td></td></tr>", esc(&c.task), esc(&c.metric), num(c.card.0, 4));
            }
        }
        body.push_str("</table>\n");
        if !labels.is_empty() {
            let series = [Series {
                name: "run".into(),
                color: "#3b6fb6",
                values: vals,
            }];
            body.push_str(&svg_chart("Other tasks", &labels, &series, false));
        }
    }
    body.push_str(&failures_html(failures));
    page(title, &body)
}

/// `comparison.html`: baseline vs candidate per task metric and suite.
pub fn comparison_html(c: &Comparison) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p class=\"note\">Baseline: {} ({}). Candidate: {} ({}). Error bars: ±{ERROR_BAR_Z}·se.</p>",
        esc(c.baseline_model.as_deref().unwrap_or("?")),
        esc(&c.baseline_dir.display().to_string()),
        esc(c.candidate_model.as_deref().unwrap_or("?")),
        esc(&c.candidate_dir.display().to_string())
    );
    for n in &c.notes {
        let _ = writeln!(body, "<p class=\"note\">{}</p>", esc(n));
    }
    body.push_str("<h2>Tasks</h2>\n<table><tr><th>Task</th><th>Metric</th><th>Baseline</th><th>±</th><th>Candidate</th><th>±</th><th>Δ pts</th><th>p</th><th>Verdict</th></tr>");
    for m in &c.metrics {
        let verdict = if m.regression {
            "REGRESSION"
        } else if m.significant && m.delta_points < 0.0 {
            "worse"
        } else if m.significant {
            "better"
        } else {
            "ok"
        };
        let p = m
            .test
            .as_ref()
            .map(|t| format!("{:.4}", t.p_value))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr{}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:+.2}</td><td class=\"n\">{p}</td><td>{verdict}</td></tr>",
            if m.regression { " class=\"flag\"" } else { "" },
            esc(&m.task),
            esc(&m.metric),
            num(m.baseline, 4),
            m.baseline_stderr.map(|s| num(s, 4)).unwrap_or_default(),
            num(m.candidate, 4),
            m.candidate_stderr.map(|s| num(s, 4)).unwrap_or_default(),
            m.delta_points
        );
    }
    body.push_str("</table>\n");
    // One chart per suite over its tasks' primary metric; tasks in no suite in a last chart.
    let mut groups: BTreeMap<usize, (String, Vec<&crate::compare::MetricComparison>)> =
        BTreeMap::new();
    for m in c.metrics.iter().filter(|m| m.primary) {
        let (i, title) = c
            .suites
            .iter()
            .enumerate()
            .find(|(_, s)| s.tasks.contains(&m.task))
            .map(|(i, s)| (i, s.suite.clone()))
            .unwrap_or((usize::MAX, "Other".into()));
        groups
            .entry(i)
            .or_insert_with(|| (title, Vec::new()))
            .1
            .push(m);
    }
    for (title, ms) in groups.values() {
        let labels: Vec<String> = ms
            .iter()
            .map(|m| format!("{} {}", m.task, m.metric))
            .collect();
        let series = [
            Series {
                name: "baseline".into(),
                color: "#b0b0b0",
                values: ms
                    .iter()
                    .map(|m| Some((m.baseline, m.baseline_stderr)))
                    .collect(),
            },
            Series {
                name: "candidate".into(),
                color: "#3b6fb6",
                values: ms
                    .iter()
                    .map(|m| Some((m.candidate, m.candidate_stderr)))
                    .collect(),
            },
        ];
        let _ = writeln!(body, "<h2>{}</h2>", esc(title));
        body.push_str(&svg_chart(title, &labels, &series, false));
    }
    if !c.suites.is_empty() {
        body.push_str("<h2>Suite averages (points)</h2>\n<table><tr><th>Suite</th><th>Baseline</th><th>Candidate</th><th>Δ</th><th>p</th></tr>");
        for s in &c.suites {
            let _ = write!(
                body,
                "<tr{}><td>{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:+.2}</td><td class=\"n\">{}</td></tr>",
                if s.regression { " class=\"flag\"" } else { "" },
                esc(&s.suite),
                s.baseline,
                s.candidate,
                s.delta_points,
                s.p_value.map(|p| format!("{p:.4}")).unwrap_or_default()
            );
        }
        body.push_str("</table>\n");
    }
    page("hermes-eval comparison", &body)
}

/// Failure breakdowns of the judged tasks of a run directory (function calling, JSON mode,
/// IFEval), from their newest samples: per task the documents' failure reasons (IFEval: per
/// instruction id, the prompts whose strict check of it failed).
pub fn judged_failures(dir: &Path) -> Result<Vec<FailureBreakdown>> {
    use std::io::BufRead;
    let mut out = Vec::new();
    for (task, path) in super::samples_files(dir)? {
        let f = std::fs::File::open(&path).map_err(|e| Error::file(&path, e))?;
        let (mut n, mut judged) = (0, false);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for line in std::io::BufReader::new(f).lines() {
            let line = line.map_err(|e| Error::file(&path, e))?;
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            n += 1;
            let Some(judge) = v.get("judge") else {
                continue;
            };
            judged = true;
            match judge["instructions"].as_array() {
                Some(instructions) => {
                    for i in instructions.iter().filter(|i| i["strict"] == false) {
                        let id = i["id"].as_str().unwrap_or("?").to_string();
                        *counts.entry(id).or_default() += 1;
                    }
                }
                None => {
                    if let Some(r) = v["reason"].as_str() {
                        *counts.entry(r.to_string()).or_default() += 1;
                    }
                }
            }
        }
        if judged {
            let mut reasons: Vec<(String, usize)> = counts.into_iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            out.push(FailureBreakdown { task, n, reasons });
        }
    }
    Ok(out)
}

/// IFEval's breakdown: per instruction id, the prompts whose strict check of it failed.
pub fn ifeval_failures(task: &str, verdicts: &[crate::ifeval::IfevalVerdict]) -> FailureBreakdown {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in verdicts {
        for i in v.instructions.iter().filter(|i| !i.strict) {
            *counts.entry(i.id.clone()).or_default() += 1;
        }
    }
    let mut reasons: Vec<(String, usize)> = counts.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    FailureBreakdown {
        task: task.to_string(),
        n: verdicts.len(),
        reasons,
    }
}

/// Writes `report.html` for the run in `dir` (the failure reasons of its judged tasks included).
pub fn write_run_html(
    dir: &Path,
    registry: &Registry,
    results: &[TaskResult],
    card: Option<&CardComparison>,
) -> Result<std::path::PathBuf> {
    let failures = judged_failures(dir)?;
    let title = format!("hermes-eval report: {}", dir.display());
    let path = dir.join("report.html");
    std::fs::write(&path, run_html(&title, registry, results, card, &failures))
        .map_err(|e| Error::file(&path, e))?;
    Ok(path)
}
