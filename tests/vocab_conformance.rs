//! Tokenizers rebuilt from GGUF metadata give llama.cpp's ids on llama.cpp's own conformance
//! files (`models/ggml-vocab-<name>.gguf` + `.gguf.inp` / `.gguf.out`, fetched from the PyPI sdist
//! llama-cpp-python==0.3.36 by scripts/fetch-vocab-tests.sh). llama.cpp's test tokenizes with
//! `add_special = false, parse_special = false`: no BOS, control tokens in the text not matched.
mod common;
use common::*;
use hermes_eval::model::load::read_gguf;
use hermes_eval::model::tokenizer::{encode, from_gguf};

fn check(name: &str) {
    let path = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    let (ct, _) = read_gguf(&path).unwrap();
    let mut tok = from_gguf(&ct).unwrap_or_else(|e| panic!("{name}: {e}"));
    tok.set_encode_special_tokens(true);
    let cases = vocab_cases(name);
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
