//! `hermes-eval quantize`: re-quantize a GGUF file with candle's quantizers, so a quantized
//! variant can be made locally and checked with `hermes-eval compare`; or dequantize it (`f32`,
//! `f16`), e.g. to serve a quantized model's exact weights to a server in plain float arithmetic. A Hugging Face directory
//! is converted by [`crate::convert`] under the same per-tensor rules.
//!
//! Per tensor (in file order):
//! - 2-D tensors whose row length (the last candle dimension, GGUF `ne[0]`) is a multiple of
//!   the target block size are dequantized to f32 and quantized to the target type (a tensor
//!   already stored in the target type is copied unchanged, so it is not quantized twice);
//!   for k-quant targets (block 256) a row length that is only a multiple of 32 gets llama.cpp's
//!   fallback type instead ([`k_quant_fallback`]: q4_k → q5_0, q5_k → q5_1, q6_k → q8_0);
//! - the output head (`output.weight`, or the tied `token_embd.weight`) gets Q6_K (Q8_0 when the
//!   target is Q8_0, or when its rows are not a multiple of 256), as llama.cpp's quantizer does
//!   ([`tensor_target`]);
//! - 1-D tensors (norms, biases) are stored F32;
//! - everything else (rows not a multiple of the block size, 3-D+ tensors) is kept as stored,
//!   in its original dtype — it was readable with that dtype, so it stays valid.
//!
//! All metadata is copied, except `general.alignment` (candle's writer always aligns to 32, the
//! GGUF default); `general.file_type` is set to the llama.cpp file type of the target
//! (f32 → 0, f16 → 1, q8_0 → 7, q4_0 → 2, q4_1 → 3, q4_k → 14 (Q4_K_S), q5_k → 16 (Q5_K_S), q6_k → 18) and
//! `general.quantization_version` to 2. The whole output is held in memory until written.
use crate::error::{Error, Result};
use crate::model::arch::{TensorName, EMBED, OUTPUT};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// candle errors can carry a captured backtrace in their `Display`; keep the message line.
pub(crate) fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Target types `quantize` supports.
pub const SUPPORTED: [GgmlDType; 8] = [
    GgmlDType::F32,
    GgmlDType::F16,
    GgmlDType::Q8_0,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

/// llama.cpp `llama_ftype` of a file whose matrices are all `dtype`.
pub fn file_type(dtype: GgmlDType) -> Option<u32> {
    Some(match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q8_0 => 7,
        GgmlDType::Q5_0 => 8,
        GgmlDType::Q5_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q4K => 14,
        GgmlDType::Q5K => 16,
        GgmlDType::Q6K => 18,
        _ => return None,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct QuantizeReport {
    pub input: PathBuf,
    pub output: PathBuf,
    pub target: String,
    pub tensors: usize,
    /// 2-D tensors quantized to the target type or its k-quant fallback (or copied, already in it).
    pub quantized: usize,
    /// 1-D tensors stored F32.
    pub to_f32: usize,
    /// Tensors kept in their original dtype.
    pub kept: Vec<String>,
    /// Output tensor count per dtype.
    pub dtypes: BTreeMap<String, usize>,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub seconds: f64,
}

enum Action {
    Quantize(GgmlDType),
    Copy,
    CopyVector,
    ToF32,
    Keep,
}

/// llama.cpp's fallback for k-quant targets when a row is not a multiple of 256
/// (`llama_tensor_get_type`): q4_k → q5_0, q5_k → q5_1, q6_k → q8_0 (block size 32).
pub fn k_quant_fallback(to: GgmlDType) -> Option<GgmlDType> {
    match to {
        GgmlDType::Q4K => Some(GgmlDType::Q5_0),
        GgmlDType::Q5K => Some(GgmlDType::Q5_1),
        GgmlDType::Q6K => Some(GgmlDType::Q8_0),
        _ => None,
    }
}

/// Type of a 2-D tensor with rows of `cols` values for target `to`: the target, its k-quant
/// fallback, or `None` (kept as stored) when neither block size divides the row.
pub fn matrix_target(cols: usize, to: GgmlDType) -> Option<GgmlDType> {
    if cols.is_multiple_of(to.block_size()) {
        return Some(to);
    }
    k_quant_fallback(to).filter(|f| cols.is_multiple_of(f.block_size()))
}

/// llama.cpp's rule for the output head (`llama_tensor_get_type`): `output.weight`, or
/// `token_embd.weight` when the embeddings are tied (no `output.weight`), is quantized to Q6_K
/// whatever the quantized target (Q8_0 and float targets stay as they are), since the logits are the most rounding-sensitive
/// product; with rows that are not a multiple of 256, Q6_K falls back to Q8_0.
pub fn tensor_target(name: &str, has_output: bool, to: GgmlDType) -> GgmlDType {
    let is = |t: &TensorName| name == t.gguf_name(None);
    let head = is(&OUTPUT) || (!has_output && is(&EMBED));
    let quantized = !matches!(
        to,
        GgmlDType::Q8_0 | GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
    );
    if head && quantized {
        GgmlDType::Q6K
    } else {
        to
    }
}

fn plan(name: &str, q: &gguf_file::TensorInfo, has_output: bool, to: GgmlDType) -> Action {
    let to = tensor_target(name, has_output, to);
    let dims = q.shape.dims();
    match dims.len() {
        1 => {
            if q.ggml_dtype == GgmlDType::F32 {
                Action::CopyVector
            } else {
                Action::ToF32
            }
        }
        2 => match matrix_target(dims[1], to) {
            None => Action::Keep,
            Some(target) if q.ggml_dtype == target => Action::Copy,
            Some(target) => Action::Quantize(target),
        },
        _ => Action::Keep,
    }
}

pub(crate) fn check_target(to: GgmlDType) -> Result<()> {
    if !SUPPORTED.contains(&to) {
        return Err(Error::model(format!(
            "quantize: unsupported target type {to:?} (use f32, f16, q8_0, q4_0, q4_1, q4_k, q5_k or q6_k)"
        )));
    }
    Ok(())
}

/// Write `tensors` and `metadata` (`general.architecture` first, the rest sorted) to `output`
/// through a `.partial` file renamed at the end, so a failed run leaves no half-written GGUF.
pub(crate) fn write_gguf(
    output: &Path,
    mut metadata: Vec<(String, gguf_file::Value)>,
    tensors: &[(String, QTensor, u8)],
) -> Result<()> {
    metadata.sort_by(|a, b| {
        (a.0 != "general.architecture", &a.0).cmp(&(b.0 != "general.architecture", &b.0))
    });
    let md: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t, _)| (n.as_str(), t)).collect();
    let tmp = output.with_extension("gguf.partial");
    {
        let f = std::fs::File::create(&tmp)
            .map_err(|e| Error::file(&tmp, format!("cannot create: {e}")))?;
        let mut w = std::io::BufWriter::new(f);
        gguf_file::write(&mut w, &md, &ts)
            .map_err(|e| Error::file(&tmp, format!("cannot write GGUF: {}", first_line(&e))))?;
        std::io::Write::flush(&mut w)?;
    }
    std::fs::rename(&tmp, output)?;
    Ok(())
}

impl QuantizeReport {
    /// Summary of a written conversion; `converted` holds (name, tensor, kind) with kind 0 =
    /// matrix in the target type, 1 = F32 vector, 2 = kept as stored.
    pub(crate) fn new(
        input: &Path,
        output: &Path,
        to: GgmlDType,
        converted: &[(String, QTensor, u8)],
        input_bytes: u64,
        start: Instant,
    ) -> Result<Self> {
        let mut dtypes = BTreeMap::new();
        for (_, t, _) in converted {
            *dtypes.entry(format!("{:?}", t.dtype())).or_insert(0) += 1;
        }
        Ok(QuantizeReport {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            target: format!("{to:?}"),
            tensors: converted.len(),
            quantized: converted.iter().filter(|c| c.2 == 0).count(),
            to_f32: converted.iter().filter(|c| c.2 == 1).count(),
            kept: converted
                .iter()
                .filter(|c| c.2 == 2)
                .map(|c| c.0.clone())
                .collect(),
            dtypes,
            input_bytes,
            output_bytes: std::fs::metadata(output)?.len(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// Re-quantize the GGUF file `input` to `to` and write `output`.
pub fn quantize_gguf(input: &Path, output: &Path, to: GgmlDType) -> Result<QuantizeReport> {
    check_target(to)?;
    if input
        .canonicalize()
        .ok()
        .is_some_and(|i| output.canonicalize().ok() == Some(i))
    {
        return Err(Error::file(output, "output would overwrite the input"));
    }
    let start = Instant::now();
    let open =
        || std::fs::File::open(input).map_err(|e| Error::file(input, format!("cannot open: {e}")));
    // The checked header reader; the tensors are converted one by one whatever model they form
    // (loading the result validates the model).
    let (content, _) = crate::model::gguf::read(input)?;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort_by_key(|n| content.tensor_infos[*n].offset);
    let has_output = content.tensor_infos.contains_key(&OUTPUT.gguf_name(None));

    let converted: Vec<(String, QTensor, u8)> = names
        .par_iter()
        .map(|name| -> Result<(String, QTensor, u8)> {
            let info = &content.tensor_infos[*name];
            let mut f = open()?;
            let qt = content
                .tensor(&mut f, name, &Device::Cpu)
                .map_err(|e| Error::file(input, format!("tensor {name}: {}", first_line(&e))))?;
            let ctx = |e: candle_core::Error| {
                Error::file(input, format!("tensor {name}: {}", first_line(&e)))
            };
            let (t, kind) = match plan(name, info, has_output, to) {
                Action::Copy => (qt, 0),
                Action::CopyVector => (qt, 1),
                Action::Keep => (qt, 2),
                Action::ToF32 => (
                    QTensor::quantize(&qt.dequantize(&Device::Cpu).map_err(ctx)?, GgmlDType::F32)
                        .map_err(ctx)?,
                    1,
                ),
                Action::Quantize(target) => (
                    QTensor::quantize(&qt.dequantize(&Device::Cpu).map_err(ctx)?, target)
                        .map_err(ctx)?,
                    0,
                ),
            };
            Ok((name.to_string(), t, kind))
        })
        .collect::<Result<_>>()?;

    let mut metadata: Vec<(String, gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.retain(|(k, _)| k != "general.file_type" && k != "general.quantization_version");
    metadata.push((
        "general.file_type".into(),
        gguf_file::Value::U32(file_type(to).unwrap_or(0)),
    ));
    metadata.push((
        "general.quantization_version".into(),
        gguf_file::Value::U32(2),
    ));
    write_gguf(output, metadata, &converted)?;
    QuantizeReport::new(
        input,
        output,
        to,
        &converted,
        std::fs::metadata(input)?.len(),
        start,
    )
}

/// Target type on the command line.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    /// Dequantize every matrix to f32 (e.g. to serve the same weights to a server in plain f32).
    #[value(name = "f32")]
    F32,
    #[value(name = "f16")]
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_1")]
    Q4_1,
    #[value(name = "q4_k")]
    Q4K,
    #[value(name = "q5_k")]
    Q5K,
    #[value(name = "q6_k")]
    Q6K,
}

impl From<QuantType> for GgmlDType {
    fn from(q: QuantType) -> Self {
        match q {
            QuantType::F32 => GgmlDType::F32,
            QuantType::F16 => GgmlDType::F16,
            QuantType::Q8_0 => GgmlDType::Q8_0,
            QuantType::Q4_0 => GgmlDType::Q4_0,
            QuantType::Q4_1 => GgmlDType::Q4_1,
            QuantType::Q4K => GgmlDType::Q4K,
            QuantType::Q5K => GgmlDType::Q5K,
            QuantType::Q6K => GgmlDType::Q6K,
        }
    }
}

/// Arguments of `hermes-eval quantize`.
#[derive(clap::Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// Input: a GGUF file, or a Hugging Face Llama/Mistral directory (config.json,
    /// tokenizer.json and/or SentencePiece tokenizer.model, safetensors) converted in
    /// llama.cpp's `llama` GGUF layout.
    pub input: PathBuf,
    /// Output GGUF file.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Target type of the 2-D weight matrices.
    #[arg(long, value_enum)]
    pub to: QuantType,
}

/// Run `hermes-eval quantize`: writes the output and prints a one-line summary.
pub fn run_quantize(args: &QuantizeArgs) -> anyhow::Result<()> {
    let r = if args.input.is_dir() {
        crate::convert::hf_to_gguf(&args.input, &args.output, args.to.into())?
    } else {
        quantize_gguf(&args.input, &args.output, args.to.into())?
    };
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "{} → {}: {} tensors ({} matrices to {}, {} F32 vectors, {} kept as stored), {:.1} MiB → {:.1} MiB in {:.1} s",
        r.input.display(),
        r.output.display(),
        r.tensors,
        r.quantized,
        r.target,
        r.to_f32,
        r.kept.len(),
        mb(r.input_bytes),
        mb(r.output_bytes),
        r.seconds
    );
    let dtypes: Vec<String> = r.dtypes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("output tensor types: {}", dtypes.join(", "));
    if !r.kept.is_empty() {
        let more = if r.kept.len() > 5 {
            format!(" and {} more", r.kept.len() - 5)
        } else {
            String::new()
        };
        println!(
            "kept as stored (row length not a multiple of the block size): {}{more}",
            r.kept[..r.kept.len().min(5)].join(", ")
        );
    }
    Ok(())
}
