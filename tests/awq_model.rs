//! An AWQ-GEMM checkpoint loads through `--model` (the ordinary loader): the test model's f32
//! export quantized to 4 bits (group size 64, the test model's 576-wide rows) by a packing written
//! here, scored against the same dequantized weights stored as plain f32.
mod common;
use candle_core::{Device, Tensor};
use common::*;
use hermes_eval::model::candle_lm::CandleLm;
use hermes_eval::model::load::LoadOptions;
use hermes_eval::model::LanguageModel;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const GROUP: usize = 64;
/// AutoAWQ `pack`: nibble i of a word holds column `8j + ORDER[i]`.
const ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
const LINEARS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

fn pack_row(q: &[u8]) -> Vec<i32> {
    q.chunks(8)
        .map(|c| {
            let mut w = 0u32;
            for (i, &col) in ORDER.iter().enumerate() {
                w |= (c[col] as u32) << (4 * i);
            }
            w as i32
        })
        .collect()
}

/// Asymmetric 4-bit quantization of `w` (`[out, in]`) in groups of GROUP inputs, as AutoAWQ
/// stores it: (qweight `[in, out/8]`, qzeros `[in/G, out/8]`, scales f16 `[in/G, out]`) and the
/// dequantized `[out, in]` f32 matrix `(q − z)·s`.
fn quantize(w: &Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
    let (out, inp) = w.dims2().unwrap();
    let rows: Vec<Vec<f32>> = w.to_vec2().unwrap();
    let groups = inp / GROUP;
    let mut q = vec![vec![0u8; out]; inp]; // [in][out]
    let mut z = vec![vec![0u8; out]; groups];
    let mut s = vec![vec![half::f16::ZERO; out]; groups];
    let mut deq = vec![vec![0f32; inp]; out];
    for o in 0..out {
        for g in 0..groups {
            let xs = &rows[o][g * GROUP..(g + 1) * GROUP];
            let (lo, hi) = xs
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            let scale = half::f16::from_f32(((hi - lo) / 15.0).max(1e-8));
            let sf = scale.to_f32();
            let zero = (-lo / sf).round().clamp(0.0, 15.0) as u8;
            s[g][o] = scale;
            z[g][o] = zero;
            for (k, &x) in xs.iter().enumerate() {
                let qi = ((x / sf).round() + zero as f32).clamp(0.0, 15.0) as u8;
                q[g * GROUP + k][o] = qi;
                deq[o][g * GROUP + k] = (qi as f32 - zero as f32) * sf;
            }
        }
    }
    let dev = &Device::Cpu;
    let qw: Vec<i32> = q.iter().flat_map(|r| pack_row(r)).collect();
    let qz: Vec<i32> = z.iter().flat_map(|r| pack_row(r)).collect();
    let sc: Vec<half::f16> = s.into_iter().flatten().collect();
    (
        Tensor::from_vec(qw, (inp, out / 8), dev).unwrap(),
        Tensor::from_vec(qz, (groups, out / 8), dev).unwrap(),
        Tensor::from_vec(sc, (groups, out), dev).unwrap(),
        Tensor::from_vec(deq.into_iter().flatten().collect(), (out, inp), dev).unwrap(),
    )
}

/// (AWQ directory, directory of the same dequantized weights in f32), made once.
fn dirs() -> (PathBuf, PathBuf) {
    static P: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    P.get_or_init(|| {
        let src = test_f32_dir();
        let root = repo().join(format!("target/test-models/awq-g{GROUP}"));
        let (awq, deq) = (root.join("awq"), root.join("dequantized-f32"));
        if awq.join("model.safetensors").is_file() && deq.join("model.safetensors").is_file() {
            return (awq, deq);
        }
        let tensors =
            candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
        let mut awq_t: HashMap<String, Tensor> = HashMap::new();
        let mut deq_t: HashMap<String, Tensor> = HashMap::new();
        for (name, t) in &tensors {
            let linear = LINEARS.iter().any(|l| {
                name.ends_with(&format!("{l}.weight")) && name.starts_with("model.layers.")
            });
            if linear {
                let p = name.strip_suffix(".weight").unwrap();
                let (qw, qz, sc, d) = quantize(t);
                awq_t.insert(format!("{p}.qweight"), qw);
                awq_t.insert(format!("{p}.qzeros"), qz);
                awq_t.insert(format!("{p}.scales"), sc);
                deq_t.insert(name.clone(), d);
            } else {
                awq_t.insert(name.clone(), t.clone());
                deq_t.insert(name.clone(), t.clone());
            }
        }
        let tmp = root.with_extension(format!("tmp{}", std::process::id()));
        for (d, ts, awq_cfg) in [("awq", &awq_t, true), ("dequantized-f32", &deq_t, false)] {
            let dir = tmp.join(d);
            std::fs::create_dir_all(&dir).unwrap();
            for f in ["tokenizer.json", "tokenizer_config.json"] {
                if src.join(f).is_file() {
                    std::fs::copy(src.join(f), dir.join(f)).unwrap();
                }
            }
            let mut cfg: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                    .unwrap();
            if awq_cfg {
                cfg["quantization_config"] = serde_json::json!({"quant_method": "awq",
                    "bits": 4, "group_size": GROUP, "version": "gemm", "zero_point": true});
                cfg["torch_dtype"] = "float16".into();
            }
            std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
            candle_core::safetensors::save(ts, dir.join("model.safetensors")).unwrap();
        }
        let _ = std::fs::remove_dir_all(&root);
        std::fs::rename(&tmp, &root).unwrap();
        (awq, deq)
    })
    .clone()
}

fn requests(m: &CandleLm) -> Vec<Vec<hermes_eval::model::TokenRequest>> {
    let mut out = vec![];
    for task in ["arc_easy", "hellaswag", "winogrande"] {
        for d in read_jsonl(&shared().join(format!("reference/lm-eval-f32/{task}.jsonl")))
            .iter()
            .take(3)
        {
            out.push(
                d["requests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| reference_request(m.tokenizer(), r))
                    .collect(),
            );
        }
    }
    out
}

fn load(dir: &Path) -> CandleLm {
    CandleLm::load(dir.to_str().unwrap(), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[test]
fn awq_gemm_dir_loads_through_model_and_equals_its_dequantized_f32_weights() {
    let (awq_dir, deq_dir) = dirs();
    let mut awq = load(&awq_dir);
    let mut deq = load(&deq_dir);
    let fp = awq.details();
    assert_eq!(fp["format"], "safetensors-awq");
    assert_eq!(fp["quantization"]["method"], "awq");
    assert_eq!(fp["quantization"]["group_size"], GROUP);
    assert_eq!(fp["config"]["saved_dtype"], "float16");
    let (mut n, mut worst) = (0, 0f64);
    for group in requests(&awq) {
        let a = awq.loglikelihood(&group).unwrap();
        let b = deq.loglikelihood(&group).unwrap();
        for (x, y) in a.iter().zip(&b) {
            worst = worst.max((x.logprob - y.logprob).abs());
            assert!(
                (x.logprob - y.logprob).abs() <= 1e-4,
                "{} vs {}",
                x.logprob,
                y.logprob
            );
            assert_eq!(x.is_greedy, y.is_greedy);
            n += 1;
        }
    }
    eprintln!("AWQ: {n} requests, max |Δ| = {worst:.2e}");
    // 4-bit weights do change the model: the scores are not the unquantized ones.
    let mut base = load(&test_f32_dir());
    let g = &requests(&base)[0];
    let (q, f) = (
        awq.loglikelihood(g).unwrap(),
        base.loglikelihood(g).unwrap(),
    );
    assert!(q
        .iter()
        .zip(&f)
        .any(|(a, b)| (a.logprob - b.logprob).abs() > 1e-3));
}

#[test]
fn awq_packings_we_cannot_read_are_refused_in_one_line() {
    let (awq_dir, _) = dirs();
    let tmp = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(awq_dir.join(f), tmp.path().join(f)).unwrap();
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(awq_dir.join("config.json")).unwrap())
            .unwrap();
    for (patch, says) in [
        (serde_json::json!({"version": "gemv"}), "GEMM"),
        (serde_json::json!({"bits": 8}), "4-bit"),
        (serde_json::json!({"quant_method": "gptq"}), "gptq"),
        (serde_json::json!({"group_size": 128}), "group size 128"),
    ] {
        let mut c = cfg.clone();
        for (k, v) in patch.as_object().unwrap() {
            c["quantization_config"][k] = v.clone();
        }
        std::fs::write(tmp.path().join("config.json"), c.to_string()).unwrap();
        let e = CandleLm::load(tmp.path().to_str().unwrap(), &LoadOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{patch} accepted"))
            .to_string();
        assert!(e.contains(says) && !e.contains('\n'), "{patch}: {e}");
    }
}

/// `hermes-eval run --model <f32 dir> --model <AWQ dir> --model <its dequantized f32 copy>` from
/// the CLI: the AWQ directory is evaluated and gated like any variant, and equals the same
/// dequantized weights stored as f32.
#[test]
fn run_gates_the_awq_variant_from_the_cli() {
    let (awq_dir, deq_dir) = dirs();
    let base = test_f32_dir();
    let out = tempfile::tempdir().unwrap();
    let run = |gate: &[&str]| -> (i32, String, serde_json::Value) {
        let mut args: Vec<String> = [
            "run",
            "--tasks",
            "arc_easy",
            "--limit",
            "5",
            "--data-dir",
            hub().to_str().unwrap(),
            "--output",
            out.path().to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        for m in [&base, &awq_dir, &deq_dir] {
            args.extend(["--model".into(), m.to_str().unwrap().into()]);
        }
        args.extend(gate.iter().map(|s| s.to_string()));
        let (code, stdout, err) = hermes(&args);
        let cmp = out.path().join("comparison/comparison.json");
        let j = serde_json::from_str(&std::fs::read_to_string(&cmp).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {err}\n{stdout}"));
        (code, stdout, j)
    };
    let (code, stdout, j) = run(&["--max-drop", "1"]);
    let comparisons = j["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 2);
    let metrics = |c: &serde_json::Value| -> Vec<(f64, bool, bool)> {
        c["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["delta_points"].as_f64().unwrap(),
                    m["significant"].as_bool().unwrap(),
                    m["regression"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    // The AWQ directory scores like its dequantized weights in f32: the same comparison.
    assert_eq!(metrics(&comparisons[0]), metrics(&comparisons[1]));
    // 4-bit weights change answers (and log-likelihoods) on these documents...
    let agreement = &comparisons[0]["agreement"][0];
    assert!(
        agreement["changed_choice"].as_f64().unwrap() > 0.0,
        "{agreement}"
    );
    // ...and the gate decides on them like on any variant: a regression is a drop beyond
    // --max-drop that is significant, and the exit code follows the regressions.
    let mut regressions = 0;
    for (delta, significant, regression) in metrics(&comparisons[0]) {
        assert_eq!(regression, significant && delta < -1.0);
        regressions += regression as u64;
    }
    assert_eq!(j["regressions"].as_u64().unwrap(), 2 * regressions);
    let want = if regressions > 0 {
        (1, "FAIL")
    } else {
        (0, "PASS")
    };
    assert_eq!(code, want.0, "{stdout}");
    assert!(stdout.contains(want.1), "{stdout}");
    eprintln!(
        "AWQ vs f32 on arc_easy --limit 5: {:?} (delta, significant, regression); exit {code}",
        metrics(&comparisons[0])
    );
    // The AWQ run records what it loaded.
    let results = files_with_prefix(&out.path().join("awq"), "results_");
    let text = std::fs::read_to_string(results.last().unwrap()).unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(r.to_string().contains("\"format\":\"safetensors-awq\""));

    // An AWQ checkpoint packed without its zero points (every qzeros word 0: a packing bug)
    // is a real regression on 30 documents, and the gate fails the run with exit 1.
    let broken = out.path().join("broken-awq");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(awq_dir.join(f), broken.join(f)).unwrap();
    }
    let mut ts =
        candle_core::safetensors::load(awq_dir.join("model.safetensors"), &Device::Cpu).unwrap();
    for (name, t) in ts.iter_mut() {
        if name.ends_with(".qzeros") {
            *t = t.zeros_like().unwrap();
        }
    }
    candle_core::safetensors::save(&ts, broken.join("model.safetensors")).unwrap();
    let args: Vec<String> = [
        "run",
        "--tasks",
        "arc_easy",
        "--limit",
        "30",
        "--data-dir",
        hub().to_str().unwrap(),
        "--output",
        out.path().join("broken-run").to_str().unwrap(),
        "--model",
        base.to_str().unwrap(),
        "--model",
        broken.to_str().unwrap(),
        "--max-drop",
        "1",
    ]
    .map(String::from)
    .to_vec();
    let (code, stdout, err) = hermes(&args);
    let j: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("broken-run/comparison/comparison.json"))
            .unwrap_or_else(|e| panic!("{e}: {err}")),
    )
    .unwrap();
    let acc = j["comparisons"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "acc")
        .unwrap()
        .clone();
    eprintln!("broken AWQ vs f32, arc_easy --limit 30: {acc}; exit {code}");
    assert_eq!(acc["regression"], true, "{acc}");
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
}
