//! Generation on the real test model: batched decoding gives each prompt exactly what it gets
//! alone, stops where it is told to, and sampling is reproducible from its seed.
mod common;
use common::*;
use hermes_eval::model::candle_lm::CandleLm;
use hermes_eval::model::load::LoadOptions;
use hermes_eval::model::{GenOptions, GenPrompt, LanguageModel, TokenRequest};

fn model() -> CandleLm {
    CandleLm::load(test_gguf().to_str().unwrap(), &LoadOptions::default()).unwrap()
}

fn encode(m: &CandleLm, s: &str) -> Vec<u32> {
    m.tokenizer.encode(s, false).unwrap().get_ids().to_vec()
}

/// Generation requests of the given prompts.
fn gp(ps: &[Vec<u32>]) -> Vec<GenPrompt> {
    ps.iter()
        .enumerate()
        .map(|(i, p)| GenPrompt {
            ids: p.clone(),
            task: "test".into(),
            doc_id: i,
        })
        .collect()
}

fn prompts(m: &CandleLm) -> Vec<Vec<u32>> {
    [
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "The quick brown fox",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nList three colours, one per line.<|im_end|>\n<|im_start|>assistant\n",
        "1, 2, 3,",
    ]
    .iter()
    .map(|s| encode(m, s))
    .collect()
}

#[test]
fn batched_generation_equals_one_prompt_at_a_time() {
    let mut m = model();
    let ps = prompts(&m);
    let opts = GenOptions {
        max_new_tokens: 24,
        stop_tokens: vec![m.tokenizer.token_to_id("<|im_end|>").unwrap()],
        ..Default::default()
    };
    let alone: Vec<Vec<u32>> = ps
        .iter()
        .map(|p| {
            m.generate(&gp(std::slice::from_ref(p)), &opts)
                .unwrap()
                .remove(0)
        })
        .collect();
    let batched = m.generate(&gp(&ps), &opts).unwrap();
    assert_eq!(batched, alone);
    // Decoding step by step gives what one forward pass over prompt + output ranks first at
    // every position: the output is greedy under the scoring path too.
    let reqs: Vec<TokenRequest> = ps
        .iter()
        .zip(&alone)
        .map(|(p, g)| TokenRequest {
            context: p.clone(),
            continuation: g.clone(),
        })
        .collect();
    for (r, l) in reqs.iter().zip(m.loglikelihood(&reqs).unwrap()) {
        assert!(
            l.is_greedy,
            "{:?} is not greedy under forward()",
            r.continuation
        );
    }
    // Something was generated, and nothing past the limit.
    assert!(
        alone.iter().all(|g| !g.is_empty() && g.len() <= 24),
        "{alone:?}"
    );
    // The chat prompt is answered and ends at <|im_end|> before the limit.
    let answer = m.tokenizer.decode(&alone[0], false).unwrap();
    assert!(answer.contains("Paris"), "{answer:?}");
}

#[test]
fn generation_stops_at_stop_strings_and_token_limit() {
    let mut m = model();
    let p = encode(&m, "1, 2, 3,");
    let free = GenOptions {
        max_new_tokens: 12,
        ..Default::default()
    };
    let g = m
        .generate(&gp(std::slice::from_ref(&p)), &free)
        .unwrap()
        .remove(0);
    assert_eq!(g.len(), 12);
    let text = m.tokenizer.decode(&g, false).unwrap();
    // Stop as soon as the decoded continuation contains the stop string.
    let stop = text.trim_start().chars().next().unwrap().to_string();
    let opts = GenOptions {
        stop_strings: vec![stop.clone()],
        ..free
    };
    let short = m
        .generate(&gp(std::slice::from_ref(&p)), &opts)
        .unwrap()
        .remove(0);
    assert!(short.len() < g.len(), "{short:?} vs {g:?}");
    assert_eq!(short[..], g[..short.len()]);
    assert!(m.tokenizer.decode(&short, false).unwrap().contains(&stop));
}

#[test]
fn sampling_is_reproducible_from_the_seed() {
    let mut m = model();
    let ps = prompts(&m);
    let opts = |seed| GenOptions {
        max_new_tokens: 16,
        temperature: 1.0,
        seed,
        ..Default::default()
    };
    let a = m.generate(&gp(&ps), &opts(7)).unwrap();
    let b = m.generate(&gp(&ps), &opts(7)).unwrap();
    assert_eq!(a, b);
    // Independent of batching: the last prompt alone gives the same sample.
    let alone = m.generate(&gp(&ps[3..]), &opts(7)).unwrap();
    assert_eq!(alone[0], a[3]);
    let c = m.generate(&gp(&ps), &opts(8)).unwrap();
    assert_ne!(a, c, "another seed gives other samples");
    let greedy = m
        .generate(
            &gp(&ps),
            &GenOptions {
                max_new_tokens: 16,
                ..Default::default()
            },
        )
        .unwrap();
    assert_ne!(
        a, greedy,
        "temperature 1 samples, it does not decode greedily"
    );
}

/// The context window bounds a generation whatever `max_gen_toks` says: the test GGUF with
/// `llama.context_length` rewritten to 24 generates 24 − prompt tokens (no stop tokens, so only
/// the bound ends it) when asked for 1,000.
#[test]
fn generation_stops_at_the_context_window() {
    use candle_core::quantized::gguf_file;
    let src = test_gguf();
    let mut f = std::fs::File::open(&src).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let dev = candle_core::Device::Cpu;
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = content
        .tensor_infos
        .keys()
        .map(|n| (n.clone(), content.tensor(&mut f, n, &dev).unwrap()))
        .collect();
    let mut md = content.metadata.clone();
    md.insert("llama.context_length".into(), gguf_file::Value::U32(24));
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("ctx24.gguf");
    let mdv: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tv: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    gguf_file::write(&mut std::fs::File::create(&small).unwrap(), &mdv, &tv).unwrap();
    let mut m = CandleLm::load(small.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(m.max_length(), 24);
    let p = encode(&m, "1, 2, 3,");
    let opts = GenOptions {
        max_new_tokens: 1000,
        ..Default::default()
    };
    // The prompt is cut to one token (24 − 1000 leaves no room), then fills the window.
    let g = m
        .generate(&gp(std::slice::from_ref(&p)), &opts)
        .unwrap()
        .remove(0);
    assert_eq!(g.len(), 23);
    // A real task: the prompt is cut to leave max_gen_toks of room (24 − 20 = 4 tokens) and
    // all 20 tokens fit.
    assert!(p.len() > 4);
    let opts = GenOptions {
        max_new_tokens: 20,
        ..opts
    };
    let g = m
        .generate(&gp(std::slice::from_ref(&p)), &opts)
        .unwrap()
        .remove(0);
    assert_eq!(g.len(), 20);
}
