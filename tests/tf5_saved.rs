//! The test model as transformers 5 saves it (config.json with `rope_parameters`, no top-level
//! `rope_theta`: tests/fixtures/configs/smollm2-135m-tf5.json, written by
//! scripts/config_fixtures.py from the `hermes-eval export` directory) scores like the export:
//! within 2e-4 of lm-evaluation-harness on the f32 weights (the fidelity test's `F32_BOUND`;
//! measured 7.6e-5 on these 60 requests). Reading only the top-level key gave RoPE base 10,000
//! instead of 100,000 and up to 17 nats of error.
mod common;
use common::*;
use hermes_eval::model::candle_lm::CandleLm;
use hermes_eval::model::load::LoadOptions;
use hermes_eval::model::LanguageModel;

#[test]
fn transformers_5_config_of_the_test_model_scores_like_lm_eval() {
    let export = test_f32_dir();
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/configs/smollm2-135m-tf5.json"))
            .unwrap(),
    )
    .unwrap();
    let config = &fx["config"];
    assert!(
        config.get("rope_theta").is_none(),
        "a transformers 5 layout"
    );
    assert_eq!(config["rope_parameters"]["rope_theta"], 100000.0);
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        if export.join(f).is_file() {
            std::os::unix::fs::symlink(export.join(f), dir.path().join(f)).unwrap();
        }
    }
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let mut m = CandleLm::load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(m.details()["config"]["rope"]["rope_theta"], 100000.0);
    let (mut n, mut worst) = (0, 0f64);
    for task in ["arc_easy", "hellaswag", "piqa", "winogrande"] {
        for d in read_jsonl(&shared().join(format!("reference/lm-eval-f32/{task}.jsonl")))
            .iter()
            .take(5)
        {
            let reqs = d["requests"].as_array().unwrap();
            let group: Vec<_> = reqs
                .iter()
                .map(|r| reference_request(m.tokenizer(), r))
                .collect();
            for (r, got) in reqs.iter().zip(m.loglikelihood(&group).unwrap()) {
                let want = r["loglik"].as_f64().unwrap();
                worst = worst.max((got.logprob - want).abs());
                assert!(
                    (got.logprob - want).abs() <= 2e-4,
                    "{task} doc {}: {} vs lm-eval {want}",
                    d["doc_id"],
                    got.logprob
                );
                n += 1;
            }
        }
    }
    eprintln!("transformers-5 config: {n} requests, max |Δ| = {worst:.2e}");
}
