//! Numbers equal the reference harness: per-request log-likelihoods of the first documents of
//! every GPT4All task against lm-evaluation-harness on the f32 model (2e-4) and llama.cpp on the
//! Q4_1 GGUF (0.02 on ≥ 99 % of requests), token ids equal to the reference's.
mod common;
use common::*;
use hermes_eval::model::candle_lm::CandleLm;
use hermes_eval::model::load::{LoadOptions, QuantMode};
use hermes_eval::model::LanguageModel;

const TASKS: &[&str] = &[
    "arc_easy",
    "arc_challenge",
    "boolq",
    "hellaswag",
    "openbookqa",
    "piqa",
    "winogrande",
    "truthfulqa_mc1",
    "truthfulqa_mc2",
];

struct Case {
    task: String,
    doc: usize,
    reqs: Vec<serde_json::Value>,
}

fn cases(docs_per_task: usize) -> Vec<Case> {
    let mut out = vec![];
    for t in TASKS {
        for d in read_jsonl(&shared().join(format!("reference/lm-eval-f32/{t}.jsonl")))
            .into_iter()
            .take(docs_per_task)
        {
            out.push(Case {
                task: t.to_string(),
                doc: d["doc_id"].as_u64().unwrap() as usize,
                reqs: d["requests"].as_array().unwrap().clone(),
            });
        }
    }
    out
}

fn score(m: &mut CandleLm, c: &Case) -> Vec<f64> {
    score_both(m, c).into_iter().map(|l| l.logprob).collect()
}

fn score_both(m: &mut CandleLm, c: &Case) -> Vec<hermes_eval::doc::Loglik> {
    let group = requests(m, c);
    m.loglikelihood(&group).unwrap()
}

/// Each request of the case in a call of its own (no shared prefix, no batch).
fn score_one_by_one(m: &mut CandleLm, c: &Case) -> Vec<f64> {
    requests(m, c)
        .into_iter()
        .map(|r| m.loglikelihood(&[r]).unwrap()[0].logprob)
        .collect()
}

/// The case's requests tokenized as the engine does, checked against the reference's ids.
fn requests(m: &CandleLm, c: &Case) -> Vec<hermes_eval::model::TokenRequest> {
    c.reqs
        .iter()
        .map(|r| {
            let tr = reference_request(m.tokenizer(), r);
            let ids = |k: &str| {
                r[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                tr.context,
                ids("context_ids"),
                "{} doc {} context ids",
                c.task,
                c.doc
            );
            assert_eq!(
                tr.continuation,
                ids("continuation_ids"),
                "{} doc {} continuation ids",
                c.task,
                c.doc
            );
            tr
        })
        .collect()
}

/// Every request of every reference document within `F32_BOUND` of lm-eval's log-likelihood (the
/// shared reference holds 40 documents per task here, 1,400 requests; documents 40–199 are held
/// out and unverified). The float32 log_softmax and sum are torch's bit for bit
/// (`model::torch_sum`), so what is left is the forward pass: candle's and torch's matmuls round
/// differently, ~1e-6 relative on each logit.
///
/// Measured (issue 16): worst |Δ| 1.45e-4 (piqa doc 20, 33 tokens), every task ≤ 1.45e-4; the f64
/// sum of the old code reached 8.40e-4 (piqa doc 29, 109 tokens). 2e-4 is the next round value
/// above worst × 1.3 (1.9e-4), and issue 16's aim.
const F32_BOUND: f64 = 2e-4;

#[test]
fn f32_loglikelihoods_equal_lm_eval() {
    /// One task's worst |Δ| against lm-eval: the torch-f32 sum (what the metrics use) and the f64
    /// sum (`loglik_f64`, the old code's number), each with where it occurred.
    #[derive(Default)]
    struct Worst {
        task: String,
        docs: usize,
        reqs: usize,
        f32: (f64, String),
        f64: (f64, String),
        f32_over_aim: usize,
        f64_over_aim: usize,
    }
    /// Issue 16's aim for the bound.
    const AIM: f64 = 2e-4;
    let mut m = CandleLm::load(test_f32_dir().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let t0 = std::time::Instant::now();
    let (mut n, mut worst, mut worst64) = (0, 0f64, 0f64);
    let mut per_task: Vec<Worst> = vec![];
    let mut fails = vec![];
    for c in cases(usize::MAX) {
        if per_task.last().map(|t| &t.task) != Some(&c.task) {
            per_task.push(Worst {
                task: c.task.clone(),
                ..Default::default()
            });
        }
        let t = per_task.last_mut().unwrap();
        t.docs += 1;
        for (i, (r, got)) in c.reqs.iter().zip(score_both(&mut m, &c)).enumerate() {
            let want = r["loglik"].as_f64().unwrap();
            let d = (got.logprob - want).abs();
            let d64 = (got.logprob_f64.unwrap() - want).abs();
            let at = || {
                let k = r["continuation_ids"].as_array().unwrap().len();
                format!("doc {} req {i}, {k} tokens, {want:.2}", c.doc)
            };
            if d > t.f32.0 {
                t.f32 = (d, at());
            }
            if d64 > t.f64.0 {
                t.f64 = (d64, at());
            }
            t.f32_over_aim += usize::from(d > AIM);
            t.f64_over_aim += usize::from(d64 > AIM);
            t.reqs += 1;
            worst = worst.max(d);
            worst64 = worst64.max(d64);
            if d > F32_BOUND {
                fails.push(format!(
                    "{} doc {}: {} vs lm-eval {want}",
                    c.task, c.doc, got.logprob
                ));
            }
            n += 1;
        }
    }
    eprintln!(
        "| task | docs | requests | worst \\|Δ\\| f64 sum (before) | > {AIM:.0e} | worst \\|Δ\\| torch-f32 sum (after) | > {AIM:.0e} |"
    );
    eprintln!("|---|---|---|---|---|---|---|");
    for t in &per_task {
        eprintln!(
            "| {} | {} | {} | {:.2e} ({}) | {} | {:.2e} ({}) | {} |",
            t.task,
            t.docs,
            t.reqs,
            t.f64.0,
            t.f64.1,
            t.f64_over_aim,
            t.f32.0,
            t.f32.1,
            t.f32_over_aim
        );
    }
    eprintln!(
        "f32: {n} requests in {:.0} s, max |Δ| torch-f32 {worst:.2e} (f64 sums: {worst64:.2e}), bound {F32_BOUND:.0e}",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        fails.is_empty(),
        "{} requests off by > {F32_BOUND}: {fails:#?}",
        fails.len()
    );
}

/// The whole pipeline (mirror → task files → engine → metrics) on the f32 model gives lm-eval's
/// per-document acc / acc_norm on the first 40 documents of every GPT4All task.
#[test]
fn f32_pipeline_metrics_equal_lm_eval() {
    use hermes_eval::{data::DataSource, engine, tasks::Registry};
    let mut m = CandleLm::load(test_f32_dir().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let reg = Registry::builtin().unwrap();
    let data = DataSource::mirror_only(hub());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let chat = hermes_eval::chat::ChatTemplate::chatml("<|im_end|>");
    for t in [
        "arc_easy",
        "arc_challenge",
        "boolq",
        "hellaswag",
        "openbookqa",
        "piqa",
        "winogrande",
    ] {
        let task = reg.task(t).unwrap();
        let refs = read_jsonl(&shared().join(format!("reference/lm-eval-f32/{t}.jsonl")));
        let docs = task.load_docs(&data, Some(refs.len())).unwrap();
        let run = engine::evaluate(
            &mut m,
            task,
            docs,
            &mut engine::RequestCache::disabled(),
            &chat,
            &engine::EngineOptions::default(),
            &stop,
            |_| {},
        )
        .unwrap();
        for (i, r) in refs.iter().enumerate() {
            for (k, v) in r["metrics"].as_object().unwrap() {
                assert_eq!(
                    run.scores[i].metrics[k],
                    v.as_f64().unwrap(),
                    "{t} doc {i} {k}"
                );
            }
        }
    }
}

/// The target: within 0.02 of llama.cpp's Q4_1 log-likelihoods on ≥ 99 % of requests
/// (424 requests, first 12 documents of every reference file). The Q4_1 path reproduces llama.cpp's
/// CPU arithmetic operation by operation (`src/model/ggml.rs`), so in practice every request agrees
/// to ~1e-6.
#[test]
fn q4_1_loglikelihoods_agree_with_llama_cpp() {
    let mut m = CandleLm::load(
        test_gguf().to_str().unwrap(),
        &LoadOptions {
            quant_mode: QuantMode::Native,
            ..Default::default()
        },
    )
    .unwrap();
    let (mut n, mut ok, mut worst) = (0, 0, 0f64);
    for c in cases(12) {
        for (r, got) in c.reqs.iter().zip(score(&mut m, &c)) {
            let Some(want) = r["llamacpp_q4_1"].as_f64() else {
                continue;
            };
            let d = (got - want).abs();
            worst = worst.max(d);
            n += 1;
            if d <= 0.02 {
                ok += 1;
            } else {
                eprintln!("{} doc {}: {got} vs llama.cpp {want}", c.task, c.doc);
            }
        }
    }
    eprintln!("q4_1: {ok}/{n} within 0.02, max |Δ| = {worst:.2e}");
    assert!(n > 300, "too few reference requests: {n}");
    assert!(ok as f64 >= 0.99 * n as f64, "{ok}/{n} within 0.02");
}

/// A quantized request scores exactly the same alone and inside a padded batch.
#[test]
fn q4_1_scores_do_not_depend_on_batching() {
    let mut m = CandleLm::load(test_gguf().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let c = &cases(1)[0]; // arc_easy doc 0: 4 choices of different lengths
    let together = score(&mut m, c);
    let alone = score_one_by_one(&mut m, c);
    assert_eq!(together, alone);
}

/// Exactness guard, quicker than the test above: on the first 3 documents of every reference file
/// (97 requests) every Q4_1 log-likelihood is within 1e-3 of llama.cpp's. Our arithmetic is
/// llama.cpp's bit for bit, so only the final log-softmax summation differs; a rounding change
/// anywhere in the pipeline moves these sums by 0.01–0.6.
#[test]
fn q4_1_loglikelihoods_near_llama_cpp() {
    let mut m = CandleLm::load(test_gguf().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let (mut n, mut sum, mut worst) = (0, 0f64, 0f64);
    for c in cases(3) {
        for (r, got) in c.reqs.iter().zip(score(&mut m, &c)) {
            let want = r["llamacpp_q4_1"].as_f64().unwrap();
            let d = (got - want).abs();
            assert!(
                d <= 1e-3,
                "{} doc {}: {got} vs llama.cpp {want}",
                c.task,
                c.doc
            );
            sum += d;
            worst = worst.max(d);
            n += 1;
        }
    }
    eprintln!(
        "q4_1 vs llama.cpp: mean |Δ| = {:.2e}, max {worst:.2e} over {n} requests",
        sum / n as f64
    );
}
