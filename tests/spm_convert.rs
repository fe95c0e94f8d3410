//! `export` and `quantize` of SentencePiece models (Llama 2 / Mistral: `tokenizer.ggml.model =
//! llama`), end to end from the CLI, on llama.cpp's own `llama-spm` conformance vocabulary (the
//! Llama 2 tokenizer, fetched by scripts/fetch-vocab-tests.sh) inside a tiny Mistral-shaped model
//! with Hermes-style added tokens (ChatML control tokens, a user-defined `<tool_call>`):
//! GGUF → `export` → HF directory (tokenizer.json, tokenizer.model, tokenizer_config.json) →
//! `quantize` → GGUF. Every llama-spm case must still give llama.cpp's ids at each step.
mod common;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::*;
use gguf_file::Value;
use hermes_eval::convert::convert_hf;
use hermes_eval::model::candle_lm::CandleLm;
use hermes_eval::model::load::{read_gguf, LoadOptions};
use hermes_eval::model::spm_model::{self, SpmModel};
use hermes_eval::model::tokenizer::{self, encode, from_gguf};
use hermes_eval::model::{LanguageModel, TokenRequest};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const HIDDEN: usize = 64;
const FF: usize = 128;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
/// Hermes 2 Pro-style tokens after the 32,000 Llama pieces.
const ADDED: [(&str, i32); 3] = [
    ("<|im_start|>", spm_model::CONTROL),
    ("<|im_end|>", spm_model::CONTROL),
    ("<tool_call>", spm_model::USER_DEFINED),
];
const CHATML: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
const CHAT_TEXT: &str =
    "<|im_start|>user\nWhat is 2+2? <tool_call>{\"x\": 1}</tool_call><|im_end|>\n<|im_start|>assistant\n4<|im_end|>";

fn lcg(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * 0.2
        })
        .collect()
}

fn llama_spm() -> PathBuf {
    vocab_dir().join("ggml-vocab-llama-spm.gguf")
}

/// The tiny model: llama-spm's tokenizer metadata plus the added tokens and a chat template,
/// random f32 weights (untied head, GQA 2:1, a Mistral sliding window).
fn tiny_gguf() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let root = repo().join("target/test-models/tiny-spm");
        let out = root.join("tiny-spm.gguf");
        if out.is_file() {
            return out;
        }
        let (src, _) = read_gguf(&llama_spm()).unwrap();
        let mut md: Vec<(String, Value)> = src
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in md.iter_mut() {
            let Value::Array(a) = v else { continue };
            for (t, ty) in ADDED {
                match k.as_str() {
                    "tokenizer.ggml.tokens" => a.push(Value::String(t.into())),
                    "tokenizer.ggml.scores" => a.push(Value::F32(-1000.0)),
                    "tokenizer.ggml.token_type" => a.push(Value::I32(ty)),
                    _ => {}
                }
            }
        }
        let vocab = 32000 + ADDED.len();
        let u = |x: usize| Value::U32(x as u32);
        md.extend([
            ("general.architecture".into(), Value::String("llama".into())),
            ("general.name".into(), Value::String("tiny-spm".into())),
            ("llama.context_length".into(), u(256)),
            ("llama.embedding_length".into(), u(HIDDEN)),
            ("llama.block_count".into(), u(LAYERS)),
            ("llama.feed_forward_length".into(), u(FF)),
            ("llama.attention.head_count".into(), u(HEADS)),
            ("llama.attention.head_count_kv".into(), u(KV_HEADS)),
            ("llama.rope.freq_base".into(), Value::F32(10000.0)),
            (
                "llama.attention.layer_norm_rms_epsilon".into(),
                Value::F32(1e-5),
            ),
            ("llama.rope.dimension_count".into(), u(HIDDEN / HEADS)),
            ("llama.vocab_size".into(), u(vocab)),
            ("llama.attention.sliding_window".into(), u(16)),
            (
                "tokenizer.chat_template".into(),
                Value::String(CHATML.into()),
            ),
        ]);
        let kv = KV_HEADS * HIDDEN / HEADS;
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            ("token_embd.weight".into(), vec![vocab, HIDDEN]),
            ("output_norm.weight".into(), vec![HIDDEN]),
            ("output.weight".into(), vec![vocab, HIDDEN]),
        ];
        for i in 0..LAYERS {
            for (n, s) in [
                ("attn_norm", vec![HIDDEN]),
                ("ffn_norm", vec![HIDDEN]),
                ("attn_q", vec![HIDDEN, HIDDEN]),
                ("attn_k", vec![kv, HIDDEN]),
                ("attn_v", vec![kv, HIDDEN]),
                ("attn_output", vec![HIDDEN, HIDDEN]),
                ("ffn_gate", vec![FF, HIDDEN]),
                ("ffn_up", vec![FF, HIDDEN]),
                ("ffn_down", vec![HIDDEN, FF]),
            ] {
                shapes.push((format!("blk.{i}.{n}.weight"), s));
            }
        }
        let ts: Vec<(String, QTensor)> = shapes
            .iter()
            .enumerate()
            .map(|(i, (n, s))| {
                let mut v = lcg(s.iter().product(), i as u64 + 7);
                if s.len() == 1 {
                    v.iter_mut().for_each(|x| *x += 1.0);
                }
                let t = Tensor::from_vec(v, s.as_slice(), &Device::Cpu).unwrap();
                (n.clone(), QTensor::quantize(&t, GgmlDType::F32).unwrap())
            })
            .collect();
        std::fs::create_dir_all(&root).unwrap();
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
        let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let ts: Vec<(&str, &QTensor)> = ts.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut w, &md, &ts).unwrap();
        drop(w);
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
    .clone()
}

fn cli_ok(args: &[&str]) -> String {
    let (code, out, err) = hermes(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// `hermes-eval export` of the tiny GGUF (once per test binary).
fn exported() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        // This run's directories (a previous run's are removed).
        let run = repo().join("target/test-models/tiny-spm/run");
        let _ = std::fs::remove_dir_all(&run);
        let dir = run.join("hf");
        cli_ok(&[
            "export",
            tiny_gguf().to_str().unwrap(),
            dir.to_str().unwrap(),
        ]);
        dir
    })
    .clone()
}

/// A copy of the export (files linked) without `drop`, with `edit` applied to tokenizer.json.
fn variant(name: &str, drop: &[&str], edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let src = exported();
    let dir = src.with_file_name(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let f = e.unwrap().file_name();
        let f = f.to_str().unwrap();
        if !drop.contains(&f) && f != "tokenizer.json" {
            std::os::unix::fs::symlink(src.join(f), dir.join(f)).unwrap();
        }
    }
    let mut tj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    edit(&mut tj);
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    dir
}

fn quantize(dir: &Path) -> PathBuf {
    let out = dir.join("re.q8_0.gguf");
    cli_ok(&[
        "quantize",
        dir.to_str().unwrap(),
        "--to",
        "q8_0",
        "--output",
        out.to_str().unwrap(),
    ]);
    out
}

/// The export re-converted: from tokenizer.model (what convert_hf_to_gguf.py reads first).
fn requantized() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| quantize(&exported())).clone()
}

/// The export re-converted from tokenizer.json alone.
fn requantized_json_only() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| quantize(&variant("json-only", &["tokenizer.model"], |_| {})))
        .clone()
}

/// The tokenizer.json as newer transformers write Llama / Mistral ones (`legacy: false`):
/// no normalizer, a Metaspace pre-tokenizer that prepends `▁` to the first section only.
fn metaspace(tj: &mut serde_json::Value) {
    tj["normalizer"] = serde_json::Value::Null;
    tj["pre_tokenizer"] = serde_json::json!({"type": "Metaspace", "replacement": "\u{2581}",
        "prepend_scheme": "first", "split": false});
}

fn requantized_metaspace() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| quantize(&variant("metaspace", &["tokenizer.model"], metaspace)))
        .clone()
}

/// Every llama-spm case through `tok` with llama.cpp's test settings (no BOS, control tokens in
/// the text not matched): the cases that differ from llama.cpp's ids.
fn conformance_failures(tok: &tokenizers::Tokenizer) -> Vec<String> {
    let mut tok = tok.clone();
    tok.set_encode_special_tokens(true);
    let cases = vocab_cases("llama-spm");
    assert_eq!(cases.len(), 46);
    cases
        .iter()
        .filter_map(|(text, want)| {
            let got = encode(&tok, text).unwrap();
            (&got != want).then(|| format!("{text:?}: got {got:?}, llama.cpp {want:?}"))
        })
        .collect()
}

fn gguf_tokenizer(path: &Path) -> tokenizers::Tokenizer {
    from_gguf(&read_gguf(path).unwrap().0).unwrap()
}

/// `re` (a re-converted GGUF) gives llama.cpp's ids on every llama-spm case and tokenizes the
/// ChatML check text as `orig` does.
fn assert_tokenizes_like_the_original(orig: &Path, re: &Path) {
    let tok = gguf_tokenizer(re);
    let bad = conformance_failures(&tok);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert_eq!(
        encode(&tok, CHAT_TEXT).unwrap(),
        encode(&gguf_tokenizer(orig), CHAT_TEXT).unwrap()
    );
}

fn md(path: &Path, key: &str) -> String {
    let (ct, _) = read_gguf(path).unwrap();
    ct.metadata
        .get(key)
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "<missing>".into())
}

#[test]
fn the_tiny_gguf_itself_tokenizes_like_llama_cpp() {
    let tok = gguf_tokenizer(&tiny_gguf());
    let bad = conformance_failures(&tok);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let ids = encode(&tok, CHAT_TEXT).unwrap();
    for id in [32000, 32001, 32002] {
        assert!(ids.contains(&id), "{id} not in {ids:?}");
    }
}

#[test]
fn export_writes_tokenizer_files_that_encode_like_the_gguf() {
    let dir = exported();
    let hf = tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let bad = conformance_failures(&hf);
    assert!(
        bad.is_empty(),
        "exported tokenizer.json:\n{}",
        bad.join("\n")
    );
    // Special tokens in the text are matched as in the GGUF (llama.cpp's parse_special).
    let gguf = gguf_tokenizer(&tiny_gguf());
    assert_eq!(
        encode(&hf, CHAT_TEXT).unwrap(),
        encode(&gguf, CHAT_TEXT).unwrap()
    );
    let tc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(tc["add_bos_token"], true, "{tc}");
    assert_eq!(tc["add_eos_token"], false);
    assert_eq!(tc["bos_token"], "<s>");
    assert_eq!(tc["eos_token"], "</s>");
    assert_eq!(tc["unk_token"], "<unk>");
    assert_eq!(tc["chat_template"], CHATML);
    // tokenizer.model carries the scores tokenizer.json has no place for.
    let m = SpmModel::read(&dir.join("tokenizer.model")).unwrap();
    assert_eq!(m.unfaithful(), None);
    let (ct, _) = read_gguf(&tiny_gguf()).unwrap();
    let scores = ct.metadata["tokenizer.ggml.scores"].to_vec().unwrap();
    let tokens = ct.metadata["tokenizer.ggml.tokens"].to_vec().unwrap();
    assert_eq!(m.pieces.len(), tokens.len());
    for ((p, s), t) in m.entries().zip(scores).zip(tokens) {
        assert_eq!(p.0, t.to_string().unwrap());
        assert_eq!(p.1, s.to_f32().unwrap());
    }
}

/// Keys whose values `quantize` of the export must give back exactly.
const SAME: [&str; 10] = [
    "tokenizer.ggml.model",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
    "tokenizer.chat_template",
    "general.architecture",
];

#[test]
fn quantize_from_tokenizer_model_gives_back_the_gguf_vocabulary() {
    let (orig, re) = (tiny_gguf(), requantized());
    for k in SAME.iter().chain(&["tokenizer.ggml.scores"]) {
        assert_eq!(md(&re, k), md(&orig, k), "{k}");
    }
    assert_eq!(md(&re, "tokenizer.ggml.pre"), "String(\"default\")");
    assert_tokenizes_like_the_original(&orig, &re);
}

#[test]
fn quantize_from_tokenizer_json_alone_tokenizes_like_llama_cpp() {
    let (orig, re) = (tiny_gguf(), requantized_json_only());
    for k in SAME {
        assert_eq!(md(&re, k), md(&orig, k), "{k}");
    }
    // Scores come from the merge ranks (tokenizer.json has none): not llama-spm's numbers, but
    // their order tokenizes the same.
    assert_ne!(
        md(&re, "tokenizer.ggml.scores"),
        md(&orig, "tokenizer.ggml.scores")
    );
    assert_tokenizes_like_the_original(&orig, &re);
}

#[test]
fn quantize_of_a_metaspace_tokenizer_json_follows_llama_cpp() {
    let (orig, re) = (tiny_gguf(), requantized_metaspace());
    for k in SAME {
        assert_eq!(md(&re, k), md(&orig, k), "{k}");
    }
    let tok = gguf_tokenizer(&re);
    let bad = conformance_failures(&tok);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // Where that tokenizer.json and llama.cpp disagree (README): text after a special token,
    // and text that starts with a space, get no extra `▁` from Metaspace(prepend_scheme=first).
    let hf = tokenizer::from_file(&re.with_file_name("tokenizer.json")).unwrap();
    let piece = |t: &tokenizers::Tokenizer, text: &str| -> Vec<String> {
        encode(t, text)
            .unwrap()
            .iter()
            .map(|&i| t.id_to_token(i).unwrap())
            .collect()
    };
    assert_eq!(piece(&tok, "<|im_start|>user"), ["<|im_start|>", "▁user"]);
    assert_eq!(piece(&hf, "<|im_start|>user"), ["<|im_start|>", "user"]);
    assert_eq!(piece(&tok, " Hi"), ["▁", "▁Hi"]);
    assert_eq!(piece(&hf, " Hi"), ["▁Hi"]);
    assert_eq!(piece(&tok, "Hello world"), piece(&hf, "Hello world"));
}

#[test]
fn weights_survive_export_and_quantize() {
    let reqs = [
        TokenRequest {
            context: vec![1, 15043, 3186, 29892],
            continuation: vec![920, 526, 366, 29973],
        },
        TokenRequest {
            context: vec![32000, 1404, 13, 29906, 29974],
            continuation: vec![29906, 32001],
        },
    ];
    let score = |p: &Path| -> Vec<f64> {
        let mut m = CandleLm::load(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
        m.loglikelihood(&reqs)
            .unwrap()
            .iter()
            .map(|l| l.logprob)
            .collect()
    };
    let base = score(&tiny_gguf());
    let dir = exported();
    let f32_gguf = dir.join("re.f32.gguf");
    convert_hf(&dir, &f32_gguf, GgmlDType::F32).unwrap();
    for (what, got) in [
        ("export", score(&dir)),
        ("re-converted F32", score(&f32_gguf)),
    ] {
        for (a, b) in got.iter().zip(&base) {
            assert!((a - b).abs() <= 1e-4, "{what}: {got:?} vs {base:?}");
        }
    }
}

fn refused(dir: &Path, needle: &str) {
    let out = dir.join("refused.gguf");
    let (code, _, err) = hermes(&[
        "quantize",
        dir.to_str().unwrap(),
        "--to",
        "q8_0",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{} accepted", dir.display());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(!out.exists());
}

#[test]
fn what_llama_cpp_cannot_run_faithfully_is_refused_in_one_line() {
    refused(
        &variant("split", &["tokenizer.model"], |tj| {
            metaspace(tj);
            tj["pre_tokenizer"]["split"] = true.into();
        }),
        "split: true",
    );
    refused(
        &variant("nfkc", &["tokenizer.model"], |tj| {
            tj["normalizer"] = serde_json::json!({"type": "NFKC"});
        }),
        "normalizer `NFKC`",
    );
    refused(
        &variant("unigram", &["tokenizer.model"], |tj| {
            let vocab: Vec<serde_json::Value> = (0..32003)
                .map(|i| serde_json::json!([format!("t{i}"), -(i as f64)]))
                .collect();
            tj["model"] = serde_json::json!({"type": "Unigram", "unk_id": 0,
                "vocab": vocab, "byte_fallback": true});
        }),
        "Unigram",
    );
    // tokenizer.model files llama.cpp's tokenizer would not follow.
    let m = SpmModel::read(&exported().join("tokenizer.model")).unwrap();
    let with_model = |name: &str, edit: &dyn Fn(&mut SpmModel)| {
        let dir = variant(name, &["tokenizer.model"], |_| {});
        let mut m = m.clone();
        edit(&mut m);
        std::fs::write(dir.join("tokenizer.model"), m.to_bytes()).unwrap();
        dir
    };
    refused(
        &with_model("spm-unigram", &|m| {
            m.trainer_spec.as_mut().unwrap().model_type = Some(spm_model::MODEL_UNIGRAM)
        }),
        "unigram model",
    );
    refused(
        &with_model("spm-ws", &|m| {
            m.normalizer_spec.as_mut().unwrap().remove_extra_whitespaces = Some(true)
        }),
        "removes extra whitespace",
    );
    refused(
        &with_model("spm-nfkc", &|m| {
            let n = m.normalizer_spec.as_mut().unwrap();
            n.name = Some("nmt_nfkc".into());
            n.precompiled_charsmap = Some(vec![1, 2, 3]);
        }),
        "nmt_nfkc",
    );
    // A tokenizer.json that does not tokenize like the tokenizer.model beside it.
    refused(
        &variant("disagree", &[], |tj| {
            tj["model"]["merges"].as_array_mut().unwrap().truncate(1000);
        }),
        "disagrees",
    );
}

/// llama.cpp itself (llama-cpp-python's libllama, `vocab_only`) on the re-converted GGUFs.
#[test]
#[ignore = "needs llama-cpp-python in $HERMES_EVAL_LLAMA_CPP_DIR/venv (scripts/build-llama-cpp.sh): cargo test --release --test spm_convert -- --ignored"]
fn llama_cpp_itself_tokenizes_the_reconverted_ggufs_like_its_conformance_file() {
    let dir = std::env::var_os("HERMES_EVAL_LLAMA_CPP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hermes-eval/llama-cpp")
        });
    let want: Vec<Vec<u32>> = vocab_cases("llama-spm").into_iter().map(|c| c.1).collect();
    let inp = llama_spm().with_extension("gguf.inp");
    for gguf in [
        tiny_gguf(),
        requantized(),
        requantized_json_only(),
        requantized_metaspace(),
    ] {
        let mut cmd = std::process::Command::new(dir.join("venv/bin/python"));
        if dir.join("lib/libllama.so").is_file() {
            // The script's one libllama build, shared with llama-server (no bundled copy).
            cmd.env("LLAMA_CPP_LIB_PATH", dir.join("lib"));
        }
        let o = cmd
            .arg(repo().join("scripts/llama_cpp_tokenize.py"))
            .args([&gguf, &inp])
            .output()
            .expect("run llama-cpp-python");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got: Vec<Vec<u32>> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert_eq!(got, want, "{}", gguf.display());
        eprintln!("llama.cpp on {}: {} cases equal", gguf.display(), got.len());
    }
}
