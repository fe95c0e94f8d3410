//! Export a GGUF model as a Hugging Face directory: f32 `model.safetensors` (candle's
//! dequantization, Q/K rows un-permuted back to the rotate-half layout), `config.json`,
//! `tokenizer.json` (built from the GGUF metadata) and `tokenizer_config.json`. This is how the
//! reference f32 model was made from the test GGUF, and how a full-precision baseline of a GGUF
//! is produced for `compare`.
use super::arch::{unpermute_qk, TensorName, GLOBAL_TENSORS, HF_PREFIX, LAYER_TENSORS, OUTPUT};
use super::config::LlamaConfig;
use super::load::read_gguf;
use super::spm_model::{Piece, SpmModel};
use super::tokenizer;
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
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
    let spm = super::config::md_str(&ct, "tokenizer.ggml.model").is_ok_and(|m| m == "llama");
    let md_bool = |k: &str| ct.metadata.get(k).and_then(|v| v.to_bool().ok());
    let md_id = |k: &str| super::config::md_usize(&ct, k).ok().map(|i| i as u32);
    // llama.cpp's defaults: BOS added for SentencePiece vocabularies, not for byte-level BPE.
    let mut tc = serde_json::json!({
        "add_bos_token": md_bool("tokenizer.ggml.add_bos_token").unwrap_or(spm),
        "bos_token": name(cfg.bos_token_id),
        "eos_token": name(cfg.eos_token_ids.first().copied()),
        "model_max_length": cfg.max_position_embeddings,
    });
    if let Some(b) = md_bool("tokenizer.ggml.add_eos_token") {
        tc["add_eos_token"] = b.into();
    }
    if let Some(u) = name(md_id("tokenizer.ggml.unknown_token_id")) {
        tc["unk_token"] = u.into();
    }
    if let Some(p) = name(md_id("tokenizer.ggml.padding_token_id")) {
        tc["pad_token"] = p.into();
    }
    if spm {
        if let Some(b) = md_bool("tokenizer.ggml.add_space_prefix") {
            tc["add_prefix_space"] = b.into();
        }
        write_spm_model(&ct, &out.join("tokenizer.model"))?;
    }
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

/// A SentencePiece vocabulary's `tokenizer.model`: the GGUF's pieces with their scores and types,
/// so that a converter reading it (llama.cpp's, or `quantize`) gets the scores back exactly;
/// tokenizer.json has no place for them.
fn write_spm_model(ct: &gguf_file::Content, path: &Path) -> Result<()> {
    let arr = |k: &str| -> Result<Vec<gguf_file::Value>> {
        ct.metadata
            .get(k)
            .and_then(|v| v.to_vec().ok().cloned())
            .ok_or_else(|| Error::Tokenizer(format!("GGUF metadata key `{k}` is missing")))
    };
    let tokens = arr("tokenizer.ggml.tokens")?;
    let scores = arr("tokenizer.ggml.scores")?;
    let types = arr("tokenizer.ggml.token_type")?;
    let pieces = tokens
        .iter()
        .zip(&scores)
        .zip(&types)
        .map(|((t, s), ty)| -> Result<Piece> {
            let bad =
                |k: &str| Error::Tokenizer(format!("`tokenizer.ggml.{k}` holds an invalid value"));
            Ok(Piece {
                piece: Some(t.to_string().map_err(|_| bad("tokens"))?.clone()),
                score: Some(s.to_f32().map_err(|_| bad("scores"))?),
                r#type: Some(
                    ty.to_i32()
                        .or_else(|_| ty.to_u32().map(|v| v as i32))
                        .map_err(|_| bad("token_type"))?,
                ),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let id = |k: &str| super::config::md_usize(ct, k).ok().map(|i| i as i32);
    let prefix = ct
        .metadata
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(true);
    let m = SpmModel::bpe(
        pieces,
        prefix,
        [
            id("tokenizer.ggml.unknown_token_id"),
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
            id("tokenizer.ggml.padding_token_id"),
        ],
    );
    std::fs::write(path, m.to_bytes())?;
    Ok(())
}
