//! AWQ GEMM dequantization against an independent packer and reference written here.
use candle_core::{DType, Device, Tensor};
use hermes_eval::awq::{dequantize_awq_gemm, load_awq_linear_weights};

/// AutoAWQ GEMM order: nibble k of a word holds logical column ORDER[k].
const ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Pack an int4 matrix `[rows][cols]` (cols % 8 == 0) into i32 `[rows][cols/8]`.
fn pack(q: &[Vec<u8>]) -> Vec<Vec<i32>> {
    q.iter()
        .map(|row| {
            row.chunks(8)
                .map(|c| {
                    let mut w: u32 = 0;
                    for (k, &col) in ORDER.iter().enumerate() {
                        w |= (c[col] as u32 & 0xF) << (4 * k);
                    }
                    w as i32
                })
                .collect()
        })
        .collect()
}

/// Small deterministic generator (xorshift) so the test needs no crate.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn int4(&mut self) -> u8 {
        (self.next() % 16) as u8
    }
    fn scale(&mut self) -> f32 {
        // Exactly representable in f16.
        ((self.next() % 64) as f32 + 1.0) / 256.0
    }
}

struct Layer {
    qweight: Tensor,
    qzeros: Tensor,
    scales: Tensor,
    /// Reference [out][in].
    reference: Vec<Vec<f32>>,
}

fn layer(inp: usize, out: usize, group: usize, seed: u64) -> Layer {
    let mut g = Gen(seed);
    let q: Vec<Vec<u8>> = (0..inp)
        .map(|_| (0..out).map(|_| g.int4()).collect())
        .collect();
    let z: Vec<Vec<u8>> = (0..inp / group)
        .map(|_| (0..out).map(|_| g.int4()).collect())
        .collect();
    let s: Vec<Vec<f32>> = (0..inp / group)
        .map(|_| (0..out).map(|_| g.scale()).collect())
        .collect();
    let reference = (0..out)
        .map(|o| {
            (0..inp)
                .map(|i| (q[i][o] as f32 - z[i / group][o] as f32) * s[i / group][o])
                .collect()
        })
        .collect();
    let dev = &Device::Cpu;
    let t = |m: Vec<Vec<i32>>| Tensor::new(m, dev).unwrap();
    Layer {
        qweight: t(pack(&q)),
        qzeros: t(pack(&z)),
        scales: Tensor::new(s, dev).unwrap().to_dtype(DType::F16).unwrap(),
        reference,
    }
}

#[test]
fn dequantize_matches_reference() {
    for (inp, out, group) in [(256, 64, 128), (64, 16, 32), (128, 8, 128)] {
        let l = layer(inp, out, group, 0x9E37_79B9_7F4A_7C15 ^ inp as u64);
        let w = dequantize_awq_gemm(&l.qweight, &l.qzeros, &l.scales, group).unwrap();
        assert_eq!(w.dims(), [out, inp]);
        assert_eq!(w.dtype(), DType::F32);
        let got: Vec<Vec<f32>> = w.to_vec2().unwrap();
        assert_eq!(got, l.reference, "in={inp} out={out} group={group}");
    }
}

#[test]
fn inconsistent_shapes_are_one_line_errors() {
    let l = layer(256, 64, 128, 7);
    // Group size 64 would need 4 groups of zeros/scales.
    let e = dequantize_awq_gemm(&l.qweight, &l.qzeros, &l.scales, 64)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("qzeros has shape [2, 8], expected [4, 8]"),
        "{e}"
    );
    assert!(!e.contains('\n'));
    let e = dequantize_awq_gemm(&l.qweight, &l.qzeros, &l.scales, 100)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a multiple of the group size 100"), "{e}");
    let wrong_scales = Tensor::zeros((2, 32), DType::F16, &Device::Cpu).unwrap();
    let e = dequantize_awq_gemm(&l.qweight, &l.qzeros, &wrong_scales, 128)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scales has shape [2, 32], expected [2, 64]"),
        "{e}"
    );
}

#[test]
fn safetensors_triples_become_linear_weights() {
    let dir = tempfile::tempdir().unwrap();
    let l = layer(256, 32, 128, 3);
    let norm = Tensor::ones(256, DType::F16, &Device::Cpu).unwrap();
    let mut tensors = std::collections::HashMap::new();
    tensors.insert(
        "model.layers.0.mlp.up_proj.qweight".to_string(),
        l.qweight.clone(),
    );
    tensors.insert(
        "model.layers.0.mlp.up_proj.qzeros".to_string(),
        l.qzeros.clone(),
    );
    tensors.insert(
        "model.layers.0.mlp.up_proj.scales".to_string(),
        l.scales.clone(),
    );
    tensors.insert("model.norm.weight".to_string(), norm);
    let path = dir.path().join("model.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let cfg = serde_json::json!({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm", "zero_point": true});
    let out = load_awq_linear_weights(&[&path], &cfg).unwrap();
    let mut keys: Vec<_> = out.keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["model.layers.0.mlp.up_proj.weight", "model.norm.weight"]
    );
    let w: Vec<Vec<f32>> = out["model.layers.0.mlp.up_proj.weight"].to_vec2().unwrap();
    assert_eq!(w, l.reference);
    assert_eq!(out["model.norm.weight"].dtype(), DType::F32);

    // Half-precision output for large models.
    let half = hermes_eval::awq::load_awq_linear_weights_as(&[&path], &cfg, DType::BF16).unwrap();
    assert!(half.values().all(|t| t.dtype() == DType::BF16));

    // A triple with a missing part is refused, naming the prefix.
    tensors.remove("model.layers.0.mlp.up_proj.scales");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let e = load_awq_linear_weights(&[&path], &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "model.layers.0.mlp.up_proj.qweight has no matching model.layers.0.mlp.up_proj.scales"
        ),
        "{e}"
    );
}
