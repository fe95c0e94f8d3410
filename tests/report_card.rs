//! `report --card`: shipped cards parse row for row, Δ and z on hand-computed cases, and the
//! document-set notes.
mod common;
use hermes_eval::report::card::{compare, delta_z, Card, BUILTIN};
use hermes_eval::report::TaskResult;
use hermes_eval::tasks::Registry;

fn result(task: &str, n: usize, metrics: &[(&str, f64, f64)]) -> TaskResult {
    TaskResult {
        task: task.into(),
        version: 0,
        n,
        metrics: metrics
            .iter()
            .map(|(m, v, s)| (m.to_string(), *v, *s))
            .collect(),
    }
}

#[test]
fn delta_and_z_hand_computed() {
    // 0.60 ± 0.03 vs 0.50 ± 0.04: Δ = 0.10, √(0.03² + 0.04²) = 0.05, z = 2.
    let (d, z) = delta_z(0.60, 0.03, 0.50, 0.04);
    assert!((d - 0.10).abs() < 1e-12);
    assert!((z.unwrap() - 2.0).abs() < 1e-12);
    // Below the card: z negative; 0.4 ± 0.05 vs 0.52 ± 0.12 → Δ = −0.12, se = 0.13.
    let (d, z) = delta_z(0.40, 0.05, 0.52, 0.12);
    assert!((d + 0.12).abs() < 1e-12);
    assert!((z.unwrap() + 0.12 / 0.13).abs() < 1e-12);
    // No stderr on either side: no z.
    assert_eq!(delta_z(0.5, 0.0, 0.4, 0.0).1, None);
    assert_eq!(delta_z(0.5, f64::NAN, 0.4, 0.01).1, None);
}

/// The table rows of a card markdown file (`|task|version|metric|value|±|stderr|`).
fn md_rows(md: &str) -> Vec<(String, String, f64, f64)> {
    let mut out = Vec::new();
    let mut task = String::new();
    for line in md.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let version_ok = cells
            .get(2)
            .is_some_and(|v| v.is_empty() || v.parse::<u32>().is_ok());
        if cells.len() < 7 || !version_ok || cells[4].parse::<f64>().is_err() {
            continue;
        }
        if !cells[1].is_empty() {
            task = cells[1].to_string();
        }
        let se: f64 = cells[6].parse().unwrap();
        out.push((
            task.clone(),
            cells[3].to_string(),
            cells[4].parse().unwrap(),
            se,
        ));
    }
    out
}

#[test]
fn every_row_of_every_shipped_card_parses() {
    let reg = Registry::builtin().unwrap();
    for (name, text) in BUILTIN {
        let card = Card::parse(text, name).unwrap();
        assert_eq!(card.name, name);
        assert!(!card.rows.is_empty());
        for r in &card.rows {
            let task = reg
                .task(&r.0)
                .unwrap_or_else(|| panic!("{name}: unknown task {}", r.0));
            assert!(
                task.metric_names().contains(&r.2),
                "{name}: {} has no metric {}",
                r.0,
                r.2
            );
            assert!((0.0..=1.0).contains(&r.3) && r.4 >= 0.0, "{name}: {r:?}");
        }
        // Row for row the card's own tables (the copies in ../shared/cards).
        let md_path = common::shared().join("cards").join(format!("{name}.md"));
        let md = std::fs::read_to_string(&md_path).unwrap();
        let want = md_rows(&md);
        let got: Vec<_> = card
            .rows
            .iter()
            .map(|r| (r.0.clone(), r.2.clone(), r.3, r.4))
            .collect();
        assert_eq!(got, want, "{name}");
        assert!(Card::load(name).is_ok());
    }
    let theta = Card::load("hermes-2-theta-llama-3-70b").unwrap();
    assert!(theta
        .extra
        .iter()
        .any(|e| e.task == "ifeval" && (e.value - 0.8799).abs() < 1e-9));
    let pro = Card::load("hermes-2-pro-mistral-7b").unwrap();
    assert!(pro.extra.iter().any(|e| e.task == "func_calling_eval"
        && e.metric == "acc"
        && (e.value - 0.91).abs() < 1e-9));
    assert!(Card::load("no-such-card")
        .unwrap_err()
        .to_string()
        .contains("hermes-2-pro-mistral-7b"));
}

#[test]
fn comparison_rows_averages_and_document_notes() {
    let reg = Registry::builtin().unwrap();
    let card = Card::load("hermes-2-pro-mistral-7b").unwrap();
    let results = vec![
        // The card: acc 0.5461 ± 0.0145, acc_norm 0.5623 ± 0.0145.
        result(
            "arc_challenge",
            20,
            &[("acc", 0.70, 0.01), ("acc_norm", 0.5623, 0.0145)],
        ),
        result("winogrande", 1267, &[("acc", 0.7230, 0.0126)]),
    ];
    let c = compare(&card, &results, &reg);
    let rows: Vec<_> = c.suites.iter().flat_map(|s| &s.1).collect();
    let acc = rows
        .iter()
        .find(|r| r.task == "arc_challenge" && r.metric == "acc")
        .unwrap();
    let z = (0.70 - 0.5461) / (0.01f64.powi(2) + 0.0145f64.powi(2)).sqrt();
    assert!((acc.z.unwrap() - z).abs() < 1e-9 && acc.flagged, "{acc:?}");
    let norm = rows
        .iter()
        .find(|r| r.metric == "acc_norm" && r.task == "arc_challenge")
        .unwrap();
    assert_eq!(norm.z, Some(0.0));
    assert!(!norm.flagged);
    assert!(rows
        .iter()
        .find(|r| r.task == "boolq")
        .unwrap()
        .run
        .is_none());
    assert!(
        c.doc_notes
            .iter()
            .any(|n| n.contains("arc_challenge: 20 of 1172")),
        "{:?}",
        c.doc_notes
    );
    assert!(c
        .doc_notes
        .iter()
        .any(|n| n.contains("not in this run") && n.contains("hellaswag")));
    // GPT4All average cannot be computed for the run (tasks missing); the card's is printed.
    let g = c.averages.iter().find(|a| a.suite == "gpt4all").unwrap();
    assert!(g.run.is_none() && g.card_printed && (g.card.0 - 71.19).abs() < 1e-9);
    let md = c.to_markdown();
    assert!(
        md.contains(
            "| arc_challenge | acc | 0.7000 | 0.0100 | 0.5461 | 0.0145 | +0.1539 | +8.74 | ! |"
        ),
        "{md}"
    );
    assert!(md.contains("arc_challenge: 20 of 1172 documents"));
}

#[test]
fn suite_average_z_uses_independent_task_errors() {
    let reg = Registry::builtin().unwrap();
    let card = Card::load("hermes-2-pro-mistral-7b").unwrap();
    // Every GPT4All task exactly at the card's value with the card's stderr: Δ = 71.19 − mean.
    let suite = reg.suite("gpt4all").unwrap();
    let mut results = Vec::new();
    let mut vals = Vec::new();
    let mut ses = Vec::new();
    for t in &suite.tasks {
        let task = reg.task(t).unwrap();
        let metrics: Vec<(String, f64, f64)> = card
            .rows
            .iter()
            .filter(|r| &r.0 == t)
            .map(|r| (r.2.clone(), r.3, r.4))
            .collect();
        let m = suite
            .average
            .iter()
            .find_map(|a| metrics.iter().find(|m| &m.0 == a))
            .unwrap();
        vals.push(m.1);
        ses.push(m.2);
        results.push(TaskResult {
            task: t.clone(),
            version: 0,
            n: task.def.n.unwrap_or(1),
            metrics,
        });
    }
    let c = compare(&card, &results, &reg);
    let g = c.averages.iter().find(|a| a.suite == "gpt4all").unwrap();
    let run_avg = 100.0 * vals.iter().sum::<f64>() / vals.len() as f64;
    let se = 100.0 * ses.iter().map(|s| s * s).sum::<f64>().sqrt() / ses.len() as f64;
    let (v, s) = g.run.unwrap();
    assert!((v - run_avg).abs() < 1e-9 && (s - se).abs() < 1e-9);
    assert!((g.delta.unwrap() - (run_avg - 71.19)).abs() < 1e-9);
    assert!((g.z.unwrap() - (run_avg - 71.19) / (2.0 * se * se).sqrt()).abs() < 1e-9);
    assert!(
        c.doc_notes.iter().all(|n| !n.contains("documents")),
        "{:?}",
        c.doc_notes
    );
}
