//! The request-cache reader on any file contents: every line it cannot verify is skipped, the
//! rest trusted only with a good checksum.
#![no_main]
use hermes_eval::engine::RequestCache;
use hermes_eval::model::ModelIdentity;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn identity() -> ModelIdentity {
    ModelIdentity {
        backend: "candle".into(),
        format: "gguf".into(),
        weights_sha256: vec!["00".repeat(32)],
        compute: "fuzz".into(),
        tokenizer_sha256: "11".repeat(32),
    }
}

fuzz_target!(|data: &[u8]| {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hermes-fuzz-cache-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    let key = identity().cache_key();
    std::fs::write(dir.join(format!("loglik-{}.jsonl", &key[..16])), data).unwrap();
    let _ = RequestCache::open(dir, &identity());
});
