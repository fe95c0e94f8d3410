//! Export a GGUF model as a Hugging Face directory: f32 `model.safetensors` (candle's
//! dequantization, Q/K rows un-permuted back to the rotate-half layout), `config.json`,
//! `tokenizer.json` (built from the GGUF metadata) and `tokenizer_config.json`. This is how the
//! reference f32 model was made from the test GGUF, and how a full-precision baseline of a GGUF
//! is produced for `compare`.
use super::config::LlamaConfig;
use super::load::read_gguf;
use super::tokenizer;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Undo llama.cpp's Q/K permutation: GGUF rows are `(heads, head_dim/2, 2)`, HF rows `(heads, 2, head_dim/2)`.
fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let hd = rows / heads;
    Ok(w.reshape((heads, hd / 2, 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?)
}

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
    tensors.insert("model.embed_tokens.weight".into(), load("token_embd.weight")?);
    tensors.insert("model.norm.weight".into(), load("output_norm.weight")?);
    if ct.tensor_infos.contains_key("output.weight") {
        tensors.insert("lm_head.weight".into(), load("output.weight")?);
    }
    for i in 0..cfg.num_hidden_layers {
        let g = |s: &str| format!("blk.{i}.{s}.weight");
        let h = |s: &str| format!("model.layers.{i}.{s}.weight");
        tensors.insert(h("input_layernorm"), load(&g("attn_norm"))?);
        tensors.insert(h("post_attention_layernorm"), load(&g("ffn_norm"))?);
        tensors.insert(h("self_attn.q_proj"), unpermute(&load(&g("attn_q"))?, cfg.num_attention_heads)?);
        tensors.insert(h("self_attn.k_proj"), unpermute(&load(&g("attn_k"))?, cfg.num_key_value_heads)?);
        tensors.insert(h("self_attn.v_proj"), load(&g("attn_v"))?);
        tensors.insert(h("self_attn.o_proj"), load(&g("attn_output"))?);
        tensors.insert(h("mlp.gate_proj"), load(&g("ffn_gate"))?);
        tensors.insert(h("mlp.up_proj"), load(&g("ffn_up"))?);
        tensors.insert(h("mlp.down_proj"), load(&g("ffn_down"))?);
    }
    candle_core::safetensors::save(&tensors, out.join("model.safetensors"))?;
    std::fs::write(out.join("config.json"), serde_json::to_string_pretty(&cfg.to_hf_json())?)?;
    tok.save(out.join("tokenizer.json"), false)
        .map_err(|e| Error::Tokenizer(format!("cannot write tokenizer.json: {e}")))?;
    let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
    let mut tc = serde_json::json!({
        "add_bos_token": false,
        "bos_token": name(cfg.bos_token_id),
        "eos_token": name(cfg.eos_token_ids.first().copied()),
        "model_max_length": cfg.max_position_embeddings,
    });
    if let Some(t) = ct.metadata.get("tokenizer.chat_template").and_then(|v| v.to_string().ok()) {
        tc["chat_template"] = t.clone().into();
    }
    std::fs::write(out.join("tokenizer_config.json"), serde_json::to_string_pretty(&tc)?)?;
    Ok(())
}
