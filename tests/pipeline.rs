//! The one pipeline as a user runs it: any backend behind `model::open` (here the scripted test
//! model and recorded completions) runs every kind of task through the same engine, results
//! schema, report and comparison gate; log-likelihood samples do not depend on the batch size or
//! the thread count.
mod common;
use common::*;
use std::path::{Path, PathBuf};
fn run(args: &[&str]) -> (i32, String, String) {
    hermes(args)
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    files_with_prefix(dir, prefix)
}

fn results(dir: &Path) -> serde_json::Value {
    let f = files(dir, "results_").pop().expect("results file");
    serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()
}

/// A backend without weights (`scripted:`, one file in src/model/) runs multiple-choice and
/// generation tasks through `model::open`, the engine and the CLI unchanged.
#[test]
fn scripted_backend_runs_the_whole_pipeline() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let hub = hub();
    let args = [
        "run",
        "--tasks",
        "arc_easy,winogrande,bigbench_geometric_shapes",
        "--limit",
        "6",
        "--model",
        "scripted:",
        "--data-dir",
        hub.to_str().unwrap(),
        "--output",
        o,
    ];
    let (code, stdout, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("|arc_easy "), "{stdout}");
    let r = results(out.path());
    assert_eq!(r["model"]["identity"]["backend"], "scripted");
    assert_eq!(r["n-samples"]["winogrande"]["effective"], 6);
    assert!(r["results"]["bigbench_geometric_shapes"]["exact_str_match,none"].is_number());
    let samples = read_jsonl(&files(out.path(), "samples_arc_easy_")[0]);
    assert_eq!(samples.len(), 6);
    for s in &samples {
        // the chosen index is recorded as the answer, the metrics agree with it
        let a = s["answer"].as_u64().unwrap() as usize;
        let lls: Vec<f64> = s["filtered_resps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[0].as_f64().unwrap())
            .collect();
        assert_eq!(hermes_eval::metrics::argmax(&lls), a);
    }
    // `report` rebuilds the table from the samples without the model.
    let (code, again, err) = run(&["report", o]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, stdout);
}

/// Function calling through `fc` (an alias of `run --tasks bfcl_simple`) with recorded
/// completions: lm-eval results and samples with the extracted calls and the failure reason,
/// `report` reproduces the table, a rerun is answered from the cache, and `compare` gates the
/// function-calling metric with McNemar's test.
#[test]
fn fc_runs_as_a_task_writes_the_results_schema_and_is_gated() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    // Completions: the first 6 BFCL simple questions, every other one answered correctly.
    let reg = hermes_eval::tasks::Registry::builtin().unwrap();
    let task = reg.task("bfcl_simple").unwrap();
    let docs = task
        .load_docs(
            &hermes_eval::data::DataSource::mirror_only(hub.clone()),
            Some(6),
        )
        .unwrap();
    let write = |name: &str, good: &dyn Fn(usize) -> bool| {
        let lines: Vec<String> = docs
            .iter()
            .map(|d| {
                let completion = match &d.chat.as_ref().unwrap().doc {
                    hermes_eval::doc::ChatDoc::ToolCalls(s) if good(d.id) => {
                        let hermes_eval::fc::FcTarget::Bfcl { ground_truth, .. } = &s.target
                        else {
                            unreachable!()
                        };
                        let (name, args) = ground_truth[0].as_dict().unwrap()[0].clone();
                        let args: Vec<String> = args
                            .as_dict()
                            .unwrap()
                            .iter()
                            .filter_map(|(k, v)| match v {
                                hermes_eval::py::value::PyValue::List(l)
                                    if !l.is_empty() && l[0].as_str() != Some("") =>
                                {
                                    Some(format!(
                                        "\"{}\": {}",
                                        k.as_str().unwrap(),
                                        hermes_eval::py::value::py_json_dumps(&l[0])
                                    ))
                                }
                                _ => None,
                            })
                            .collect();
                        format!(
                            "<tool_call>\n{{\"name\": \"{}\", \"arguments\": {{{}}}}}\n</tool_call>",
                            name.as_str().unwrap(),
                            args.join(", ")
                        )
                    }
                    _ => "I would rather chat.".to_string(),
                };
                serde_json::json!({"task": "bfcl_simple", "doc_id": d.id, "completion": completion})
                    .to_string()
            })
            .collect();
        let p = tmp.path().join(name);
        std::fs::write(&p, lines.join("\n")).unwrap();
        p
    };
    let all = write("all.jsonl", &|_| true);
    let half = write("half.jsonl", &|i| i % 2 == 0);
    let fc = |answers: &Path, out: &Path| {
        let model = format!("replay:{}", answers.display());
        run(&[
            "fc",
            "--dataset",
            "gorilla-llm/Berkeley-Function-Calling-Leaderboard",
            "--limit",
            "6",
            "--model",
            &model,
            "--parser",
            "regex",
            "--data-dir",
            hub.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
    };
    let a = tmp.path().join("a");
    let (code, stdout, err) = fc(&all, &a);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("|bfcl_simple|"), "{stdout}");
    let r = results(&a);
    assert_eq!(r["results"]["bfcl_simple"]["ast_acc,none"], 1.0);
    assert_eq!(r["configs"]["bfcl_simple"]["output_type"], "generate_until");
    let s = read_jsonl(&files(&a, "samples_bfcl_simple_")[0]);
    assert_eq!(s.len(), 6);
    assert!(s[0]["answer"][0]["name"].is_string(), "{}", s[0]);
    assert!(s[0]["chat"]["prompt"].as_str().unwrap().contains("<tools>"));
    assert_eq!(s[0]["judge"]["parser"], "regex");
    // report rebuilds the table from the samples, judging the saved completions again
    let (code, again, err) = run(&["report", a.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, stdout);
    // a rerun answers every generation from the cache
    let (code, _, err) = fc(&all, &a);
    assert_eq!(code, 0, "{err}");
    assert_eq!(results(&a)["config"]["request_cache_hits"], 6);
    let b = tmp.path().join("b");
    let (code, _, err) = fc(&half, &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(results(&b)["results"]["bfcl_simple"]["ast_acc,none"], 0.5);
    let sb = read_jsonl(&files(&b, "samples_bfcl_simple_")[0]);
    assert_eq!(sb[1]["reason"], "no_tool_call", "{}", sb[1]);
    // compare gates the function-calling metric per task
    let (code, stdout, err) = run(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--max-drop",
        "0",
    ]);
    assert!(code == 0 || code == 1, "{err}");
    assert!(
        stdout.contains("bfcl_simple") && stdout.contains("ast_acc"),
        "{stdout}"
    );
    assert!(stdout.to_lowercase().contains("mcnemar"), "{stdout}");
}

/// Recorded completions cannot answer log-likelihood requests: a one-line refusal.
#[test]
fn replay_refuses_loglikelihood_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("a.jsonl");
    std::fs::write(
        &f,
        "{\"task\": \"arc_easy\", \"doc_id\": 0, \"completion\": \"x\"}\n",
    )
    .unwrap();
    let hub = hub();
    let model = format!("replay:{}", f.display());
    let out = tmp.path().join("o");
    let (code, _, err) = run(&[
        "run",
        "--tasks",
        "arc_easy",
        "--limit",
        "1",
        "--model",
        &model,
        "--data-dir",
        hub.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("log-likelihood tasks need a model"), "{err}");
}

/// Log-likelihood samples are byte-identical for --batch-size 1, 7 and 64 and --threads 1 and 2,
/// for the Q4_1 GGUF (llama.cpp's arithmetic) and the f32 export (candle's gemm): every value
/// depends only on its own request, although a call packs the requests of many documents.
#[test]
fn loglikelihood_samples_do_not_depend_on_batch_size_or_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub();
    for (name, model) in [("q4_1", test_gguf()), ("f32", test_f32_dir())] {
        let mut outputs = vec![];
        for (bs, th) in [("1", "2"), ("7", "2"), ("64", "2"), ("64", "1")] {
            let out = tmp.path().join(format!("{name}-b{bs}-t{th}"));
            let (code, _, err) = run(&[
                "run",
                "--tasks",
                "arc_easy,winogrande,hellaswag",
                "--limit",
                "6",
                "--model",
                model.to_str().unwrap(),
                "--batch-size",
                bs,
                "--threads",
                th,
                "--no-cache",
                "--data-dir",
                hub.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ]);
            assert_eq!(code, 0, "{err}");
            let mut texts = vec![];
            for t in ["arc_easy", "winogrande", "hellaswag"] {
                let f = files(&out, &format!("samples_{t}_")).pop().unwrap();
                texts.push(std::fs::read_to_string(f).unwrap());
            }
            outputs.push(((bs, th), texts));
        }
        for (cfg, texts) in &outputs[1..] {
            assert!(
                texts == &outputs[0].1,
                "{name}: samples with batch size / threads {cfg:?} differ from {:?}",
                outputs[0].0
            );
        }
    }
}

/// `run … --card <name>` puts the finished run beside the card (as `report --card`), and a card
/// that does not exist is refused before any work.
#[test]
fn run_with_card_writes_the_side_by_side_table() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let hub = hub();
    let mut args = vec![
        "run",
        "--tasks",
        "arc_easy,arc_challenge",
        "--limit",
        "4",
        "--model",
        "scripted:",
        "--data-dir",
        hub.to_str().unwrap(),
        "--output",
        o,
        "--card",
    ];
    let (code, _, err) = run(&[&args[..], &["no-such-card"]].concat());
    assert_ne!(code, 0);
    assert!(err.contains("no-such-card"), "{err}");
    assert!(files(out.path(), "results_").is_empty(), "nothing ran");
    args.push("hermes-2-pro-mistral-7b");
    let (code, stdout, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("beside the card `hermes-2-pro-mistral-7b`"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(out.path().join("card.md")).unwrap();
    assert!(md.contains("| arc_easy | acc |"), "{md}");
    assert!(md.contains("arc_easy: 4 of 2376 documents"), "{md}");
    assert!(out.path().join("report.html").is_file());
}
