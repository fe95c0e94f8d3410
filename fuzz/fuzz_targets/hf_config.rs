//! config.json and the safetensors header as the loader reads them: the config reader on the
//! text, and the safetensors header (the `safetensors` crate, as candle maps it) followed by our
//! tensor validation against a small config.
#![no_main]
use hermes_eval::model::{config::LlamaConfig, validate};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

const CONFIG: &str = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":8,
"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,
"rms_norm_eps":1e-5,"rope_theta":10000.0,"max_position_embeddings":64,"vocab_size":16,
"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    if first % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            if let Ok(cfg) = LlamaConfig::from_hf_json(text) {
                let _ = validate::hparams(&cfg, &validate::HF_NAMES);
                let _ = cfg.inv_freq();
            }
        }
        return;
    }
    let Ok(st) = safetensors::SafeTensors::deserialize(rest) else { return };
    let cfg = LlamaConfig::from_hf_json(CONFIG).unwrap();
    let found: BTreeMap<String, validate::Found> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, validate::Found { shape: v.shape().to_vec(), dtype: format!("{:?}", v.dtype()) }))
        .collect();
    let _ = validate::hf(&cfg, &found, "model.", first & 2 != 0, (first & 4 != 0).then_some(8));
});
