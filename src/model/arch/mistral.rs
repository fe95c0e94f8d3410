//! Mistral (`MistralForCausalLM`, GGUF `mistral`): Llama's layer with a sliding attention window.
use super::{Arch, TypeDefaults};

pub const MISTRAL: Arch = Arch {
    model_type: "mistral",
    hf_class: "MistralForCausalLM",
    gguf: "mistral",
    // transformers' `MistralConfig.__init__` (identical in 4.x and 5.x).
    defaults: TypeDefaults {
        vocab_size: 32000,
        hidden_size: 4096,
        intermediate_size: 14336,
        num_hidden_layers: 32,
        num_attention_heads: 32,
        num_key_value_heads: Some(8),
        max_position_embeddings: 4096 * 32,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        sliding_window: Some(4096),
        bos_token_id: 1,
        eos_token_id: 2,
    },
    sliding_window: true,
};
