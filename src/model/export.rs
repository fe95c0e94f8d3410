//! Export a GGUF model as a Hugging Face directory: f32 `model.safetensors` (candle's
//! dequantization, Q/K rows un-permuted back to the rotate-half layout), `config.json`,
//! `tokenizer.json` (built from the GGUF metadata) and `tokenizer_config.json`. This is how the
//! reference f32 model was made from the test GGUF, and how a full-precision baseline of a GGUF
//! is produced for `compare`.
use super::arch::{unpermute_qk, TensorName, GLOBAL_TENSORS, HF_PREFIX, LAYER_TENSORS, OUTPUT};
use super::config::LlamaConfig;
use super::load::read_gguf;
use super::tokenizer;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

pub fn gguf_to_hf(gguf: &Path, out: &Path) -> Result<()> {
    let (ct, mut f) = read_gguf(gguf)?;
    let cfg = LlamaConfig::from_gguf(&ct)?;
    let tok = tokenizer::from_gguf(&ct)?;
    std::fs::create_dir_all(out)?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut load = |name: &str| -> Result<Tensor> {
        Ok(ct
            .tensor(&mut f, name, &Device::Cpu)
            .map_err(|e| Error::file(gguf, format!("tensor `{name}`: {e}")))?
            .dequantize(&Device::Cpu)?)
    };
    let mut put = |t: &TensorName, layer: Option<usize>| -> Result<()> {
        let mut w = load(&t.gguf_name(layer))?;
        if let Some(heads) = t.permute_heads(&cfg) {
            w = unpermute_qk(&w, heads)?;
        }
        tensors.insert(t.hf_name(HF_PREFIX, layer), w);
        Ok(())
    };
    for t in GLOBAL_TENSORS {
        // GGUF has no output head when it is tied to the embeddings.
        if t.gguf != OUTPUT.gguf || ct.tensor_infos.contains_key(&t.gguf_name(None)) {
            put(t, None)?;
        }
    }
    for i in 0..cfg.num_hidden_layers {
        for t in &LAYER_TENSORS {
            put(t, Some(i))?;
        }
    }
    candle_core::safetensors::save(&tensors, out.join("model.safetensors"))?;
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&cfg.to_hf_json())?,
    )?;
    tok.save(out.join("tokenizer.json"), false)
        .map_err(|e| Error::Tokenizer(format!("cannot write tokenizer.json: {e}")))?;
    let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
    let mut tc = serde_json::json!({
        "add_bos_token": false,
        "bos_token": name(cfg.bos_token_id),
        "eos_token": name(cfg.eos_token_ids.first().copied()),
        "model_max_length": cfg.max_position_embeddings,
    });
    if let Some(t) = ct
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
    {
        tc["chat_template"] = t.clone().into();
    }
    std::fs::write(
        out.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&tc)?,
    )?;
    Ok(())
}
