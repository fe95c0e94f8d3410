//! SentencePiece's `tokenizer.model` (the `ModelProto` protobuf of sentencepiece_model.proto):
//! the fields llama.cpp's converter reads (pieces with scores and types) and the ones that decide
//! whether llama.cpp's tokenizer can run the model faithfully (model type, byte fallback,
//! normalizer). Unknown fields are skipped on reading; [`SpmModel::to_bytes`] writes a model the
//! sentencepiece library loads (a BPE model with byte fallback and no normalization).
use crate::error::{Error, Result};
use prost::Message;
use std::path::Path;

/// `SentencePiece.Type`, numbered as GGUF's `tokenizer.ggml.token_type` is (llama.cpp copies it).
pub const NORMAL: i32 = 1;
pub const UNKNOWN: i32 = 2;
pub const CONTROL: i32 = 3;
pub const USER_DEFINED: i32 = 4;
pub const UNUSED: i32 = 5;
pub const BYTE: i32 = 6;

/// `TrainerSpec.ModelType`.
pub const MODEL_UNIGRAM: i32 = 1;
pub const MODEL_BPE: i32 = 2;

#[derive(Clone, PartialEq, Message)]
pub struct Piece {
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    /// Default NORMAL.
    #[prost(int32, optional, tag = "3")]
    pub r#type: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TrainerSpec {
    #[prost(int32, optional, tag = "3")]
    pub model_type: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    pub vocab_size: Option<i32>,
    #[prost(bool, optional, tag = "35")]
    pub byte_fallback: Option<bool>,
    #[prost(int32, optional, tag = "40")]
    pub unk_id: Option<i32>,
    #[prost(int32, optional, tag = "41")]
    pub bos_id: Option<i32>,
    #[prost(int32, optional, tag = "42")]
    pub eos_id: Option<i32>,
    #[prost(int32, optional, tag = "43")]
    pub pad_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NormalizerSpec {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub precompiled_charsmap: Option<Vec<u8>>,
    /// Default true.
    #[prost(bool, optional, tag = "3")]
    pub add_dummy_prefix: Option<bool>,
    /// Default true.
    #[prost(bool, optional, tag = "4")]
    pub remove_extra_whitespaces: Option<bool>,
    /// Default true.
    #[prost(bool, optional, tag = "5")]
    pub escape_whitespaces: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SpmModel {
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<Piece>,
    #[prost(message, optional, tag = "2")]
    pub trainer_spec: Option<TrainerSpec>,
    #[prost(message, optional, tag = "3")]
    pub normalizer_spec: Option<NormalizerSpec>,
}

impl SpmModel {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        Self::decode(bytes.as_slice())
            .map_err(|e| Error::file(path, format!("not a SentencePiece model (ModelProto): {e}")))
    }

    /// The model's (piece, score, type) triples, types defaulting to NORMAL.
    pub fn entries(&self) -> impl Iterator<Item = (&str, f32, i32)> {
        self.pieces.iter().map(|p| {
            (
                p.piece.as_deref().unwrap_or_default(),
                p.score.unwrap_or(0.0),
                p.r#type.unwrap_or(NORMAL),
            )
        })
    }

    /// `add_dummy_prefix` (sentencepiece's default: true).
    pub fn add_dummy_prefix(&self) -> bool {
        self.normalizer_spec
            .as_ref()
            .and_then(|n| n.add_dummy_prefix)
            .unwrap_or(true)
    }

    /// Why llama.cpp's SentencePiece tokenizer (score-ordered merges, `▁` for spaces, byte
    /// fallback, no normalization) would not tokenize like this model; `None` when it does.
    pub fn unfaithful(&self) -> Option<String> {
        let t = self.trainer_spec.clone().unwrap_or_default();
        let model_type = t.model_type.unwrap_or(MODEL_UNIGRAM);
        if model_type != MODEL_BPE {
            let name = match model_type {
                MODEL_UNIGRAM => "unigram".to_string(),
                3 => "word".into(),
                4 => "char".into(),
                n => format!("type {n}"),
            };
            return Some(format!(
                "it is a {name} model; llama.cpp's SentencePiece tokenizer merges pieces by score, which is exact only for BPE models"
            ));
        }
        let n = self.normalizer_spec.clone().unwrap_or_default();
        if n.precompiled_charsmap
            .as_ref()
            .is_some_and(|m| !m.is_empty())
        {
            return Some(format!(
                "it normalizes text (`{}` rules), which llama.cpp does not",
                n.name.as_deref().unwrap_or("precompiled")
            ));
        }
        if n.remove_extra_whitespaces.unwrap_or(true) {
            return Some(
                "it removes extra whitespace (normalizer remove_extra_whitespaces), which llama.cpp does not"
                    .into(),
            );
        }
        if !n.escape_whitespaces.unwrap_or(true) {
            return Some("it does not escape spaces as `▁`, which llama.cpp always does".into());
        }
        None
    }

    /// A BPE model with byte fallback and no normalization, as Llama 2 / Mistral ship it.
    pub fn bpe(pieces: Vec<Piece>, add_dummy_prefix: bool, special: [Option<i32>; 4]) -> Self {
        let [unk, bos, eos, pad] = special;
        Self {
            trainer_spec: Some(TrainerSpec {
                model_type: Some(MODEL_BPE),
                vocab_size: Some(pieces.len() as i32),
                byte_fallback: Some(pieces.iter().any(|p| p.r#type == Some(BYTE))),
                unk_id: Some(unk.unwrap_or(0)),
                bos_id: Some(bos.unwrap_or(-1)),
                eos_id: Some(eos.unwrap_or(-1)),
                pad_id: Some(pad.unwrap_or(-1)),
            }),
            normalizer_spec: Some(NormalizerSpec {
                name: Some("identity".into()),
                precompiled_charsmap: Some(vec![]),
                add_dummy_prefix: Some(add_dummy_prefix),
                remove_extra_whitespaces: Some(false),
                escape_whitespaces: Some(true),
            }),
            pieces,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}
