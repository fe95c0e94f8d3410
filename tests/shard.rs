//! `run --shard i/n` + `merge` as a user runs them: three shards of the real test model merge
//! into exactly what one unsharded run writes (samples, results, tables), and a merge with a
//! missing or duplicated shard, or shards of different plans, is refused with one line.
mod common;
use common::*;
use std::path::{Path, PathBuf};

fn run(args: &[&str]) -> (i32, String, String) {
    hermes(args)
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    files_with_prefix(dir, prefix)
}

/// The samples files of a run by task (file names carry timestamps).
fn samples(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files(dir, "samples_")
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let task = name.rsplit_once('_').unwrap().0.to_string();
            (task, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// The results JSON without what differs between two identical runs: the date and the time taken.
fn results(dir: &Path) -> serde_json::Value {
    let f = files(dir, "results_").pop().expect("results file");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("date");
    o["config"].as_object_mut().unwrap().remove("elapsed_s");
    v
}

fn base_args<'a>(model: &'a str, hub: &'a str, tasks: &'a str, limit: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--tasks",
        tasks,
        "--limit",
        limit,
        "--model",
        model,
        "--data-dir",
        hub,
        "--no-cache",
    ]
}

/// Multiple-choice (ARC, TruthfulQA mc1+mc2) and generation (BigBench geometric_shapes) tasks on
/// the real GGUF: shards 0/3, 1/3, 2/3 then `merge` equal the unsharded run byte for byte.
#[test]
fn three_shards_merge_into_the_unsharded_run() {
    let gguf = test_gguf();
    let hub = hub();
    let (m, h) = (gguf.to_str().unwrap(), hub.to_str().unwrap());
    let tasks = "arc_easy,truthfulqa_mc,bigbench_geometric_shapes";
    let tmp = tempfile::tempdir().unwrap();
    let dir = |n: &str| tmp.path().join(n);
    let full = dir("full");
    let mut args = base_args(m, h, tasks, "6");
    args.extend(["--output", full.to_str().unwrap()]);
    let (code, full_table, err) = run(&args);
    assert_eq!(code, 0, "{err}");

    let mut shard_dirs = vec![];
    let mut counts = vec![];
    for i in 0..3 {
        let d = dir(&format!("shard{i}"));
        let spec = format!("{i}/3");
        let mut args = base_args(m, h, tasks, "6");
        // Shards may run with another batch size (another machine): the numbers are the same.
        // Shard 0's settings are what the merged results record.
        let bs = ["16", "1", "5"][i];
        args.extend([
            "--output",
            d.to_str().unwrap(),
            "--shard",
            &spec,
            "--batch-size",
            bs,
        ]);
        let (code, stdout, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        assert!(
            !stdout.contains("|Task|"),
            "a shard prints no table: {stdout}"
        );
        assert!(d.join("shard.json").is_file());
        assert!(
            files(&d, "results_").is_empty(),
            "a shard writes no results"
        );
        let man: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("shard.json")).unwrap()).unwrap();
        counts.push(
            man["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["docs"].as_array().unwrap().len())
                .collect::<Vec<_>>(),
        );
        shard_dirs.push(d);
    }
    // Whole documents, every one in exactly one shard, each shard some of every task.
    for t in 0..3 {
        assert_eq!(counts.iter().map(|c| c[t]).sum::<usize>(), 6, "{counts:?}");
        assert!(counts.iter().all(|c| c[t] >= 2), "{counts:?}");
    }

    let merged = dir("merged");
    let sd: Vec<&str> = shard_dirs.iter().map(|d| d.to_str().unwrap()).collect();
    // Any order of the shard directories.
    let (code, table, err) = run(&[
        "merge",
        sd[2],
        sd[0],
        sd[1],
        "--output",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        table, full_table,
        "the merged tables equal the unsharded run's"
    );
    assert_eq!(samples(&merged), samples(&full), "samples byte for byte");
    assert_eq!(results(&merged), results(&full));
    assert_eq!(
        std::fs::read(merged.join("report.md")).unwrap(),
        std::fs::read(full.join("report.md")).unwrap()
    );
    // `report` on the merged directory rebuilds the same tables.
    let (code, rep, err) = run(&["report", merged.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(rep, full_table);
}

/// A merge needs every shard of one plan exactly once.
#[test]
fn merge_refuses_missing_duplicated_and_foreign_shards() {
    let hub = hub();
    let h = hub.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tasks = "arc_easy,bigbench_geometric_shapes";
    let shard = |name: &str, spec: &str, limit: &str| -> String {
        let d = tmp.path().join(name);
        let mut args = base_args("scripted:", h, tasks, limit);
        args.extend(["--output", d.to_str().unwrap(), "--shard", spec]);
        let (code, _, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        d.to_str().unwrap().to_string()
    };
    let s0 = shard("s0", "0/3", "9");
    let s1 = shard("s1", "1/3", "9");
    let s2 = shard("s2", "2/3", "9");
    let other = shard("other2", "2/3", "8");
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let merge = |dirs: &[&str]| {
        let mut args = vec!["merge"];
        args.extend(dirs);
        args.extend(["--output", o]);
        run(&args)
    };
    let one_line = |err: &str| {
        let l: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(l.len(), 1, "{err}");
        l[0].to_string()
    };
    let (code, _, err) = merge(&[&s0, &s1]);
    assert_ne!(code, 0);
    assert!(one_line(&err).contains("missing shard(s) 2/3"), "{err}");
    let (code, _, err) = merge(&[&s0, &s1, &s1, &s2]);
    assert_ne!(code, 0);
    assert!(one_line(&err).contains("shard 1/3 given twice"), "{err}");
    let (code, _, err) = merge(&[&s0, &s1, &other]);
    assert_ne!(code, 0);
    assert!(one_line(&err).contains("of another plan"), "{err}");
    // Not a shard directory at all.
    let (code, _, err) = merge(&[&s0, &s1, h]);
    assert_ne!(code, 0);
    assert!(one_line(&err).contains("no shard manifest"), "{err}");
    assert!(
        !out.join("report.md").exists(),
        "nothing written on refusal"
    );
    // The complete set merges.
    let (code, _, err) = merge(&[&s0, &s1, &s2]);
    assert_eq!(code, 0, "{err}");
    assert!(out.join("report.md").is_file());
    // A bad --shard is refused by the parser.
    let (code, _, err) = run(&[
        "run",
        "--tasks",
        "arc_easy",
        "--model",
        "scripted:",
        "--shard",
        "3/3",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("expected i/n"), "{err}");
}
