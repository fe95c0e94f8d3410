//! Tokenizers rebuilt from GGUF metadata give llama.cpp's ids on llama.cpp's own conformance
//! files (`models/ggml-vocab-<name>.gguf` + `.gguf.inp` / `.gguf.out`, fetched from the PyPI sdist
//! llama-cpp-python==0.3.36 by scripts/fetch-vocab-tests.sh). llama.cpp's test tokenizes with
//! `add_special = false, parse_special = false`: no BOS, control tokens in the text not matched.
mod common;
use common::*;
use hermes_eval::model::load::read_gguf;
use hermes_eval::model::tokenizer::{encode, from_gguf};
use std::path::PathBuf;
use std::sync::OnceLock;

fn vocab_dir() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("HERMES_EVAL_VOCAB_TESTS") {
            return PathBuf::from(p);
        }
        let out = std::process::Command::new(repo().join("scripts/fetch-vocab-tests.sh"))
            .output()
            .expect("run scripts/fetch-vocab-tests.sh");
        assert!(
            out.status.success(),
            "fetch-vocab-tests failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// The cases of one vocabulary, split as llama.cpp's test-tokenizer-0 splits them.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let base = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).unwrap();
    // As test-tokenizer-0.cpp: a separator at the very end starts no further case.
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if inp.ends_with("\n__ggml_vocab_test__\n") {
        texts.pop();
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len(), "{name}: .inp and .out disagree");
    texts.into_iter().map(String::from).zip(ids).collect()
}

fn check(name: &str) {
    let path = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    let (ct, _) = read_gguf(&path).unwrap();
    let mut tok = from_gguf(&ct).unwrap_or_else(|e| panic!("{name}: {e}"));
    tok.set_encode_special_tokens(true);
    let cases = cases(name);
    let mut bad = vec![];
    for (text, want) in &cases {
        let got = encode(&tok, text).unwrap();
        if &got != want {
            bad.push(format!("{text:?}: got {got:?}, llama.cpp {want:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
    eprintln!("{name}: {} cases equal llama.cpp", cases.len());
}

#[test]
fn llama_spm() {
    check("llama-spm");
}

#[test]
fn llama_bpe() {
    check("llama-bpe");
}

#[test]
fn gpt_2() {
    check("gpt-2");
}

#[test]
fn qwen2() {
    check("qwen2");
}

#[test]
fn phi_3_spm() {
    check("phi-3");
}

#[test]
fn starcoder() {
    check("starcoder");
}

#[test]
fn refact() {
    check("refact");
}

#[test]
fn command_r() {
    check("command-r");
}

#[test]
fn unsupported_vocabularies_are_one_line_errors_naming_them() {
    for (name, says) in [
        ("bert-bge", "`bert`"),
        ("deepseek-coder", "`deepseek-coder`"),
        ("falcon", "`falcon`"),
    ] {
        let (ct, _) = read_gguf(&vocab_dir().join(format!("ggml-vocab-{name}.gguf"))).unwrap();
        let e = from_gguf(&ct)
            .err()
            .unwrap_or_else(|| panic!("{name} accepted"))
            .to_string();
        assert!(e.contains(says) && !e.contains('\n'), "{name}: {e}");
    }
}
