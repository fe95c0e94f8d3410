//! `quantize_gguf` on a small GGUF written here (random tensors, a few metadata keys).
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use hermes_eval::quantize::quantize_gguf;
use std::path::Path;
mod common;

fn write_small_gguf(path: &Path) {
    let dev = &Device::Cpu;
    let t = |shape: &[usize], seed: u64| {
        // Deterministic pseudo-random values in [-1, 1).
        let n: usize = shape.iter().product();
        let mut s = seed;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, dev).unwrap()
    };
    let tensors = [
        (
            "token_embd.weight",
            QTensor::quantize(&t(&[32, 256], 1), GgmlDType::F16).unwrap(),
        ),
        (
            "blk.0.attn_q.weight",
            QTensor::quantize(&t(&[256, 256], 2), GgmlDType::Q4_1).unwrap(),
        ),
        (
            "blk.0.ffn_up.weight",
            QTensor::quantize(&t(&[512, 256], 3), GgmlDType::F32).unwrap(),
        ),
        (
            "blk.0.attn_norm.weight",
            QTensor::quantize(&t(&[256], 4), GgmlDType::F32).unwrap(),
        ),
        // Row length 64: k-quant targets fall back to q5_0 / q5_1 / q8_0.
        (
            "blk.0.attn_k.weight",
            QTensor::quantize(&t(&[8, 64], 6), GgmlDType::F16).unwrap(),
        ),
        // Row length 48: not a multiple of 32 or 256, kept as stored.
        (
            "odd.weight",
            QTensor::quantize(&t(&[4, 48], 5), GgmlDType::F16).unwrap(),
        ),
    ];
    let md = [
        (
            "general.architecture",
            gguf_file::Value::String("llama".into()),
        ),
        ("general.name", gguf_file::Value::String("tiny".into())),
        ("general.file_type", gguf_file::Value::U32(3)),
        ("llama.block_count", gguf_file::Value::U32(1)),
        (
            "tokenizer.ggml.tokens",
            gguf_file::Value::Array(vec![gguf_file::Value::String("a".into()); 3]),
        ),
    ];
    let md: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md, &ts).unwrap();
}

fn read(path: &Path) -> (gguf_file::Content, std::fs::File) {
    let mut f = std::fs::File::open(path).unwrap();
    (gguf_file::Content::read(&mut f).unwrap(), f)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    common::max_abs(&(a - b).unwrap())
}

#[test]
fn quantizes_matrices_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("in.gguf"), dir.path().join("out.gguf"));
    write_small_gguf(&inp);
    for (to, tol, ftype) in [
        (GgmlDType::Q8_0, 0.01, 7u32),
        (GgmlDType::Q4K, 0.15, 14),
        (GgmlDType::Q6K, 0.04, 18),
    ] {
        let r = quantize_gguf(&inp, &out, to).unwrap();
        assert_eq!(r.tensors, 6);
        assert_eq!(r.kept, ["odd.weight"]);
        let (ci, mut fi) = read(&inp);
        let (co, mut fo) = read(&out);
        let dt = |n: &str| co.tensor_infos[n].ggml_dtype;
        // No output.weight: the tied embedding is the output head, Q6_K as llama.cpp makes it
        // (Q8_0 stays Q8_0).
        let head = if to == GgmlDType::Q8_0 {
            GgmlDType::Q8_0
        } else {
            GgmlDType::Q6K
        };
        assert_eq!(dt("token_embd.weight"), head);
        assert_eq!(dt("blk.0.attn_q.weight"), to);
        assert_eq!(dt("blk.0.ffn_up.weight"), to);
        assert_eq!(dt("blk.0.attn_norm.weight"), GgmlDType::F32);
        assert_eq!(dt("odd.weight"), GgmlDType::F16);
        let fallback = match to {
            GgmlDType::Q4K => GgmlDType::Q5_0,
            GgmlDType::Q6K => GgmlDType::Q8_0,
            t => t,
        };
        assert_eq!(dt("blk.0.attn_k.weight"), fallback);
        assert_eq!(co.metadata["general.file_type"].to_u32().unwrap(), ftype);
        assert_eq!(co.metadata["general.name"].to_string().unwrap(), "tiny");
        assert_eq!(
            co.metadata["tokenizer.ggml.tokens"].to_vec().unwrap().len(),
            3
        );
        for name in ci.tensor_infos.keys() {
            let a = ci
                .tensor(&mut fi, name, &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap();
            let b = co
                .tensor(&mut fo, name, &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap();
            assert_eq!(a.dims(), b.dims(), "{name}");
            let d = max_abs_diff(&a, &b);
            assert!(d <= tol, "{name} {to:?}: max |Δ| = {d}");
        }
    }
}

#[test]
fn unreadable_input_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("bad.gguf");
    std::fs::write(&inp, b"not a gguf file at all").unwrap();
    let e = quantize_gguf(&inp, &dir.path().join("o.gguf"), GgmlDType::Q8_0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.gguf") && e.contains("not a valid GGUF file"),
        "{e}"
    );
    assert!(!e.contains('\n'));
    let e = quantize_gguf(&inp, &dir.path().join("o.gguf"), GgmlDType::Q8K)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsupported target type"), "{e}");
}

/// `quantize --to f32` writes the test GGUF's exact dequantized weights (every matrix F32, equal
/// to candle's dequantization of the original), and the in-process engine scores that file as it
/// scores the original with `--dequantize`: the same f32 arithmetic on the same weights.
#[test]
fn dequantized_f32_gguf_scores_like_dequantize() {
    let f32_path = common::test_gguf_f32();
    let (orig, mut fo) = read(&common::test_gguf());
    let (deq, mut fd) = read(&f32_path);
    assert_eq!(
        deq.tensor_infos.len(),
        orig.tensor_infos.len(),
        "same tensors"
    );
    for (name, info) in &orig.tensor_infos {
        let d = deq.tensor(&mut fd, name, &Device::Cpu).unwrap();
        assert_eq!(d.dtype(), GgmlDType::F32, "{name}");
        let o = orig.tensor(&mut fo, name, &Device::Cpu).unwrap();
        assert_eq!(o.shape(), d.shape(), "{name}");
        let diff = max_abs_diff(
            &o.dequantize(&Device::Cpu).unwrap(),
            &d.dequantize(&Device::Cpu).unwrap(),
        );
        assert_eq!(diff, 0.0, "{name} ({:?})", info.ggml_dtype);
    }
    assert_eq!(
        deq.metadata
            .get("general.file_type")
            .unwrap()
            .to_u32()
            .unwrap(),
        0
    );
    let dir = tempfile::tempdir().unwrap();
    let run = |model: &Path, out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args: Vec<std::ffi::OsString> = vec!["run".into(), "--tasks".into()];
        args.extend(["arc_easy,hellaswag", "--limit", "4", "--no-cache"].map(Into::into));
        args.extend([
            "--model".into(),
            model.into(),
            "--data-dir".into(),
            common::hub().into(),
            "--output".into(),
            out.clone().into(),
        ]);
        args.extend(extra.iter().map(Into::into));
        let (code, _, err) = common::hermes(&args);
        assert_eq!(code, 0, "{err}");
        ["arc_easy", "hellaswag"].map(|t| {
            let p = &common::files_with_prefix(&out, &format!("samples_{t}_"))[0];
            common::read_jsonl(p)
                .iter()
                .map(|s| s["resps"].clone())
                .collect::<Vec<_>>()
        })
    };
    let a = run(&f32_path, "f32", &[]);
    let b = run(&common::test_gguf(), "deq", &["--dequantize"]);
    assert_eq!(a, b, "F32 GGUF and --dequantize must score identically");
    let c = run(&common::test_gguf(), "q41", &[]);
    assert_ne!(a, c, "the Q4_1 arithmetic differs from f32");
}
