//! Faults keep work (issue 13, item 4): a run killed with SIGKILL at any point resumes to
//! exactly the uninterrupted run, recomputing only what was not yet cached; the request cache
//! skips and counts every line it cannot verify (garbage, wrong fields or types, a torn last
//! line, a key or answer that fails its checksum) and never glues a new record to a torn one;
//! two writers of one output directory are refused with one line naming the holder.
mod common;
use common::*;
use hermes_eval::doc::Loglik;
use hermes_eval::engine::RequestCache;
use hermes_eval::model::{GenOptions, ModelIdentity, TokenRequest};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hermes-eval"))
}

fn spawn(args: &[String]) -> Child {
    bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The newest file of `dir` whose name starts with `prefix`.
fn newest(dir: &Path, prefix: &str) -> PathBuf {
    files_with_prefix(dir, prefix)
        .pop()
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

/// The results JSON without what differs between two runs of the same numbers: the date, the
/// time taken and what the request cache answered or skipped.
fn results(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest(dir, "results_")).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("date");
    let c = o["config"].as_object_mut().unwrap();
    for k in ["elapsed_s", "request_cache_hits", "request_cache_skipped"] {
        c.remove(k);
    }
    v
}

fn config(dir: &Path, key: &str) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest(dir, "results_")).unwrap()).unwrap();
    v["config"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("config.{key}: {}", v["config"]))
}

/// The run's request cache file (one per model).
fn cache_file(dir: &Path) -> Option<PathBuf> {
    let d = dir.join("cache");
    d.is_dir()
        .then(|| files_with_prefix(&d, "loglik-").pop())
        .flatten()
}

/// Complete lines (ending in a newline) of a file, 0 when it does not exist.
fn complete_lines(p: Option<&Path>) -> usize {
    p.and_then(|p| std::fs::read(p).ok())
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// What must be equal between a resumed run and the clean one: samples byte for byte, the
/// results without times and cache counts, the report.
fn outputs(dir: &Path, task: &str) -> (Vec<u8>, serde_json::Value, Vec<u8>) {
    (
        std::fs::read(newest(dir, &format!("samples_{task}_"))).unwrap(),
        results(dir),
        std::fs::read(dir.join("report.md")).unwrap(),
    )
}

/// A small deterministic generator for the kill points (SplitMix64), seeded and printed.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The test: a `--limit 40` HellaSwag run (160 requests, batches of 16) on the Q4_1
/// GGUF is SIGKILLed at 5 random points, each picked as a number of cache lines written
/// (seed in HERMES_EVAL_KILL_SEED, printed); the same command again ends with samples, results
/// and report equal to the uninterrupted run's, answers every request cached before the kill
/// from the cache, and computes every request exactly once over both processes.
#[test]
fn sigkill_at_five_random_points_then_rerun_equals_the_clean_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let clean = tmp.path().join("clean");
    let args = run_args("hellaswag", "40", &test_gguf(), &clean);
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let clean_s = t0.elapsed().as_secs_f64();
    let total = complete_lines(cache_file(&clean).as_deref());
    assert_eq!(total, 160, "40 HellaSwag documents × 4 endings");
    let want = outputs(&clean, "hellaswag");

    let seed: u64 = std::env::var("HERMES_EVAL_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(13);
    let mut rng = SplitMix(seed);
    // A kill point: once at least `n` requests are cached (n = 0: once the run holds its lock,
    // before the data and the model are loaded), then `ms` more milliseconds, so that the kill
    // lands anywhere in a batch (cut short once only the last batch of 16 is left to compute).
    let mut points: Vec<(usize, u64)> = (0..5)
        .map(|_| {
            (
                (rng.next() % (total as u64 - 16)) as usize,
                rng.next() % 1500,
            )
        })
        .collect();
    points.sort();
    eprintln!(
        "kill seed {seed}: kill points (cached requests, then ms) {points:?}; clean run {clean_s:.1}s"
    );
    for (i, &(n, ms)) in points.iter().enumerate() {
        let out = tmp.path().join(format!("kill{i}"));
        let args = run_args("hellaswag", "40", &test_gguf(), &out);
        let t = Instant::now();
        let mut child = spawn(&args);
        let pid = child.id();
        let started = |out: &Path| {
            std::fs::read_to_string(out.join(".lock"))
                .is_ok_and(|s| s.contains(&format!("pid {pid} ")))
        };
        loop {
            if started(&out) && complete_lines(cache_file(&out).as_deref()) >= n {
                break;
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!("the run ended ({st}) before {n} requests were cached");
            }
            assert!(t.elapsed() < Duration::from_secs(600), "no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The delay, cut short when only the last batch is left to compute.
        let reached = Instant::now();
        while reached.elapsed() < Duration::from_millis(ms)
            && complete_lines(cache_file(&out).as_deref()) < total - 16
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let cached = complete_lines(cache_file(&out).as_deref());
        child.kill().unwrap(); // SIGKILL
        let st = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(9),
            "killed by SIGKILL"
        );
        let killed_s = t.elapsed().as_secs_f64();
        // What the killed process left: its cache lines, a stale lock naming it, no outputs.
        let at_kill = complete_lines(cache_file(&out).as_deref());
        assert!(at_kill >= cached);
        assert!(
            at_kill < total,
            "kill at ({n}, {ms}): the run had finished computing"
        );
        assert!(
            std::fs::read_to_string(out.join(".lock"))
                .unwrap()
                .contains(&format!("pid {pid} ")),
            "the stale lock names the killed run"
        );
        assert!(files_with_prefix(&out, "results_").is_empty());

        // The same command again: not blocked by the stale lock, equal to the clean run.
        let t = Instant::now();
        let o = bin().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "rerun after kill at ({n}, {ms}): {err}");
        assert!(!err.contains("panicked"), "{err}");
        let rerun_s = t.elapsed().as_secs_f64();
        let got = outputs(&out, "hellaswag");
        assert!(
            got.0 == want.0,
            "kill at {n}: samples differ from the clean run"
        );
        assert_eq!(
            got.1, want.1,
            "kill at {n}: results differ from the clean run"
        );
        assert!(got.2 == want.2, "kill at {n}: report.md differs");
        let hits = config(&out, "request_cache_hits") as usize;
        let skipped = config(&out, "request_cache_skipped") as usize;
        // Every request cached when the process died is answered from the cache; only those
        // not yet written (in flight or not started) are computed, once.
        assert!(
            hits >= at_kill - skipped,
            "kill at {n}: {hits} hits < {at_kill} cached - {skipped} skipped"
        );
        let after = complete_lines(cache_file(&out).as_deref());
        assert_eq!(
            after - skipped,
            total,
            "kill at {n}: each request computed once over both runs"
        );
        eprintln!(
            "kill {i}: {ms} ms after {n} cached, at {cached} cached requests, {killed_s:.1}s into the run, {at_kill} in the file after death, pid {pid}; rerun {rerun_s:.1}s: {hits} cache hits, {skipped} skipped, {} recomputed; samples, results, report equal",
            total - hits
        );
    }
    eprintln!("total {:.1}s", t0.elapsed().as_secs_f64());
}

/// A second run on the output directory of a running one fails at once with one line naming
/// the directory and the first run's pid; `report` and `merge --output` there are refused too;
/// the first run finishes as if alone.
#[test]
fn a_second_writer_of_the_output_directory_is_refused_while_the_first_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let args = run_args("arc_easy", "20", &test_gguf(), &out);
    let mut first = spawn(&args);
    let pid = first.id();
    // The lock is taken before the data and the model are loaded.
    let t = Instant::now();
    while !std::fs::read_to_string(out.join(".lock"))
        .is_ok_and(|s| s.contains(&format!("pid {pid} ")))
    {
        assert!(t.elapsed() < Duration::from_secs(60), "no lock file");
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused = |args: &[String]| {
        let t = Instant::now();
        let o = bin().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(lines[0].starts_with("hermes-eval: error: "), "{err}");
        assert!(lines[0].contains(out.to_str().unwrap()), "{err}");
        assert!(lines[0].contains(&format!("pid {pid} ")), "{err}");
        (t.elapsed().as_secs_f64(), lines[0].to_string())
    };
    let (secs, line) = refused(&args);
    eprintln!("second run refused in {secs:.3}s: {line}");
    assert!(secs < 5.0, "refused at once, not after loading: {secs}s");
    refused(&["report".into(), out.to_str().unwrap().into()]);
    let shard = tmp.path().join("no-such-shard");
    refused(&[
        "merge".into(),
        shard.to_str().unwrap().into(),
        "--output".into(),
        out.to_str().unwrap().into(),
    ]);
    assert_eq!(
        first.try_wait().unwrap(),
        None,
        "the first run was still running while the others were refused"
    );
    let o = first.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // It finished as if alone: one results file, 20 samples, 80 cache records, all distinct.
    assert_eq!(files_with_prefix(&out, "results_").len(), 1);
    assert_eq!(
        read_jsonl(&newest(&out, "samples_arc_easy_")).len(),
        20,
        "20 documents"
    );
    let cache = read_jsonl(&cache_file(&out).unwrap());
    let keys: std::collections::HashSet<&str> =
        cache.iter().map(|l| l["k"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), cache.len(), "no request written twice");
    // Once it has ended, its lock blocks nobody: the same command answers from the cache.
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(config(&out, "request_cache_hits") as usize, cache.len());
}

fn identity(weights: &str) -> ModelIdentity {
    ModelIdentity {
        backend: "candle".into(),
        format: "gguf".into(),
        weights_sha256: vec![weights.into()],
        compute: "f32".into(),
        tokenizer_sha256: "t".into(),
    }
}

fn req(i: u32) -> TokenRequest {
    TokenRequest {
        context: vec![1, 2, i],
        continuation: vec![i + 7],
    }
}

fn ll(i: u32) -> Loglik {
    Loglik {
        logprob: -0.1 - i as f64 / 3.0,
        is_greedy: i.is_multiple_of(2),
        logprob_f64: (!i.is_multiple_of(3)).then(|| -0.1 - i as f64 / 3.0 + 1e-9),
    }
}

fn gen_opts() -> GenOptions {
    GenOptions {
        max_new_tokens: 8,
        stop_tokens: vec![2],
        ..Default::default()
    }
}

/// A cache of 6 log-likelihoods and one generation in `dir`; returns its file's lines.
fn write_cache(dir: &Path, id: &ModelIdentity) -> (PathBuf, Vec<String>) {
    let mut c = RequestCache::open(dir, id).unwrap();
    for i in 0..6 {
        c.insert(&req(i), ll(i)).unwrap();
    }
    c.insert_gen(&[5, 6, 7], &gen_opts(), vec![9, 10, 2])
        .unwrap();
    let path = c.path().unwrap().to_path_buf();
    drop(c);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text.lines().map(String::from).collect())
}

/// Open the cache and check which requests it answers: `(skipped, loaded, answered ids)`.
fn reopen(dir: &Path, id: &ModelIdentity) -> (usize, usize, Vec<u32>, bool) {
    let c = RequestCache::open(dir, id).unwrap();
    let answered: Vec<u32> = (0..6)
        .filter(|&i| match c.get(&req(i)) {
            Some(l) => {
                assert_eq!(l, ll(i), "a loaded answer is the stored one, bit for bit");
                true
            }
            None => false,
        })
        .collect();
    let gen = c.get_gen(&[5, 6, 7], &gen_opts());
    if let Some(g) = &gen {
        assert_eq!(g, &vec![9, 10, 2]);
    }
    (c.skipped, c.loaded, answered, gen.is_some())
}

#[test]
fn a_clean_cache_loads_everything_and_nothing_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let id = identity("a");
    let (_, lines) = write_cache(tmp.path(), &id);
    assert_eq!(lines.len(), 7);
    assert_eq!(
        reopen(tmp.path(), &id),
        (0, 7, vec![0, 1, 2, 3, 4, 5], true)
    );
    // A missing file is an empty cache; an empty file too.
    let empty = tmp.path().join("empty");
    assert_eq!(reopen(&empty, &id), (0, 0, vec![], false));
    assert_eq!(reopen(&empty, &id), (0, 0, vec![], false));
}

/// Garbage in the middle — bytes that are not UTF-8, text that is not JSON, blank lines, a
/// JSON value that is no record — is skipped and counted; the records around it load.
#[test]
fn garbage_lines_in_the_middle_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let id = identity("a");
    let (path, lines) = write_cache(tmp.path(), &id);
    let mut bytes = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        bytes.extend_from_slice(l.as_bytes());
        bytes.push(b'\n');
        if i == 2 {
            for g in [
                &b"\xff\xfe\x00garbage"[..],
                b"not json at all {",
                b"",
                b"   ",
                b"[1, 2, 3]",
                b"null",
                b"{}",
            ] {
                bytes.extend_from_slice(g);
                bytes.push(b'\n');
            }
        }
    }
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(
        reopen(tmp.path(), &id),
        (7, 7, vec![0, 1, 2, 3, 4, 5], true)
    );
}

/// Valid JSON with wrong fields or types is no record: each such line is skipped, counted,
/// and its request not answered (computed again), never taken with a default.
#[test]
fn valid_json_with_wrong_fields_or_types_is_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let id = identity("a");
    let (path, lines) = write_cache(tmp.path(), &id);
    let v = |i: usize| -> serde_json::Value { serde_json::from_str(&lines[i]).unwrap() };
    let mut bad: Vec<serde_json::Value> = vec![];
    // request 0: lp as a string; 1: g as a number; 2: an unknown field; 3: no checksum;
    // 4: lp64 as a string; 5: lp missing; the generation: a negative token id, one past u32.
    let mut x = v(0);
    x["lp"] = x["lp"].to_string().into();
    bad.push(x);
    let mut x = v(1);
    x["g"] = 1.into();
    bad.push(x);
    let mut x = v(2);
    x["extra"] = true.into();
    bad.push(x);
    let mut x = v(3);
    x.as_object_mut().unwrap().remove("c");
    bad.push(x);
    let mut x = v(4);
    x["lp64"] = "-1.5".into();
    bad.push(x);
    let mut x = v(5);
    x.as_object_mut().unwrap().remove("lp");
    bad.push(x);
    let mut x = v(6);
    x["gen"] = serde_json::json!([9, -10, 2]);
    bad.push(x);
    let mut x = v(6);
    x["gen"] = serde_json::json!([9, 4294967296u64, 2]);
    bad.push(x);
    let mut x = v(6);
    x["gen"] = serde_json::json!([9, 10.5, 2]);
    bad.push(x);
    let mut x = v(6);
    x["k"] = 12.into();
    bad.push(x);
    let text: String = bad.iter().map(|b| format!("{b}\n")).collect();
    std::fs::write(&path, text).unwrap();
    assert_eq!(reopen(tmp.path(), &id), (10, 0, vec![], false));
}

/// A line whose key or answer does not match its checksum — another key, a changed number, a
/// record of another model's cache, a key that is not 32 hex digits — is skipped and counted.
#[test]
fn a_line_whose_key_does_not_match_is_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let id = identity("a");
    let (path, lines) = write_cache(tmp.path(), &id);
    let v = |i: usize| -> serde_json::Value { serde_json::from_str(&lines[i]).unwrap() };
    // Another model's cache holds the same requests with other checksums.
    let other = tmp.path().join("other");
    let (_, other_lines) = write_cache(&other, &identity("b"));
    let mut out = vec![];
    // 0: key of request 0 replaced by request 1's (an answer filed under another request).
    let mut x = v(0);
    x["k"] = v(1)["k"].clone();
    out.push(x.to_string());
    // 1: its number changed by one ulp.
    let mut x = v(1);
    x["lp"] = (f64::from_bits(x["lp"].as_f64().unwrap().to_bits() + 1)).into();
    out.push(x.to_string());
    // 2: the other model's record of request 2.
    out.push(other_lines[2].clone());
    // 3: an uppercase key (not the form the engine writes).
    let mut x = v(3);
    x["k"] = x["k"].as_str().unwrap().to_uppercase().into();
    out.push(x.to_string());
    // 4: a short key.
    let mut x = v(4);
    x["k"] = x["k"].as_str().unwrap()[..30].into();
    out.push(x.to_string());
    // 5 stays good; the generation's tokens changed.
    out.push(lines[5].clone());
    let mut x = v(6);
    x["gen"] = serde_json::json!([9, 11, 2]);
    out.push(x.to_string());
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
    assert_eq!(reopen(tmp.path(), &id), (6, 1, vec![5], false));
}

/// A torn last line (a kill mid-write) is skipped and counted, and the next record is written
/// on a line of its own: it loads on the next open, the fragment is still skipped.
#[test]
fn a_torn_last_line_is_skipped_and_the_next_record_starts_a_new_line() {
    let tmp = tempfile::tempdir().unwrap();
    let id = identity("a");
    let (path, lines) = write_cache(tmp.path(), &id);
    // Request 5's record cut in the middle of its number; the generation line dropped.
    let torn = &lines[5][..lines[5].find("\"lp\":").unwrap() + 9];
    let text = lines[..5].join("\n") + "\n" + torn;
    std::fs::write(&path, &text).unwrap();
    {
        let mut c = RequestCache::open(tmp.path(), &id).unwrap();
        assert_eq!((c.skipped, c.loaded), (1, 5));
        assert!(c.get(&req(5)).is_none(), "a torn record is not trusted");
        c.insert(&req(5), ll(5)).unwrap();
    }
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(
        after.starts_with(&(text.clone() + "\n{")),
        "the new record starts on a new line: {after}"
    );
    assert_eq!(
        reopen(tmp.path(), &id),
        (1, 6, vec![0, 1, 2, 3, 4, 5], false)
    );
    // Torn inside a multi-byte character, and torn with no newline in the file at all.
    for cut in [
        b"{\"k\":\"\xc3".to_vec(),
        lines[0].as_bytes()[..10].to_vec(),
    ] {
        std::fs::write(&path, &cut).unwrap();
        let mut c = RequestCache::open(tmp.path(), &id).unwrap();
        assert_eq!((c.skipped, c.loaded), (1, 0));
        c.insert(&req(0), ll(0)).unwrap();
        drop(c);
        assert_eq!(reopen(tmp.path(), &id), (1, 1, vec![0], false));
    }
}

/// End to end: a run's cache with a garbage line, a wrong-typed line, a line whose key does not
/// match and a torn last line; the same command again says on stderr and in the results how
/// many lines it skipped, recomputes only the torn request and writes the same samples.
#[test]
fn a_damaged_cache_is_reported_and_the_rerun_equals_the_first_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let args = run_args("arc_easy", "8", &test_gguf(), &out);
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = outputs(&out, "arc_easy");
    assert_eq!(config(&out, "request_cache_skipped"), 0);
    let path = cache_file(&out).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    let v = |i: usize| -> serde_json::Value { serde_json::from_str(lines[i]).unwrap() };
    let mut bad_key = v(1);
    bad_key["k"] = "0".repeat(32).into();
    let mut wrong_type = v(2);
    wrong_type["lp"] = wrong_type["lp"].to_string().into();
    let mut damaged: Vec<u8> = vec![];
    for l in &lines[..3] {
        damaged.extend_from_slice(format!("{l}\n").as_bytes());
    }
    damaged.extend_from_slice(b"\x00garbage \xff{\"k\"\n");
    damaged.extend_from_slice(format!("{bad_key}\n{wrong_type}\n").as_bytes());
    for l in &lines[3..n - 1] {
        damaged.extend_from_slice(format!("{l}\n").as_bytes());
    }
    damaged.extend_from_slice(&lines[n - 1].as_bytes()[..lines[n - 1].len() / 2]);
    std::fs::write(&path, &damaged).unwrap();

    let o = bin().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let said = format!("skipped 4 of {} lines", n + 3);
    assert!(
        err.lines()
            .any(|l| l.starts_with("request cache ") && l.contains(&said)),
        "stderr says `{said}`: {err}"
    );
    assert_eq!(config(&out, "request_cache_skipped"), 4);
    assert_eq!(config(&out, "request_cache_hits") as usize, n - 1);
    let got = outputs(&out, "arc_easy");
    assert!(got.0 == want.0, "samples equal the first run's");
    assert_eq!(got.1, want.1);
    // The recomputed record follows the torn fragment on a line of its own.
    let after = std::fs::read(&path).unwrap();
    assert!(after.starts_with(&damaged) && after[damaged.len()] == b'\n');
    assert_eq!(after.iter().filter(|&&b| b == b'\n').count(), n + 4);
}
