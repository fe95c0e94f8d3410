//! Llama (`LlamaForCausalLM`, GGUF `llama`).
use super::{Arch, TypeDefaults};

pub const LLAMA: Arch = Arch {
    model_type: "llama",
    hf_class: "LlamaForCausalLM",
    gguf: "llama",
    // transformers' `LlamaConfig.__init__` (identical in 4.x and 5.x).
    defaults: TypeDefaults {
        vocab_size: 32000,
        hidden_size: 4096,
        intermediate_size: 11008,
        num_hidden_layers: 32,
        num_attention_heads: 32,
        num_key_value_heads: None,
        max_position_embeddings: 2048,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        sliding_window: None,
        bos_token_id: 1,
        eos_token_id: 2,
    },
    sliding_window: false,
};
