//! `hermes-eval compare` end to end on run directories written by a tiny fixture generator in the
//! lm-evaluation-harness 0.4 layout.
use hermes_eval::compare::{compare, run_compare, CompareArgs, CompareOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// One document of a fixture task.
#[derive(Clone)]
struct Doc {
    id: i64,
    hash: String,
    /// Per-choice log-likelihoods; acc = argmax == gold.
    lls: Vec<f64>,
    gold: usize,
    /// Continuous metric (TruthfulQA mc2) instead of acc/acc_norm.
    mc2: Option<f64>,
}

fn doc(id: i64, correct: bool, n_choices: usize) -> Doc {
    let gold = (id as usize) % n_choices;
    let lls = (0..n_choices)
        .map(|i| {
            let right = (i == gold) == correct;
            -10.0 - i as f64 * 0.1 + if right { 5.0 } else { 0.0 }
        })
        .collect();
    Doc {
        id,
        hash: format!("{:064x}", id * 7919 + 1),
        lls,
        gold,
        mc2: None,
    }
}

fn argmax(xs: &[f64]) -> usize {
    let mut b = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[b] {
            b = i;
        }
    }
    b
}

fn mean_stderr(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (v / n).sqrt())
}

/// Write `results_<ts>.json` and `samples_<task>_<ts>.jsonl` files. `string_resps` writes the
/// responses the way lm-eval does (`["-23.54", "False"]`).
fn write_run(dir: &Path, ts: &str, tasks: &[(&str, Vec<Doc>)], string_resps: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut results = serde_json::Map::new();
    for (task, docs) in tasks {
        let mut lines = String::new();
        let mut accs = Vec::new();
        let mut mc2s = Vec::new();
        for d in docs {
            let resps: Vec<Value> = d
                .lls
                .iter()
                .map(|&l| {
                    if string_resps {
                        json!([format!("{l}"), "False"])
                    } else {
                        json!([l, false])
                    }
                })
                .collect();
            let mut line = json!({
                "doc_id": d.id,
                "doc_hash": d.hash,
                "target": d.gold,
                "arguments": d.lls.iter().enumerate().map(|(i, _)| json!(["ctx", format!(" choice {i}")])).collect::<Vec<_>>(),
                "resps": resps.iter().map(|r| json!([r])).collect::<Vec<_>>(),
                "filtered_resps": resps,
            });
            if let Some(m) = d.mc2 {
                line["mc2"] = json!(m);
                mc2s.push(m);
            } else {
                let acc = if argmax(&d.lls) == d.gold { 1.0 } else { 0.0 };
                line["acc"] = json!(acc);
                line["acc_norm"] = json!(acc);
                accs.push(acc);
            }
            lines.push_str(&serde_json::to_string(&line).unwrap());
            lines.push('\n');
        }
        std::fs::write(dir.join(format!("samples_{task}_{ts}.jsonl")), lines).unwrap();
        let mut r = serde_json::Map::new();
        r.insert("alias".into(), json!(task));
        if !accs.is_empty() {
            let (m, s) = mean_stderr(&accs);
            for k in ["acc", "acc_norm"] {
                r.insert(format!("{k},none"), json!(m));
                r.insert(format!("{k}_stderr,none"), json!(s));
            }
        }
        if !mc2s.is_empty() {
            let (m, s) = mean_stderr(&mc2s);
            r.insert("mc2,none".into(), json!(m));
            r.insert("mc2_stderr,none".into(), json!(s));
        }
        results.insert(task.to_string(), Value::Object(r));
    }
    let file = json!({
        "results": results,
        "versions": {},
        "n-samples": {},
        "model_name": dir.file_name().unwrap().to_string_lossy(),
        "model": {"source": "fixture"},
        "configs": {},
    });
    std::fs::write(
        dir.join(format!("results_{ts}.json")),
        serde_json::to_string_pretty(&file).unwrap(),
    )
    .unwrap();
}

const TS: &str = "2026-01-01T00-00-00.000000";

/// 200 docs, 140 right (70 %).
fn base_docs(n_choices: usize) -> Vec<Doc> {
    (0..200).map(|i| doc(i, i % 10 < 7, n_choices)).collect()
}

fn args(b: &Path, c: &Path, out: &Path) -> CompareArgs {
    CompareArgs {
        baseline: b.to_path_buf(),
        candidate: c.to_path_buf(),
        max_drop: Some(1.0),
        max_avg_drop: Some(1.0),
        alpha: 0.05,
        seed: 1234,
        resamples: 2000,
        output: Some(out.to_path_buf()),
        no_plot: false,
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let (b, c, o) = (
        t.path().join("base"),
        t.path().join("cand"),
        t.path().join("out"),
    );
    (t, b, c, o)
}

#[test]
fn comparing_a_run_with_itself_passes_with_zero_delta() {
    let (_t, b, _c, o) = setup();
    write_run(
        &b,
        TS,
        &[("arc_easy", base_docs(4)), ("boolq", base_docs(2))],
        true,
    );
    let cmp = compare(&b, &b, &CompareOptions::default()).unwrap();
    assert!(cmp
        .metrics
        .iter()
        .all(|m| m.delta_points == 0.0 && m.test.as_ref().unwrap().p_value == 1.0));
    assert!(cmp
        .agreement
        .iter()
        .all(|a| a.changed_choice == 0.0 && a.mean_abs_delta_loglik == 0.0));
    let gpt = cmp.suites.iter().find(|s| s.suite == "GPT4All").unwrap();
    assert_eq!(gpt.tasks, ["arc_easy", "boolq"]);
    assert!((gpt.baseline - 70.0).abs() < 1e-9 && gpt.delta_points == 0.0);
    assert_eq!(run_compare(&args(&b, &b, &o)).unwrap(), 0);
    for f in ["comparison.md", "comparison.json", "comparison.svg"] {
        assert!(o.join(f).is_file(), "{f} missing");
    }
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(o.join("comparison.json")).unwrap()).unwrap();
    assert_eq!(j["metrics"].as_array().unwrap().len(), 4);
}

#[test]
fn a_real_drop_fails_the_gate() {
    let (_t, b, c, o) = setup();
    write_run(&b, TS, &[("arc_easy", base_docs(4))], false);
    // 30 of the 140 right answers become wrong: −15 points, McNemar b=30, c=0 → χ² = 29²/30, p ≈ 1e-7.
    let mut cand = base_docs(4);
    let mut flipped = 0;
    for d in cand.iter_mut() {
        if d.id % 10 < 7 && flipped < 30 {
            *d = doc(d.id, false, 4);
            flipped += 1;
        }
    }
    write_run(&c, TS, &[("arc_easy", cand)], true);
    let cmp = compare(
        &b,
        &c,
        &CompareOptions {
            max_drop: Some(1.0),
            ..Default::default()
        },
    )
    .unwrap();
    let acc = cmp.metrics.iter().find(|m| m.metric == "acc").unwrap();
    assert!(
        (acc.delta_points + 15.0).abs() < 1e-9,
        "{}",
        acc.delta_points
    );
    let t = acc.test.as_ref().unwrap();
    assert_eq!((t.b, t.c), (Some(30), Some(0)));
    assert!(acc.regression);
    let agr = &cmp.agreement[0];
    assert!((agr.changed_choice - 0.15).abs() < 1e-12);
    assert_eq!(run_compare(&args(&b, &c, &o)).unwrap(), 1);
    // The same drop is tolerated with a 20-point budget.
    let mut a = args(&b, &c, &o);
    a.max_drop = Some(20.0);
    a.max_avg_drop = Some(20.0);
    assert_eq!(run_compare(&a).unwrap(), 0);
    assert!(std::fs::read_to_string(o.join("comparison.md"))
        .unwrap()
        .contains("| arc_easy | acc |"));
}

#[test]
fn noise_does_not_fail_the_gate() {
    let (_t, b, c, o) = setup();
    write_run(&b, TS, &[("boolq", base_docs(2))], false);
    // 3 right→wrong and 1 wrong→right: −1 point, but McNemar exact p = 2·(1+4)/16 = 0.625.
    let mut cand = base_docs(2);
    for id in [0, 1, 2] {
        cand[id] = doc(id as i64, false, 2);
    }
    cand[7] = doc(7, true, 2);
    write_run(&c, TS, &[("boolq", cand)], false);
    let cmp = compare(
        &b,
        &c,
        &CompareOptions {
            max_drop: Some(0.0),
            ..Default::default()
        },
    )
    .unwrap();
    let acc = cmp.metrics.iter().find(|m| m.metric == "acc").unwrap();
    assert!((acc.delta_points + 1.0).abs() < 1e-9);
    assert!((acc.test.as_ref().unwrap().p_value - 0.625).abs() < 1e-12);
    assert!(!acc.regression);
    let mut a = args(&b, &c, &o);
    a.max_drop = Some(0.0);
    assert_eq!(run_compare(&a).unwrap(), 0);
}

#[test]
fn different_limits_are_refused() {
    let (_t, b, c, o) = setup();
    write_run(&b, TS, &[("arc_easy", base_docs(4))], false);
    write_run(&c, TS, &[("arc_easy", base_docs(4)[..100].to_vec())], false);
    let err = compare(&b, &c, &CompareOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("task arc_easy") && err.contains("doc_id 100 only in the baseline"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    assert_eq!(run_compare(&args(&b, &c, &o)).unwrap(), 2);
}

#[test]
fn different_documents_are_refused() {
    let (_t, b, c, o) = setup();
    write_run(&b, TS, &[("piqa", base_docs(2))], false);
    let mut cand = base_docs(2);
    cand[42].hash = "ab".repeat(32);
    write_run(&c, TS, &[("piqa", cand)], false);
    let err = compare(&b, &c, &CompareOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("task piqa")
            && err.contains("doc_id 42")
            && err.contains("not the same document set"),
        "{err}"
    );
    assert_eq!(run_compare(&args(&b, &c, &o)).unwrap(), 2);
}

#[test]
fn the_newest_results_file_is_used() {
    let (_t, b, c, _o) = setup();
    write_run(&b, TS, &[("arc_easy", base_docs(4))], false);
    // An older run in the candidate dir scored everything wrong; the newer one equals the baseline.
    write_run(
        &c,
        "2025-06-01T00-00-00.000000",
        &[("arc_easy", (0..200).map(|i| doc(i, false, 4)).collect())],
        false,
    );
    write_run(&c, TS, &[("arc_easy", base_docs(4))], false);
    let cmp = compare(&b, &c, &CompareOptions::default()).unwrap();
    assert!(cmp.candidate_results.to_string_lossy().contains(TS));
    assert!(cmp.metrics.iter().all(|m| m.delta_points == 0.0));
}

#[test]
fn continuous_metric_uses_a_seeded_bootstrap() {
    let (_t, b, c, o) = setup();
    let docs = |shift: f64| -> Vec<Doc> {
        (0..150)
            .map(|i| {
                let mut d = doc(i, true, 4);
                d.mc2 =
                    Some((0.5 + 0.3 * ((i * 37 % 11) as f64 / 10.0 - 0.5) + shift).clamp(0.0, 1.0));
                d
            })
            .collect()
    };
    write_run(&b, TS, &[("truthfulqa_mc2", docs(0.0))], false);
    write_run(&c, TS, &[("truthfulqa_mc2", docs(-0.04))], false);
    let opts = CompareOptions {
        max_drop: Some(1.0),
        resamples: 2000,
        ..Default::default()
    };
    let x = compare(&b, &c, &opts).unwrap();
    let y = compare(&b, &c, &opts).unwrap();
    let (mx, my) = (&x.metrics[0], &y.metrics[0]);
    assert_eq!(mx.metric, "mc2");
    assert_eq!(mx.test, my.test, "seeded bootstrap must be deterministic");
    assert_eq!(
        mx.test.as_ref().unwrap().method,
        hermes_eval::compare::stats::TestMethod::Bootstrap
    );
    assert!(mx.test.as_ref().unwrap().p_value < 0.01);
    assert!(mx.regression);
    assert_eq!(run_compare(&args(&b, &c, &o)).unwrap(), 1);
}

#[test]
fn suite_average_gate() {
    let (_t, b, c, o) = setup();
    // 7 GPT4All tasks; the candidate loses 2 points on each (4 of 200 docs) — each task alone is not
    // significant (exact p = 0.125), the average over 1400 docs is.
    let names = [
        "arc_challenge",
        "arc_easy",
        "boolq",
        "hellaswag",
        "openbookqa",
        "piqa",
        "winogrande",
    ];
    let base: Vec<(&str, Vec<Doc>)> = names.iter().map(|n| (*n, base_docs(2))).collect();
    let cand: Vec<(&str, Vec<Doc>)> = names
        .iter()
        .map(|n| {
            let mut d = base_docs(2);
            for id in [0, 1, 2, 3] {
                d[id] = doc(id as i64, false, 2);
            }
            (*n, d)
        })
        .collect();
    write_run(&b, TS, &base, false);
    write_run(&c, TS, &cand, false);
    let cmp = compare(
        &b,
        &c,
        &CompareOptions {
            max_drop: Some(1.0),
            max_avg_drop: Some(1.0),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(cmp.metrics.iter().all(|m| !m.regression));
    let s = &cmp.suites[0];
    assert_eq!(s.suite, "GPT4All");
    assert_eq!(s.tasks.len(), 7);
    assert!((s.delta_points + 2.0).abs() < 1e-9);
    assert!(s.p_value.unwrap() < 0.05, "{:?}", s.p_value);
    assert!(s.regression);
    assert_eq!(run_compare(&args(&b, &c, &o)).unwrap(), 1);
    let mut a = args(&b, &c, &o);
    a.max_avg_drop = Some(3.0);
    assert_eq!(run_compare(&a).unwrap(), 0);
}

#[test]
fn usage_errors_exit_2() {
    let (_t, b, _c, o) = setup();
    write_run(&b, TS, &[("arc_easy", base_docs(4))], false);
    let mut a = args(&b, &b, &o);
    a.alpha = 1.5;
    assert_eq!(run_compare(&a).unwrap(), 2);
    let a = args(&b, &o.join("missing"), &o);
    assert_eq!(run_compare(&a).unwrap(), 2);
}

#[test]
fn a_task_without_samples_falls_back_to_an_unpaired_test() {
    let (_t, b, c, o) = setup();
    write_run(&b, TS, &[("arc_easy", base_docs(4))], false);
    write_run(
        &c,
        TS,
        &[("arc_easy", (0..200).map(|i| doc(i, false, 4)).collect())],
        false,
    );
    std::fs::remove_file(c.join(format!("samples_arc_easy_{TS}.jsonl"))).unwrap();
    let cmp = compare(
        &b,
        &c,
        &CompareOptions {
            max_drop: Some(1.0),
            ..Default::default()
        },
    )
    .unwrap();
    for m in &cmp.metrics {
        let t = m.test.as_ref().unwrap();
        assert_eq!(t.method, hermes_eval::compare::stats::TestMethod::UnpairedZ);
        assert!(m.regression && m.delta_points == -70.0);
    }
    assert!(
        cmp.notes
            .iter()
            .any(|n| n.contains("arc_easy: no samples file in the candidate")),
        "{:?}",
        cmp.notes
    );
    assert_eq!(run_compare(&args(&b, &c, &o)).unwrap(), 1);
}
