//! The GGUF header reader, the hyper-parameter reader and the model validator, then the
//! tokenizer rebuilt from the same metadata: on any bytes, an error or a model, never a panic,
//! an abort or a hang.
#![no_main]
use hermes_eval::model::{config::LlamaConfig, gguf, tokenizer, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ct) = gguf::parse_bytes(data) {
        if let Ok(cfg) = LlamaConfig::from_gguf(&ct) {
            let _ = validate::gguf(&ct, &cfg);
        }
        if let Ok(tok) = tokenizer::from_gguf(&ct) {
            let _ = tok.encode("Hello, world! 123 <|im_start|>", false);
        }
    }
});
