//! The `ifeval` task through the one pipeline, as a user runs it: the google/IFEval rows of the
//! mirror, completions from a replay file (`--model replay:`), the samples with per-instruction
//! verdicts, and lm-eval's four metrics (instruction-level ones over all instructions).
//!
//! The completions are the responses scripts/ifeval_reference.py built for every one of the 541
//! prompts (tests/data/ifeval/verdicts.jsonl), so the run's metrics can be checked against the
//! reference implementation's own verdicts on the same responses.
mod common;
use common::*;
use hermes_eval::ifeval::{self, IfevalMetrics};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn run(args: &[&str]) -> (i32, String, String) {
    hermes(args)
}

fn newest(dir: &Path, prefix: &str) -> std::path::PathBuf {
    files_with_prefix(dir, prefix).pop().expect(prefix)
}

/// The first reference case of every IFEval prompt, by key: (response, strict, loose).
fn reference_cases() -> BTreeMap<i64, (String, Vec<bool>, Vec<bool>)> {
    let path = format!(
        "{}/tests/data/ifeval/verdicts.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let bools = |v: &Value| -> Vec<bool> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect()
    };
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let c: Value = serde_json::from_str(line).unwrap();
        let key = c["row"]["key"].as_i64().unwrap();
        if key >= 0 {
            out.entry(key).or_insert_with(|| {
                let r = c["response"].as_str().unwrap().to_string();
                (r, bools(&c["strict"]), bools(&c["loose"]))
            });
        }
    }
    out
}

#[test]
fn ifeval_runs_from_replayed_completions_with_per_instruction_verdicts() {
    let hub = hub();
    let rows_file = hub.join("datasets/google/IFEval/default/input_data.jsonl");
    let rows: Vec<Value> = std::fs::read_to_string(&rows_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 541);
    let cases = reference_cases();
    let tmp = tempfile::tempdir().unwrap();
    let replay = tmp.path().join("answers.jsonl");
    let mut lines = vec![];
    let mut verdicts = vec![];
    let (mut ref_ps, mut ref_is) = (vec![], vec![]);
    for (i, row) in rows.iter().enumerate() {
        let (response, strict, _loose) = &cases[&row["key"].as_i64().unwrap()];
        lines.push(
            serde_json::json!({"task": "ifeval", "doc_id": i, "completion": response}).to_string(),
        );
        verdicts.push(ifeval::judge(row, response).unwrap());
        ref_ps.push(strict.iter().all(|&b| b));
        ref_is.extend(strict.iter().copied());
    }
    std::fs::write(&replay, lines.join("\n")).unwrap();
    let want = IfevalMetrics::aggregate(&verdicts);
    let spec = format!("replay:{}", replay.display());

    for (name, extra) in [("chat", vec![]), ("raw", vec!["--no-chat-template"])] {
        let out = tmp.path().join(name);
        let mut args = vec![
            "run",
            "--tasks",
            "ifeval",
            "--model",
            &spec,
            "--data-dir",
            hub.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend(extra.iter().copied());
        let (code, stdout, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        assert!(stdout.contains("|ifeval|"), "{stdout}");
        let res: Value =
            serde_json::from_str(&std::fs::read_to_string(newest(&out, "results_")).unwrap())
                .unwrap();
        let r = &res["results"]["ifeval"];
        let close = |k: &str, v: f64| {
            let got = r[format!("{k},none")].as_f64().unwrap();
            assert!((got - v).abs() < 1e-12, "{name} {k}: {got} vs {v}");
        };
        close("prompt_level_strict_acc", want.prompt_level_strict_acc);
        close("prompt_level_loose_acc", want.prompt_level_loose_acc);
        close("inst_level_strict_acc", want.inst_level_strict_acc);
        close("inst_level_loose_acc", want.inst_level_loose_acc);
        close(
            "prompt_level_strict_acc_stderr",
            want.prompt_level_strict_acc_stderr,
        );
        // lm-eval reports no stderr for the instruction-level (custom) aggregation.
        assert_eq!(r["inst_level_strict_acc_stderr,none"], "N/A");
        let apply = &res["configs"]["ifeval"]["definition"]["chat"]["apply_chat_template"];
        assert_eq!(apply, &Value::Bool(name == "chat"), "the results say which");
        // Per-sample verdicts: every instruction with strict/loose and why it failed.
        let samples: Vec<Value> = std::fs::read_to_string(newest(&out, "samples_ifeval"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(samples.len(), 541);
        for (s, v) in samples.iter().zip(&verdicts) {
            let ins = s["judge"]["instructions"].as_array().unwrap();
            assert_eq!(ins.len(), v.instructions.len());
            for (a, b) in ins.iter().zip(&v.instructions) {
                assert_eq!(a["id"], b.id.as_str());
                assert_eq!(a["strict"], b.strict);
            }
            assert_eq!(s["reason"].is_null(), v.prompt_strict);
        }
        // Chat mode renders the user turn through the template; raw mode sends the prompt.
        let args0 = samples[0]["arguments"][0][0].as_str().unwrap_or("");
        assert_eq!(
            args0.contains("<|im_start|>user"),
            name == "chat",
            "{args0:.200}"
        );
        // `report` rebuilds the same table from the samples.
        let (code, rep, err) = run(&["report", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(rep, stdout);
    }

    // Against the reference's verdicts on the same responses (rows whose `letter` is not a
    // letter are checked on a random letter there; everything else agrees).
    let mean = |v: &[bool]| v.iter().filter(|&&b| b).count() as f64 / v.len() as f64;
    let dp = (want.prompt_level_strict_acc - mean(&ref_ps)).abs();
    let di = (want.inst_level_strict_acc - mean(&ref_is)).abs();
    println!(
        "prompt_level_strict_acc {:.4} (reference {:.4}), inst_level_strict_acc {:.4} (reference {:.4})",
        want.prompt_level_strict_acc,
        mean(&ref_ps),
        want.inst_level_strict_acc,
        mean(&ref_is)
    );
    assert!(dp <= 2.0 / 541.0 + 1e-12 && di <= 2.0 / ref_is.len() as f64 + 1e-12);
}
