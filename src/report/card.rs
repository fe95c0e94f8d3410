//! The run beside the model card: per task and metric the run's value ± stderr, the card's
//! value ± stderr, Δ = run − card and z = Δ / √(se_run² + se_card²), flagged where |z| > 3, and
//! the suite averages. Cards are data files (cards/<name>.toml); the four Hermes-family cards
//! are built in, and a user adds one as a file of the same layout.
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{suite_average, TaskResult};
use crate::error::{Error, Result};
use crate::tasks::Registry;

/// |z| above which a row is flagged.
pub const Z_FLAG: f64 = 3.0;

/// A model card's published figures.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    pub name: String,
    pub model: String,
    /// Where the values were copied from.
    pub source: String,
    #[serde(default)]
    pub harness: Option<String>,
    /// `[task, version, metric, value, stderr]`, as the card's table rows.
    pub rows: Vec<CardRow>,
    /// The card's own `Average:` lines, in percent.
    #[serde(default)]
    pub average: Vec<CardAverage>,
    /// Figures outside the tables (no stderr): IFEval, function calling, MT-Bench.
    #[serde(default)]
    pub extra: Vec<CardExtra>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CardRow(pub String, pub u32, pub String, pub f64, pub f64);

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CardAverage {
    pub suite: String,
    pub value: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CardExtra {
    pub task: String,
    pub metric: String,
    pub value: f64,
    pub source: String,
}

/// The cards shipped with hermes-eval: (name, TOML).
pub const BUILTIN: [(&str, &str); 4] = [
    (
        "hermes-2-pro-mistral-7b",
        include_str!("../../cards/hermes-2-pro-mistral-7b.toml"),
    ),
    (
        "hermes-2-theta-llama-3-70b",
        include_str!("../../cards/hermes-2-theta-llama-3-70b.toml"),
    ),
    (
        "hermes-3-llama-3.2-3b",
        include_str!("../../cards/hermes-3-llama-3.2-3b.toml"),
    ),
    (
        "openhermes-2.5-mistral-7b",
        include_str!("../../cards/openhermes-2.5-mistral-7b.toml"),
    ),
];

impl Card {
    pub fn parse(text: &str, origin: &str) -> Result<Card> {
        let card: Card = toml::from_str(text).map_err(|e| Error::file(origin, e.message()))?;
        for r in &card.rows {
            if !(r.3.is_finite() && r.4.is_finite() && r.4 >= 0.0) {
                return Err(Error::file(
                    origin,
                    format!(
                        "row {} {}: value and stderr must be finite, stderr ≥ 0",
                        r.0, r.2
                    ),
                ));
            }
        }
        Ok(card)
    }

    /// A built-in card by name, or a card file.
    pub fn load(name_or_path: &str) -> Result<Card> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Card::parse(text, name_or_path);
        }
        let p = Path::new(name_or_path);
        if p.is_file() {
            let text = std::fs::read_to_string(p).map_err(|e| Error::file(p, e))?;
            return Card::parse(&text, name_or_path);
        }
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        Err(Error::file(
            name_or_path,
            format!(
                "no such card file, and not a built-in card ({})",
                names.join(", ")
            ),
        ))
    }

    fn row(&self, task: &str, metric: &str) -> Option<&CardRow> {
        self.rows.iter().find(|r| r.0 == task && r.2 == metric)
    }
}

/// Δ = run − card and z = Δ / √(se_run² + se_card²); z is `None` where the denominator is zero
/// or not a number.
pub fn delta_z(run: f64, se_run: f64, card: f64, se_card: f64) -> (f64, Option<f64>) {
    let d = run - card;
    let s = (se_run * se_run + se_card * se_card).sqrt();
    (
        d,
        (s.is_finite() && s > 0.0 && d.is_finite()).then(|| d / s),
    )
}

/// One task metric side by side.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RowCmp {
    pub task: String,
    pub metric: String,
    pub run: Option<(f64, f64)>,
    /// The card's value and stderr (`None` stderr: the card gives none).
    pub card: (f64, Option<f64>),
    pub delta: Option<f64>,
    pub z: Option<f64>,
    pub flagged: bool,
}

/// One suite average side by side (percent).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AvgCmp {
    pub suite: String,
    pub title: String,
    pub run: Option<(f64, f64)>,
    pub card: (f64, f64),
    /// Whether the card prints this average (else it is computed from the card's rows).
    pub card_printed: bool,
    pub delta: Option<f64>,
    pub z: Option<f64>,
    pub flagged: bool,
}

/// A run compared with a card.
#[derive(Debug, Clone, Serialize)]
pub struct CardComparison {
    pub card: String,
    pub model: String,
    pub source: String,
    /// Per suite (by title, in registry order; "Other" last), the rows.
    pub suites: Vec<(String, Vec<RowCmp>)>,
    pub averages: Vec<AvgCmp>,
    /// Every way the document sets differ (`--limit`, tasks missing on either side).
    pub doc_notes: Vec<String>,
}

/// Standard error of a suite average (percent) from per-task stderrs, tasks independent.
fn avg_se(ses: &[f64]) -> f64 {
    100.0 * ses.iter().map(|s| s * s).sum::<f64>().sqrt() / ses.len() as f64
}

/// Compares `results` (one run) with `card`; `full_n` gives each task's full document count.
pub fn compare(card: &Card, results: &[TaskResult], registry: &Registry) -> CardComparison {
    let mut doc_notes = Vec::new();
    let find = |t: &str| results.iter().find(|r| r.task == t);
    for r in results {
        if let Some(full) = registry.task(&r.task).and_then(|t| t.def.n) {
            if r.n != full {
                doc_notes.push(format!(
                    "{}: {} of {} documents (the card used all {full})",
                    r.task, r.n, full
                ));
            }
        }
    }
    let mut card_tasks: Vec<&str> = card.rows.iter().map(|r| r.0.as_str()).collect();
    card_tasks.dedup();
    let missing: Vec<&str> = card_tasks
        .iter()
        .copied()
        .filter(|t| find(t).is_none())
        .collect();
    if !missing.is_empty() {
        doc_notes.push(format!(
            "on the card, not in this run: {}",
            missing.join(", ")
        ));
    }
    let extra_run: Vec<&str> = results
        .iter()
        .map(|r| r.task.as_str())
        .filter(|t| !card_tasks.contains(t) && !card.extra.iter().any(|e| e.task == *t))
        .collect();
    if !extra_run.is_empty() {
        doc_notes.push(format!(
            "in this run, not on the card: {}",
            extra_run.join(", ")
        ));
    }

    let mut by_suite: BTreeMap<usize, (String, Vec<RowCmp>)> = BTreeMap::new();
    let suite_of = |task: &str| -> (usize, String) {
        registry
            .suites()
            .iter()
            .enumerate()
            .find(|(_, s)| s.tasks.iter().any(|t| t == task))
            .map(|(i, s)| (i, s.title.clone()))
            .unwrap_or((usize::MAX, "Other".into()))
    };
    for r in &card.rows {
        let run = find(&r.0)
            .and_then(|t| t.metrics.iter().find(|m| m.0 == r.2))
            .map(|m| (m.1, m.2));
        let (delta, z) = match run {
            Some((v, se)) => {
                let (d, z) = delta_z(v, se, r.3, r.4);
                (Some(d), z)
            }
            None => (None, None),
        };
        let (i, title) = suite_of(&r.0);
        by_suite
            .entry(i)
            .or_insert_with(|| (title, Vec::new()))
            .1
            .push(RowCmp {
                task: r.0.clone(),
                metric: r.2.clone(),
                run,
                card: (r.3, Some(r.4)),
                delta,
                z,
                flagged: z.is_some_and(|z| z.abs() > Z_FLAG),
            });
    }
    for e in &card.extra {
        let run = find(&e.task)
            .and_then(|t| t.metrics.iter().find(|m| m.0 == e.metric))
            .map(|m| (m.1, m.2));
        let (i, title) = suite_of(&e.task);
        by_suite
            .entry(i)
            .or_insert_with(|| (title, Vec::new()))
            .1
            .push(RowCmp {
                task: e.task.clone(),
                metric: e.metric.clone(),
                run,
                card: (e.value, None),
                delta: run.map(|(v, _)| v - e.value),
                z: None,
                flagged: false,
            });
    }

    let mut averages = Vec::new();
    for s in registry.suites() {
        if s.average.is_empty() || s.tasks.is_empty() {
            continue;
        }
        // The card's per-task figure under the suite's rule (first metric of `average` it has).
        let card_vals: Option<Vec<(f64, f64)>> = s
            .tasks
            .iter()
            .map(|t| {
                s.average
                    .iter()
                    .find_map(|m| card.row(t, m))
                    .map(|r| (r.3, r.4))
            })
            .collect();
        let Some(card_vals) = card_vals else { continue };
        let printed = card.average.iter().find(|a| a.suite == s.name);
        let card_avg = printed.map(|a| a.value).unwrap_or_else(|| {
            100.0 * card_vals.iter().map(|v| v.0).sum::<f64>() / card_vals.len() as f64
        });
        let card_se = avg_se(&card_vals.iter().map(|v| v.1).collect::<Vec<_>>());
        let run_ses: Option<Vec<f64>> = s
            .tasks
            .iter()
            .map(|t| {
                let r = find(t)?;
                s.average
                    .iter()
                    .find_map(|m| r.metrics.iter().find(|x| &x.0 == m))
                    .map(|x| x.2)
            })
            .collect();
        let run = suite_average(s, results).zip(run_ses.map(|v| avg_se(&v)));
        let (delta, z) = match run {
            Some((v, se)) => {
                let (d, z) = delta_z(v, se, card_avg, card_se);
                (Some(d), z)
            }
            None => (None, None),
        };
        averages.push(AvgCmp {
            suite: s.name.clone(),
            title: s.title.clone(),
            run,
            card: (card_avg, card_se),
            card_printed: printed.is_some(),
            delta,
            z,
            flagged: z.is_some_and(|z| z.abs() > Z_FLAG),
        });
    }
    CardComparison {
        card: card.name.clone(),
        model: card.model.clone(),
        source: card.source.clone(),
        suites: by_suite.into_values().collect(),
        averages,
        doc_notes,
    }
}

fn signed(x: f64, prec: usize) -> String {
    format!("{x:+.prec$}")
}

impl CardComparison {
    pub fn flagged(&self) -> usize {
        self.suites
            .iter()
            .flat_map(|s| &s.1)
            .filter(|r| r.flagged)
            .count()
            + self.averages.iter().filter(|a| a.flagged).count()
    }

    /// The side-by-side tables as markdown (also what `report --card` prints).
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!(
            "# This run beside the card `{}` ({})\n\n",
            self.card, self.model
        ));
        o.push_str(&format!("Card values: {}.\n", self.source));
        o.push_str(&format!(
            "Δ = run − card; z = Δ / √(se_run² + se_card²); `!` marks |z| > {Z_FLAG}.\n\n"
        ));
        if self.doc_notes.is_empty() {
            o.push_str("Documents: the same full sets as the card.\n\n");
        } else {
            o.push_str("Documents differ from the card's:\n");
            for n in &self.doc_notes {
                o.push_str(&format!("- {n}\n"));
            }
            o.push('\n');
        }
        for (title, rows) in &self.suites {
            o.push_str(&format!("## {title}\n\n"));
            o.push_str("| Task | Metric | Run | ± | Card | ± | Δ | z | |\n");
            o.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|\n");
            for r in rows {
                let (rv, rs) = r
                    .run
                    .map(|(v, s)| (super::pct4(v), super::pct4(s)))
                    .unwrap_or(("—".into(), "".into()));
                o.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    r.task,
                    r.metric,
                    rv,
                    rs,
                    super::pct4(r.card.0),
                    r.card.1.map(super::pct4).unwrap_or_else(|| "n/a".into()),
                    r.delta.map(|d| signed(d, 4)).unwrap_or_default(),
                    r.z.map(|z| signed(z, 2)).unwrap_or_default(),
                    if r.flagged { "!" } else { "" }
                ));
            }
            o.push('\n');
        }
        if !self.averages.is_empty() {
            o.push_str("## Suite averages (percent)\n\n");
            o.push_str("| Suite | Run | ± | Card | ± | Δ | z | |\n");
            o.push_str("|---|---:|---:|---:|---:|---:|---:|---|\n");
            for a in &self.averages {
                let (rv, rs) = a
                    .run
                    .map(|(v, s)| (format!("{v:.2}"), format!("{s:.2}")))
                    .unwrap_or(("—".into(), "".into()));
                o.push_str(&format!(
                    "| {}{} | {} | {} | {:.2} | {:.2} | {} | {} | {} |\n",
                    a.title,
                    if a.card_printed {
                        ""
                    } else {
                        " (card average computed from its rows)"
                    },
                    rv,
                    rs,
                    a.card.0,
                    a.card.1,
                    a.delta.map(|d| signed(d, 2)).unwrap_or_default(),
                    a.z.map(|z| signed(z, 2)).unwrap_or_default(),
                    if a.flagged { "!" } else { "" }
                ));
            }
            o.push_str("\nThe averages' stderrs treat the tasks as independent: √(Σ se²) / k.\n");
        }
        o.push_str(&format!("\n{} rows flagged.\n", self.flagged()));
        o
    }
}

/// `hermes-eval report <run> [--card <name|file>]`: with a card, the side-by-side tables are
/// printed and written to `card.md`; `report.html` is written in every case. `results` are the
/// run's rescored tasks (function calling, JSON mode and IFEval included).
pub fn report_outputs(
    path: &Path,
    registry: &Registry,
    results: &[TaskResult],
    card: Option<&str>,
) -> Result<Option<CardComparison>> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let all = results.to_vec();
    let cmp = match card {
        Some(c) => {
            let cmp = compare(&Card::load(c)?, &all, registry);
            let md = cmp.to_markdown();
            print!("\n{md}");
            let p = dir.join("card.md");
            std::fs::write(&p, &md).map_err(|e| Error::file(&p, e))?;
            Some(cmp)
        }
        None => None,
    };
    let html = super::html::write_run_html(&dir, registry, &all, cmp.as_ref())?;
    eprintln!(
        "wrote {}{}",
        if cmp.is_some() { "card.md and " } else { "" },
        html.display()
    );
    Ok(cmp)
}
