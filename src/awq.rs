//! AWQ checkpoints (AutoAWQ "GEMM" packing, e.g. FoxEngineAi/Hermes-2-Pro-Mistral-7B_AWQ-GEMM_4_128)
//! dequantized to f32 `nn.Linear` weights, so the ordinary f32 model code can score them.
//!
//! Layout of one quantized linear layer `<prefix>` with `in` inputs and `out` outputs, 4 bits,
//! group size `g`:
//! - `<prefix>.qweight`: i32 `[in, out/8]`; word `(i, j)` holds the 4-bit values of output
//!   columns `8j..8j+8` of input row `i`;
//! - `<prefix>.qzeros`: i32 `[in/g, out/8]`, packed the same way (one zero point per group and
//!   output column);
//! - `<prefix>.scales`: f16 `[in/g, out]`.
//!
//! Bit order: inside a word the 4-bit nibble at bits `4k..4k+4` holds logical column
//! `AWQ_ORDER[k]` with `AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]`; equivalently column `m` sits in
//! nibble `AWQ_REVERSE_ORDER[m]` with `AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]`
//! (AutoAWQ `awq/utils/packing_utils.py`: `unpack_awq` + `reverse_awq_order`).
//! Dequantization: `w[i, o] = (q[i, o] − z[i / g, o]) · s[i / g, o]`, returned transposed as
//! `[out, in]` (the `nn.Linear` layout).
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// Nibble position of logical column `m` (0..8) inside a packed word.
pub const AWQ_REVERSE_ORDER: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::model(format!("AWQ: {msg}"))
}

/// Dequantize one AWQ GEMM linear layer to f32 `[out, in]`.
pub fn dequantize_awq_gemm(
    qweight: &Tensor,
    qzeros: &Tensor,
    scales: &Tensor,
    group_size: usize,
) -> Result<Tensor> {
    let (in_f, out8) = qweight
        .dims2()
        .map_err(|_| bad(format!("qweight must be 2-D, got {:?}", qweight.dims())))?;
    let out = out8 * 8;
    if group_size == 0 || in_f % group_size != 0 {
        return Err(bad(format!(
            "input size {in_f} is not a multiple of the group size {group_size}"
        )));
    }
    let groups = in_f / group_size;
    if qzeros.dims() != [groups, out8] {
        return Err(bad(format!(
            "qzeros has shape {:?}, expected [{groups}, {out8}] for qweight {:?} and group size {group_size}",
            qzeros.dims(),
            qweight.dims()
        )));
    }
    if scales.dims() != [groups, out] {
        return Err(bad(format!(
            "scales has shape {:?}, expected [{groups}, {out}] for qweight {:?} and group size {group_size}",
            scales.dims(),
            qweight.dims()
        )));
    }
    for (name, t) in [("qweight", qweight), ("qzeros", qzeros)] {
        if t.dtype() != DType::I32 && t.dtype() != DType::U32 {
            return Err(bad(format!("{name} must be int32, got {:?}", t.dtype())));
        }
    }
    let words = |t: &Tensor| -> Result<Vec<u32>> {
        Ok(match t.dtype() {
            DType::I32 => t
                .flatten_all()?
                .to_vec1::<i32>()?
                .into_iter()
                .map(|x| x as u32)
                .collect(),
            _ => t.flatten_all()?.to_vec1::<u32>()?,
        })
    };
    let qw = words(qweight)?;
    let qz = words(qzeros)?;
    let sc = scales
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let nib = |w: u32, col: usize| ((w >> (4 * AWQ_REVERSE_ORDER[col % 8])) & 0xF) as f32;

    // Zero points unpacked once: [groups, out].
    let zs: Vec<f32> = (0..groups * out)
        .map(|k| nib(qz[(k / out) * out8 + (k % out) / 8], k % out))
        .collect();
    // Written directly in the [out, in] layout, in tiles of 64 output rows (8 packed words per
    // input row), so the strided reads of qweight stay within a few cache lines per input row.
    const TILE: usize = 64;
    let mut w = vec![0f32; out * in_f];
    w.par_chunks_mut(TILE * in_f)
        .enumerate()
        .for_each(|(t, block)| {
            let o0 = t * TILE;
            let rows = block.len() / in_f;
            for i in 0..in_f {
                let g = i / group_size;
                let words = &qw[i * out8..(i + 1) * out8];
                let (zrow, srow) = (&zs[g * out..(g + 1) * out], &sc[g * out..(g + 1) * out]);
                for r in 0..rows {
                    let o = o0 + r;
                    block[r * in_f + i] = (nib(words[o / 8], o) - zrow[o]) * srow[o];
                }
            }
        });
    Ok(Tensor::from_vec(w, (out, in_f), qweight.device())?)
}

/// Settings read from `config.json`'s `quantization_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct AwqConfig {
    pub bits: usize,
    pub group_size: usize,
}

impl AwqConfig {
    /// Accepts `{"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm", "zero_point": true}`;
    /// refuses other bit widths, other packings (GEMV, exllama, marlin) and symmetric (no zero point) models.
    pub fn from_json(q: &serde_json::Value) -> Result<Self> {
        let s = |k: &str| {
            q.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_ascii_lowercase)
        };
        if let Some(m) = s("quant_method") {
            if m != "awq" {
                return Err(bad(format!(
                    "quantization_config.quant_method is {m:?}, not \"awq\""
                )));
            }
        }
        let bits = q
            .get("bits")
            .or_else(|| q.get("w_bit"))
            .and_then(|v| v.as_u64())
            .unwrap_or(4) as usize;
        if bits != 4 {
            return Err(bad(format!(
                "only 4-bit AWQ is supported, quantization_config.bits = {bits}"
            )));
        }
        let group_size = q
            .get("group_size")
            .or_else(|| q.get("q_group_size"))
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad("quantization_config.group_size is missing"))?
            as usize;
        if let Some(v) = s("version") {
            if v != "gemm" {
                return Err(bad(format!(
                    "only the GEMM packing is supported, quantization_config.version = {v:?}"
                )));
            }
        }
        if q.get("zero_point").and_then(|v| v.as_bool()) == Some(false) {
            return Err(bad(
                "models without zero points (zero_point = false) are not supported",
            ));
        }
        Ok(AwqConfig { bits, group_size })
    }
}

/// Load AWQ safetensors files: every `<prefix>.qweight/.qzeros/.scales` triple becomes one
/// `<prefix>.weight` f32 `[out, in]` tensor; every other tensor is passed through as f32.
/// An incomplete triple is an error naming the prefix. Memory: the quantized tensors of all
/// files are held at once, and the f32 result is ~8× the quantized size (see
/// [`load_awq_linear_weights_as`] for f16/bf16 output).
pub fn load_awq_linear_weights<P: AsRef<Path>>(
    files: &[P],
    quantization_config: &serde_json::Value,
) -> Result<HashMap<String, Tensor>> {
    load_awq_linear_weights_as(files, quantization_config, DType::F32)
}

/// [`load_awq_linear_weights`] with every output tensor converted to `dtype` (each layer is
/// converted right after its dequantization, so only one f32 layer exists at a time).
pub fn load_awq_linear_weights_as<P: AsRef<Path>>(
    files: &[P],
    quantization_config: &serde_json::Value,
    dtype: DType,
) -> Result<HashMap<String, Tensor>> {
    let cfg = AwqConfig::from_json(quantization_config)?;
    let mut raw: HashMap<String, Tensor> = HashMap::new();
    for f in files {
        let f = f.as_ref();
        let tensors = candle_core::safetensors::load(f, &Device::Cpu).map_err(|e| {
            Error::file(
                f,
                format!(
                    "cannot read safetensors: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ),
            )
        })?;
        raw.extend(tensors);
    }
    let mut out = HashMap::new();
    let prefixes: Vec<String> = raw
        .keys()
        .filter_map(|k| k.strip_suffix(".qweight"))
        .map(str::to_string)
        .collect();
    for p in &prefixes {
        let get = |part: &str| {
            raw.get(&format!("{p}.{part}"))
                .ok_or_else(|| bad(format!("{p}.qweight has no matching {p}.{part}")))
        };
        let w = dequantize_awq_gemm(
            get("qweight")?,
            get("qzeros")?,
            get("scales")?,
            cfg.group_size,
        )
        .map_err(|e| {
            bad(format!(
                "{p}: {}",
                e.to_string().trim_start_matches("model: AWQ: ")
            ))
        })?;
        out.insert(format!("{p}.weight"), w.to_dtype(dtype)?);
    }
    for (k, t) in raw {
        let triple = ["qweight", "qzeros", "scales"].iter().any(|s| {
            k.strip_suffix(&format!(".{s}"))
                .is_some_and(|p| prefixes.iter().any(|q| q == p))
        });
        if triple {
            continue;
        }
        if k.ends_with(".qzeros") {
            return Err(bad(format!("{k} has no matching .qweight")));
        }
        let t = if t.dtype() == dtype {
            t
        } else {
            t.to_dtype(dtype)?
        };
        out.insert(k, t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_bit_order() {
        // Logical columns 0..8 hold 1..8. Nibble k holds column AWQ_ORDER[k] = [0,2,4,6,1,3,5,7][k],
        // so the nibbles from the low end are 1,3,5,7,2,4,6,8 → 0x8642_7531.
        let qw = Tensor::new(&[[0x8642_7531u32 as i32]], &Device::Cpu).unwrap();
        let qz = Tensor::new(&[[0i32]], &Device::Cpu).unwrap();
        let sc = Tensor::ones((1, 8), DType::F16, &Device::Cpu).unwrap();
        let w = dequantize_awq_gemm(&qw, &qz, &sc, 1).unwrap();
        assert_eq!(w.dims(), [8, 1]);
        let v: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn config_checks() {
        let ok = serde_json::json!({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "GEMM", "zero_point": true});
        assert_eq!(
            AwqConfig::from_json(&ok).unwrap(),
            AwqConfig {
                bits: 4,
                group_size: 128
            }
        );
        let gemv = serde_json::json!({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"});
        assert!(AwqConfig::from_json(&gemv)
            .unwrap_err()
            .to_string()
            .contains("GEMM"));
        let b8 = serde_json::json!({"bits": 8, "group_size": 128});
        assert!(AwqConfig::from_json(&b8).is_err());
    }
}
