//! config.json in every layout transformers writes: each fixture under tests/fixtures/configs/
//! was saved by the real transformers 4.x or 5.x (scripts/make-config-fixtures.sh) together with
//! what that transformers reads back from it; our reading must agree field by field.
mod common;
use common::*;
use hermes_eval::model::config::{LlamaConfig, RopeScaling};
use serde_json::{json, Value};

fn fixtures() -> Vec<(String, Value)> {
    let mut out = vec![];
    for major in ["tf4", "tf5"] {
        let dir = repo().join("tests/fixtures/configs").join(major);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        assert!(files.len() >= 8, "{}: too few fixtures", dir.display());
        for f in files {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            out.push((
                format!("{major}/{}", f.file_stem().unwrap().to_string_lossy()),
                v,
            ));
        }
    }
    out
}

fn rope_type(c: &LlamaConfig) -> &'static str {
    c.rope_scaling
        .as_ref()
        .map(|r| r.name())
        .unwrap_or("default")
}

#[test]
fn every_fixture_reads_as_transformers_reads_it() {
    for (name, fx) in fixtures() {
        let text = serde_json::to_string(&fx["config"]).unwrap();
        let c = LlamaConfig::from_hf_json(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = &fx["read"];
        let u = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{name}: {k}")) as usize;
        assert_eq!(c.hidden_size, u("hidden_size"), "{name}");
        assert_eq!(c.intermediate_size, u("intermediate_size"), "{name}");
        assert_eq!(c.num_hidden_layers, u("num_hidden_layers"), "{name}");
        assert_eq!(c.num_attention_heads, u("num_attention_heads"), "{name}");
        assert_eq!(c.num_key_value_heads, u("num_key_value_heads"), "{name}");
        assert_eq!(c.head_dim, u("head_dim"), "{name}");
        assert_eq!(
            c.max_position_embeddings,
            u("max_position_embeddings"),
            "{name}"
        );
        assert_eq!(c.vocab_size, u("vocab_size"), "{name}");
        assert_eq!(
            c.rms_norm_eps,
            r["rms_norm_eps"].as_f64().unwrap(),
            "{name}"
        );
        assert_eq!(c.rope_theta, r["rope_theta"].as_f64().unwrap(), "{name}");
        assert_eq!(
            c.tie_word_embeddings,
            r["tie_word_embeddings"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(
            c.sliding_window,
            r["sliding_window"].as_u64().map(|x| x as usize),
            "{name}: sliding_window"
        );
        assert_eq!(
            c.bos_token_id,
            r["bos_token_id"].as_u64().map(|x| x as u32),
            "{name}"
        );
        let eos: Vec<u32> = r["eos_token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(c.eos_token_ids, eos, "{name}");
        let rope = &r["rope"];
        assert_eq!(rope_type(&c), rope["rope_type"].as_str().unwrap(), "{name}");
        let p = |k: &str| {
            rope[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: rope {k}"))
        };
        match &c.rope_scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) | Some(RopeScaling::Dynamic { factor, .. }) => {
                assert_eq!(*factor, p("factor"), "{name}")
            }
            Some(RopeScaling::Llama3(s)) => {
                assert_eq!(s.factor, p("factor"), "{name}");
                assert_eq!(s.low_freq_factor, p("low_freq_factor"), "{name}");
                assert_eq!(s.high_freq_factor, p("high_freq_factor"), "{name}");
                assert_eq!(
                    s.original_max_position_embeddings as f64,
                    p("original_max_position_embeddings"),
                    "{name}"
                );
            }
            Some(RopeScaling::Yarn(y)) => {
                assert_eq!(
                    y.original_max_position_embeddings as f64,
                    p("original_max_position_embeddings"),
                    "{name}"
                );
                assert_eq!(y.factor, p("factor"), "{name}");
            }
        }
        // Every default we applied is a field the file lacks (a wrapper's text_config is saved
        // as a diff, so it may lack some); a plain config written by the class lacks none; the
        // hand-written ones get transformers' defaults, and the fingerprint lists them.
        let text = fx["config"].get("text_config").unwrap_or(&fx["config"]);
        for k in c.defaults.keys() {
            assert!(
                text.get(k).is_none() && fx["config"].get(k).is_none(),
                "{name}: {k}"
            );
        }
        if name.ends_with("_missing") {
            assert!(c.defaults.contains_key("rope_theta"), "{name}");
        } else if !name.contains("llava") {
            assert!(c.defaults.is_empty(), "{name}: {:?}", c.defaults);
        }
        assert_eq!(
            c.describe()["defaults_applied"],
            Value::Object(c.defaults.clone())
        );
    }
}

#[test]
fn transformers_5_layout_is_read_from_rope_parameters() {
    let fx = fixtures();
    let llama31 = &fx.iter().find(|(n, _)| n == "tf5/llama31").unwrap().1["config"];
    assert!(
        llama31.get("rope_parameters").is_some(),
        "tf5 writes rope_parameters"
    );
    assert!(llama31.get("rope_theta").is_none() && llama31.get("rope_scaling").is_none());
    let c = LlamaConfig::from_hf_json(&llama31.to_string()).unwrap();
    assert_eq!(c.rope_theta, 500000.0);
    assert!(matches!(c.rope_scaling, Some(RopeScaling::Llama3(_))));
    // The same model written by transformers 4 gives the same frequencies.
    let old = &fx.iter().find(|(n, _)| n == "tf4/llama31").unwrap().1["config"];
    assert!(old.get("rope_scaling").is_some());
    let c4 = LlamaConfig::from_hf_json(&old.to_string()).unwrap();
    assert_eq!(c4.inv_freq(), c.inv_freq());
}

fn base() -> Value {
    json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "vocab_size": 100,
        "max_position_embeddings": 256, "rope_theta": 10000.0, "tie_word_embeddings": true})
}

fn err(patch: Value) -> String {
    let mut c = base();
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    LlamaConfig::from_hf_json(&c.to_string())
        .err()
        .unwrap_or_else(|| panic!("{patch} was accepted"))
        .to_string()
}

#[test]
fn uninterpretable_fields_are_errors_naming_them() {
    assert!(
        err(json!({"rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0}}))
            .contains("RoPE type `longrope` is not supported")
    );
    assert!(err(json!({"rope_scaling": {"type": "su", "factor": 2.0}})).contains("`su`"));
    assert!(err(json!({"hidden_size": "64"})).contains("`hidden_size` is \"64\""));
    assert!(err(json!({"rope_theta": [1]})).contains("rope_theta"));
    assert!(
        err(json!({"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}))
            .contains("disagree")
    );
    assert!(err(json!({"hidden_act": "gelu"})).contains("silu"));
    assert!(err(json!({"attention_bias": true})).contains("attention_bias"));
    assert!(
        err(json!({"rope_scaling": {"rope_type": "linear", "factor": 2.0, "mscale": 1.0}}))
            .contains("`rope_scaling.mscale` is not a parameter of RoPE type `linear`")
    );
    assert!(err(json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}})).contains("needs"));
    assert!(err(json!({"rope_scaling": {"rope_type": "linear"}})).contains("factor"));
    assert!(err(json!({"num_key_value_heads": 3})).contains("key/value heads"));
    assert!(
        err(json!({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}))
            .contains("unsupported architecture")
    );
    assert!(err(json!({"torch_dtype": "int8"})).contains("dtype"));
}

#[test]
fn linear_and_yarn_frequencies() {
    let mut c = base();
    c["rope_scaling"] = json!({"rope_type": "linear", "factor": 4.0});
    let lin = LlamaConfig::from_hf_json(&c.to_string()).unwrap();
    let plain = LlamaConfig::from_hf_json(&base().to_string()).unwrap();
    for (a, b) in lin.inv_freq().iter().zip(plain.inv_freq()) {
        assert!((a * 4.0 - b).abs() <= 1e-7 * b.abs());
    }
    // YaRN keeps the highest frequencies, divides the lowest by the factor, and scales cos/sin
    // by 0.1 ln(factor) + 1.
    c["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
    let y = LlamaConfig::from_hf_json(&c.to_string()).unwrap();
    let (yf, pf) = (y.inv_freq(), plain.inv_freq());
    assert_eq!(yf[0], pf[0]);
    let last = pf.len() - 1;
    assert!((yf[last] * 4.0 - pf[last]).abs() <= 1e-7 * pf[last]);
    assert!((y.rope_attention_factor() - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
    assert!(
        y.rope_freq_divisors().is_err(),
        "YaRN has no GGUF rope_freqs form"
    );
}

#[test]
fn mistral_window_missing_vs_null() {
    let mut c = base();
    c["model_type"] = "mistral".into();
    c["architectures"] = json!(["MistralForCausalLM"]);
    let missing = LlamaConfig::from_hf_json(&c.to_string()).unwrap();
    assert_eq!(
        missing.sliding_window,
        Some(4096),
        "MistralConfig's default"
    );
    assert_eq!(missing.defaults["sliding_window"], json!(4096));
    c["sliding_window"] = Value::Null;
    assert_eq!(
        LlamaConfig::from_hf_json(&c.to_string())
            .unwrap()
            .sliding_window,
        None
    );
    // Llama has no sliding window even if a config names one.
    let mut l = base();
    l["sliding_window"] = 16.into();
    assert_eq!(
        LlamaConfig::from_hf_json(&l.to_string())
            .unwrap()
            .sliding_window,
        None
    );
}
