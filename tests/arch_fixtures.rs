//! The real architectures' features against transformers: tiny randomly initialised models
//! saved by transformers 5 (tests/fixtures/arch/, made by scripts/arch_fixtures.py with torch)
//! and the per-position log-probabilities transformers computed (f32, eager attention).
//! Covered: Mistral with a sliding window (8) shorter than the sequence (40), GQA 8:1, untied
//! heads, a vocabulary with added tokens beyond the base one, Llama 3.1 `llama3` RoPE scaling,
//! YaRN and linear scaling.
mod common;
use common::*;
use hermes_eval::model::candle_lm::CandleLm;
use hermes_eval::model::load::LoadOptions;
use hermes_eval::model::{LanguageModel, TokenRequest};

fn check(name: &str) {
    let dir = repo().join("tests/fixtures/arch").join(name);
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let ids: Vec<u32> = want["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let lps: Vec<f64> = want["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let mut m = CandleLm::load(dir.to_str().unwrap(), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // One request per position: context ids[..=t], continuation ids[t+1].
    let group: Vec<TokenRequest> = (0..ids.len() - 1)
        .map(|t| TokenRequest {
            context: ids[..=t].to_vec(),
            continuation: vec![ids[t + 1]],
        })
        .collect();
    let got = m.loglikelihood(&group).unwrap();
    let mut worst = 0f64;
    for (t, (g, w)) in got.iter().zip(&lps).enumerate() {
        worst = worst.max((g.logprob - w).abs());
        assert!(
            (g.logprob - w).abs() <= 1e-4,
            "{name} position {t}: {} vs transformers {w}",
            g.logprob
        );
    }
    // The whole continuation at once (one forward, no shared-prefix cache) agrees too.
    let whole = m
        .loglikelihood(&[TokenRequest {
            context: ids[..1].to_vec(),
            continuation: ids[1..].to_vec(),
        }])
        .unwrap()[0]
        .logprob;
    let sum: f64 = lps.iter().sum();
    assert!((whole - sum).abs() <= 1e-3, "{name}: {whole} vs {sum}");
    eprintln!("{name}: {} positions, max |Δ| = {worst:.2e}", lps.len());
}

#[test]
fn mistral_sliding_window_gqa_8_to_1_untied_added_tokens() {
    check("mistral_window_gqa8");
    let dir = repo().join("tests/fixtures/arch/mistral_window_gqa8");
    let m = CandleLm::load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(m.llama.cfg.sliding_window, Some(8));
    assert_eq!(
        m.llama.cfg.num_attention_heads / m.llama.cfg.num_key_value_heads,
        8
    );
    assert!(!m.llama.cfg.tie_word_embeddings);
    // Added tokens beyond the 256 base ids are matched in text.
    let ids = hermes_eval::model::tokenizer::encode(m.tokenizer(), "a<|added_3|>b").unwrap();
    assert_eq!(ids, [97, 259, 98]);
}

#[test]
fn llama31_rope_scaling() {
    check("llama31_rope");
}

#[test]
fn yarn_rope_scaling() {
    check("llama_yarn");
}

#[test]
fn linear_rope_scaling() {
    check("llama_linear");
}
