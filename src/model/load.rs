//! Finding and loading model files: a `.gguf` file, a Hugging Face model directory (config.json,
//! tokenizer.json, single or sharded safetensors), or a hub id fetched through hf-hub's cache
//! (HF_HOME, HF_ENDPOINT and HF_HUB_OFFLINE honoured).
use super::arch::{EMBED, HF_PREFIX, LAYER_TENSORS, OUTPUT, OUTPUT_NORM, ROPE_FREQS};
use super::config::LlamaConfig;
use super::llama::{Layer, Llama};
use super::qmatmul::{QuantWeight, Weight};
use super::tokenizer;
use crate::error::{Error, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The fingerprint's `loglik_sum`: how a continuation's log-probabilities are summed (part of
/// the request cache's key, so a change of summation never reuses old numbers).
pub const LOGLIK_SUM_TORCH: &str =
    "torch float32 log_softmax and sum (lm-evaluation-harness on CPU)";
pub const LOGLIK_SUM_F64: &str =
    "log_softmax as llama.cpp (ggml expf summed in f64 lanes), f64 sum";

/// How quantized GGUF weights are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantMode {
    /// Quantized weights × 8-bit-quantized activations, as llama.cpp computes them (default).
    Native,
    /// Weights dequantized to f32 at load (faster here, not what a deployment computes).
    Dequantize,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub quant_mode: QuantMode,
    /// dtype dense safetensors weights are kept in (f32 by default).
    pub dtype: DType,
    /// A tokenizer.json overriding the one of the model (e.g. for a GGUF tokenizer model or
    /// pre-tokenizer that is not rebuilt from metadata).
    pub tokenizer: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            quant_mode: QuantMode::Native,
            dtype: DType::F32,
            tokenizer: None,
        }
    }
}

/// What a model reference resolved to on disk.
#[derive(Debug, Clone)]
pub enum ModelFiles {
    Gguf {
        path: PathBuf,
    },
    Hf {
        config: PathBuf,
        tokenizer: Option<PathBuf>,
        tokenizer_config: Option<PathBuf>,
        weights: Vec<PathBuf>,
        /// `model.safetensors.index.json` of sharded weights.
        index: Option<PathBuf>,
    },
}

pub struct Loaded {
    pub llama: Llama,
    pub tokenizer: tokenizers::Tokenizer,
    pub name: String,
    pub fingerprint: serde_json::Value,
    /// Chat template (tokenizer_config.json `chat_template` or GGUF `tokenizer.chat_template`).
    pub chat_template: Option<serde_json::Value>,
    pub eos_token: Option<String>,
}

/// Resolve `--model`: a .gguf file, a directory, or a hub id (`org/name`, or `org/name/file.gguf`).
pub fn resolve(model: &str) -> Result<ModelFiles> {
    let p = Path::new(model);
    if p.is_file() {
        if p.extension().is_some_and(|e| e == "gguf") {
            return Ok(ModelFiles::Gguf {
                path: p.to_path_buf(),
            });
        }
        return Err(Error::file(p, "not a .gguf file or a model directory"));
    }
    if p.is_dir() {
        return resolve_dir(p);
    }
    if model.starts_with('.') || model.starts_with('/') || model.matches('/').count() == 0 {
        return Err(Error::model(format!(
            "`{model}`: no such file or directory, and not a hub id (org/name)"
        )));
    }
    resolve_hub(model)
}

fn resolve_dir(dir: &Path) -> Result<ModelFiles> {
    let config = dir.join("config.json");
    if !config.is_file() {
        let ggufs: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
            .collect();
        return match ggufs.as_slice() {
            [one] => Ok(ModelFiles::Gguf { path: one.clone() }),
            [] => Err(Error::file(
                dir,
                "no config.json and no .gguf file in the model directory",
            )),
            _ => Err(Error::file(
                dir,
                "several .gguf files and no config.json: name the file",
            )),
        };
    }
    let (weights, index) = dir_weights(dir)?;
    let opt = |n: &str| Some(dir.join(n)).filter(|p| p.is_file());
    Ok(ModelFiles::Hf {
        config,
        tokenizer: opt("tokenizer.json"),
        tokenizer_config: opt("tokenizer_config.json"),
        weights,
        index,
    })
}

/// The .gguf files of a hub model repo at main, sorted: from the hub's file listing, or offline
/// from the cached snapshot (only the files already downloaded). Empty when unknown.
fn hub_ggufs(repo: &hf_hub::Repo, offline: bool) -> Vec<String> {
    let mut names: Vec<String> = if offline {
        let dir = hf_hub::Cache::from_env().path().join(repo.folder_name());
        std::fs::read_to_string(dir.join("refs/main"))
            .ok()
            .and_then(|hash| std::fs::read_dir(dir.join("snapshots").join(hash.trim())).ok())
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .ok()
            .and_then(|api| api.repo(repo.clone()).info().ok())
            .map(|info| info.siblings.into_iter().map(|s| s.rfilename).collect())
            .unwrap_or_default()
    };
    names.retain(|n| n.ends_with(".gguf"));
    names.sort();
    names
}

/// `weight_map` of a sharded checkpoint's index: tensor name → file, each file a plain name in
/// the model directory.
pub(crate) fn weight_map(index: &Path) -> Result<BTreeMap<String, String>> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(index).map_err(|e| Error::file(index, e))?)
            .map_err(|e| Error::file(index, e))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::file(index, "no `weight_map` object"))?;
    let mut out = BTreeMap::new();
    for (name, file) in map {
        let Some(f) = file.as_str() else {
            return Err(Error::file(
                index,
                format!("weight_map: `{name}` maps to {file}, not a file name"),
            ));
        };
        let plain = Path::new(f).components().count() == 1
            && matches!(
                Path::new(f).components().next(),
                Some(std::path::Component::Normal(_))
            );
        if !plain {
            return Err(Error::file(
                index,
                format!("weight_map: `{name}` maps to {f:?}, not a file in the model directory"),
            ));
        }
        out.insert(name.clone(), f.to_string());
    }
    if out.is_empty() {
        return Err(Error::file(index, "weight_map is empty"));
    }
    Ok(out)
}

/// The weight files of a model directory and its index: the shards named by
/// `model.safetensors.index.json` (every one must exist), or `model.safetensors`.
pub(crate) fn dir_weights(dir: &Path) -> Result<(Vec<PathBuf>, Option<PathBuf>)> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let files: Vec<PathBuf> = shard_files(&index)?
            .into_iter()
            .map(|f| dir.join(f))
            .collect();
        if let Some(f) = files.iter().find(|f| !f.is_file()) {
            return Err(Error::file(f, "shard named in the index is missing"));
        }
        return Ok((files, Some(index)));
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok((vec![single], None));
    }
    Err(Error::file(
        dir,
        "no model.safetensors or model.safetensors.index.json",
    ))
}

fn shard_files(index: &Path) -> Result<Vec<String>> {
    let files: BTreeSet<String> = weight_map(index)?.into_values().collect();
    Ok(files.into_iter().collect())
}

/// The same rule as the dataset side, so one `HF_HUB_OFFLINE` value never means offline for the
/// model and online for the data.
fn offline() -> bool {
    crate::data::env_flag("HF_HUB_OFFLINE")
}

fn resolve_hub(id: &str) -> Result<ModelFiles> {
    let (repo_id, file) = match id.strip_suffix(".gguf") {
        Some(_) => {
            let mut parts = id.splitn(3, '/');
            let (o, n, f) = (
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            (format!("{o}/{n}"), Some(f.to_string()))
        }
        None => (id.to_string(), None),
    };
    let repo = hf_hub::Repo::model(repo_id.clone());
    let hint =
        "set HF_HUB_OFFLINE=1 to use only the local cache, or pass a local directory / .gguf file";
    type Getter = Box<dyn Fn(&str) -> Result<PathBuf>>;
    let get: Getter = if offline() {
        let cache = hf_hub::Cache::from_env();
        let dir = cache.path().join(repo.folder_name());
        let r = cache.repo(repo.clone());
        let rid = repo_id.clone();
        Box::new(move |f: &str| {
            r.get(f).ok_or_else(|| {
                Error::model(format!(
                    "{rid}: `{f}` is not in the local hub cache {} and HF_HUB_OFFLINE is set: unset HF_HUB_OFFLINE to download it, or pass a local .gguf file / model directory",
                    dir.display()
                ))
            })
        })
    } else {
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| Error::model(format!("hub client: {e}")))?;
        let r = api.repo(repo.clone());
        let rid = repo_id.clone();
        Box::new(move |f: &str| {
            r.get(f)
                .map_err(|e| Error::model(format!("{rid}: cannot fetch `{f}`: {e} ({hint})")))
        })
    };
    if let Some(f) = file {
        return Ok(ModelFiles::Gguf { path: get(&f)? });
    }
    let config = match get("config.json") {
        Ok(c) => c,
        // A GGUF-only repo named without its file: one .gguf is taken, several must be named.
        Err(e) => {
            return match hub_ggufs(&repo, offline()).as_slice() {
                [one] => Ok(ModelFiles::Gguf { path: get(one)? }),
                [] => Err(e),
                many => Err(Error::model(format!(
                    "{repo_id} has no config.json and {} .gguf files ({}): name one, e.g. `{repo_id}/{}`",
                    many.len(),
                    many.join(", "),
                    many[0]
                ))),
            };
        }
    };
    let index = get("model.safetensors.index.json").ok();
    let weights = match &index {
        Some(index) => shard_files(index)?
            .iter()
            .map(|f| get(f))
            .collect::<Result<Vec<_>>>()?,
        None => vec![get("model.safetensors")?],
    };
    Ok(ModelFiles::Hf {
        config,
        tokenizer: get("tokenizer.json").ok(),
        tokenizer_config: get("tokenizer_config.json").ok(),
        weights,
        index,
    })
}

/// Where the text model's tensors start: `model.` for a plain causal LM, `model.language_model.`
/// or `language_model.model.` inside a multimodal wrapper.
fn text_prefix(names: &BTreeSet<String>) -> Result<String> {
    let mut found: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix(&EMBED.hf_name("", None)))
        .filter(|p| {
            names.contains(&LAYER_TENSORS[0].hf_name(p, Some(0)))
                || names.contains(&OUTPUT_NORM.hf_name(p, None))
        })
        .collect();
    found.sort_by_key(|p| p.len());
    match found.first() {
        Some(p) => Ok(p.to_string()),
        None if names.contains(&EMBED.hf_name(HF_PREFIX, None)) => Ok(HF_PREFIX.into()),
        None => Err(Error::model(
            "no `model.embed_tokens.weight` (nor a wrapped `...embed_tokens.weight`) in the safetensors files",
        )),
    }
}

/// The file's sha256, remembered under `$XDG_CACHE_HOME/hermes-eval/sha256/` (else
/// `~/.cache/…`) for its identity — path, size, modification and change times, inode and device,
/// what git's index trusts — so that a model is hashed once rather than at every run (a 14 GB
/// 7B model takes seconds of CPU; the f32 test model 0.3 s of a 60-document bench). Any change
/// to the file changes its change time (which no tool can set back), so it is hashed again.
fn sha256_file(path: &Path) -> Result<String> {
    let root = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
    sha256_cached(path, root.as_deref())
}

/// [`sha256_file`] with the cache under `root/hermes-eval/sha256` (none without a root).
fn sha256_cached(path: &Path, root: Option<&Path>) -> Result<String> {
    let entry = root.and_then(|r| hash_cache_entry(path, r));
    if let Some(hash) = entry
        .as_ref()
        .and_then(|e| std::fs::read_to_string(e).ok())
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Ok(hash);
    }
    let hash = sha256_read(path)?;
    if let Some(e) = entry {
        // best effort: a cache that cannot be written only means hashing again next time
        let tmp = e.with_extension(format!("tmp{}", std::process::id()));
        if e.parent()
            .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
            && std::fs::write(&tmp, &hash).is_ok()
        {
            let _ = std::fs::rename(&tmp, &e);
        }
    }
    Ok(hash)
}

/// Where [`sha256_cached`] keeps the hash of `path` as it is now (`None` without the file's
/// metadata).
fn hash_cache_entry(path: &Path, root: &Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let canon = std::fs::canonicalize(path).ok()?;
    let id = format!(
        "{}\0{}\0{}.{}\0{}.{}\0{}\0{}",
        canon.display(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino(),
        m.dev()
    );
    let key = hex::encode(Sha256::digest(id.as_bytes()));
    Some(root.join("hermes-eval/sha256").join(&key[..32]))
}

fn sha256_read(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn model_name(path: &Path) -> String {
    let stem = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    stem.map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

pub fn load(model: &str, opts: &LoadOptions) -> Result<Loaded> {
    match resolve(model)? {
        ModelFiles::Gguf { path } => load_gguf(&path, model, opts),
        ModelFiles::Hf {
            config,
            tokenizer,
            tokenizer_config,
            weights,
            index,
        } => load_hf(
            model,
            &config,
            tokenizer.as_deref(),
            tokenizer_config.as_deref(),
            &weights,
            index.as_deref(),
            opts,
        ),
    }
}

/// The tokenizer [`load`] would give the model, without loading the weights.
pub fn load_tokenizer(model: &str, opts: &LoadOptions) -> Result<tokenizers::Tokenizer> {
    match resolve(model)? {
        ModelFiles::Gguf { path } => {
            let (ct, _) = read_gguf(&path)?;
            gguf_tokenizer(&ct, &path, opts)
        }
        ModelFiles::Hf {
            config, tokenizer, ..
        } => hf_tokenizer(&config, tokenizer.as_deref(), opts),
    }
}

fn gguf_tokenizer(
    ct: &gguf_file::Content,
    path: &Path,
    opts: &LoadOptions,
) -> Result<tokenizers::Tokenizer> {
    match &opts.tokenizer {
        Some(t) => tokenizer::from_file(t),
        None => tokenizer::from_gguf(ct).map_err(|e| Error::in_file(path, e)),
    }
}

fn hf_tokenizer(
    config: &Path,
    tok_path: Option<&Path>,
    opts: &LoadOptions,
) -> Result<tokenizers::Tokenizer> {
    match (opts.tokenizer.as_deref(), tok_path) {
        (Some(t), _) | (None, Some(t)) => tokenizer::from_file(t),
        (None, None) => Err(Error::file(
            config.parent().unwrap_or(config),
            "no tokenizer.json (pass --tokenizer)",
        )),
    }
}

/// Read a GGUF header, every size and offset checked ([`super::gguf`]).
pub fn read_gguf(path: &Path) -> Result<(gguf_file::Content, std::fs::File)> {
    super::gguf::read(path)
}

fn load_gguf(path: &Path, model_ref: &str, opts: &LoadOptions) -> Result<Loaded> {
    let (ct, mut f) = read_gguf(path)?;
    let mut cfg = LlamaConfig::from_gguf(&ct).map_err(|e| Error::in_file(path, e))?;
    super::validate::gguf(&ct, &cfg).map_err(|e| Error::file(path, e))?;
    let config_description = cfg.describe();
    // llama.cpp's linear scaling becomes per-frequency divisors, which both compute paths apply.
    let linear_divisors = cfg
        .rope_freq_divisors()
        .map_err(|e| Error::in_file(path, e))?;
    cfg.rope_scaling = None;
    let tok = gguf_tokenizer(&ct, path, opts)?;
    check_vocab(&tok, cfg.vocab_size).map_err(|e| Error::file(path, e))?;
    let mut dtypes = BTreeSet::new();
    let mut get = |name: &str| -> Result<QTensor> {
        ct.tensor(&mut f, name, &Device::Cpu)
            .map_err(|e| Error::file(path, format!("tensor `{name}`: {e}")))
    };
    let dense = |name: &str, get: &mut dyn FnMut(&str) -> Result<QTensor>| -> Result<Tensor> {
        Ok(get(name)?.dequantize(&Device::Cpu)?)
    };
    let mut linear = |name: &str, get: &mut dyn FnMut(&str) -> Result<QTensor>| -> Result<Weight> {
        let qt = get(name)?;
        dtypes.insert(format!("{:?}", qt.dtype()));
        let is_float = matches!(
            qt.dtype(),
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
        );
        Ok(if is_float || opts.quant_mode == QuantMode::Dequantize {
            Weight::dense(qt.dequantize(&Device::Cpu)?)?
        } else {
            Weight::Quant(
                QuantWeight::from_qtensor(&qt)
                    .map_err(|e| Error::file(path, format!("tensor `{name}`: {e}")))?,
            )
        })
    };
    let embed = dense(&EMBED.gguf_name(None), &mut get)?;
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        layers.push(Layer::load(
            &mut get,
            |get, t| dense(&t.gguf_name(Some(i)), get),
            |get, t| linear(&t.gguf_name(Some(i)), get),
        )?);
    }
    let norm = dense(&OUTPUT_NORM.gguf_name(None), &mut get)?;
    // A tied head is the embedding table.
    let head = if ct.tensor_infos.contains_key(&OUTPUT.gguf_name(None)) {
        &OUTPUT
    } else {
        &EMBED
    };
    let lm_head = linear(&head.gguf_name(None), &mut get)?;
    let lm_is_quantized = layers
        .iter()
        .flat_map(Layer::weights)
        .chain([&lm_head])
        .any(|w| w.is_quantized());
    let rope_freq_factors = if ct.tensor_infos.contains_key(ROPE_FREQS) {
        Some(dense(ROPE_FREQS, &mut get)?.to_vec1::<f32>()?)
    } else {
        None
    };
    let rope_freq_factors = match (rope_freq_factors, linear_divisors) {
        (Some(a), Some(b)) => Some(a.iter().zip(b).map(|(x, y)| x * y).collect()),
        (a, b) => a.or(b),
    };
    let chat_template = ct
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .map(|s| serde_json::Value::String(s.clone()));
    let eos_token = cfg
        .eos_token_ids
        .first()
        .and_then(|&id| tok.id_to_token(id));
    let fingerprint = serde_json::json!({
        "source": model_ref,
        "path": path.display().to_string(),
        "format": "gguf",
        "sha256": sha256_file(path)?,
        "architecture": cfg.architecture,
        "config": config_description,
        "eos_token_ids": cfg.eos_token_ids,
        "weight_types": dtypes.into_iter().collect::<Vec<_>>(),
        "compute": match opts.quant_mode {
            QuantMode::Native => "quantized weights x q8 activations (llama.cpp CPU arithmetic)",
            QuantMode::Dequantize => "weights dequantized to f32",
        },
        "tokenizer": if opts.tokenizer.is_some() { "tokenizer.json (--tokenizer)" } else { "GGUF metadata" },
        "loglik_sum": if opts.quant_mode == QuantMode::Native && lm_is_quantized { LOGLIK_SUM_F64 } else { LOGLIK_SUM_TORCH },
    });
    Ok(Loaded {
        llama: Llama {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            interleaved_rope: true,
            rope_freq_factors,
            llamacpp_arith: opts.quant_mode == QuantMode::Native && lm_is_quantized,
            rope: Default::default(),
        },
        tokenizer: tok,
        name: model_name(path),
        fingerprint,
        chat_template,
        eos_token,
    })
}

/// Every token id the tokenizer can produce has an embedding row.
fn check_vocab(tok: &tokenizers::Tokenizer, vocab: usize) -> std::result::Result<(), String> {
    let n = tok.get_vocab_size(true);
    if n > vocab {
        return Err(format!(
            "the tokenizer has {n} tokens but the model's vocabulary (embedding rows) is {vocab}"
        ));
    }
    Ok(())
}

/// Drop the pages under `bytes` (part of a read-only file mapping, already copied) from this
/// process's memory; a later read faults them in again from the page cache.
fn release_mapped(bytes: &[u8]) {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let start = bytes.as_ptr() as usize / page * page;
        let end = (bytes.as_ptr() as usize + bytes.len()).div_ceil(page) * page;
        if end > start {
            // SAFETY: the range covers pages of a live read-only, file-backed private mapping
            // (safetensors' mmap); MADV_DONTNEED on it only drops resident pages, and their
            // contents come back unchanged from the file on the next access.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
}

/// The weights hold exactly the tensors the config implies ([`super::validate::hf`]), no tensor
/// is in two files, and the index (if any) says truly where each one is.
pub(crate) fn check_hf_weights(
    cfg: &LlamaConfig,
    weights: &[PathBuf],
    index: Option<&Path>,
    prefix: &str,
    config_json: &serde_json::Value,
    awq: Option<&crate::awq::AwqConfig>,
) -> Result<()> {
    let mut files = Vec::with_capacity(weights.len());
    for w in weights {
        // SAFETY: read-only mapping of a file we do not modify.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(w) }
            .map_err(|e| Error::file(w, format!("invalid safetensors file: {e}")))?;
        files.push(st);
    }
    let mut found = BTreeMap::new();
    let mut home: BTreeMap<String, &Path> = BTreeMap::new();
    for (st, w) in files.iter().zip(weights) {
        for (name, view) in st.tensors() {
            let file = w.file_name().map(Path::new).unwrap_or(w);
            if let Some(first) = home.insert(name.clone(), file) {
                return Err(Error::file(
                    w,
                    format!("tensor `{name}` is also in {}", first.display()),
                ));
            }
            found.insert(
                name,
                super::validate::Found {
                    shape: view.shape().to_vec(),
                    dtype: format!("{:?}", view.dtype()),
                },
            );
        }
    }
    if let Some(index) = index {
        let listed = weight_map(index)?;
        for (name, file) in &listed {
            match home.get(name) {
                Some(f) if *f == Path::new(file) => {}
                Some(f) => {
                    return Err(Error::file(
                        index,
                        format!(
                            "`{name}` is in {}, not in {file} as the index says",
                            f.display()
                        ),
                    ))
                }
                None => {
                    return Err(Error::file(
                        index,
                        format!("`{name}` is not in {file} as the index says"),
                    ))
                }
            }
        }
        if let Some((n, f)) = home.iter().find(|(n, _)| !listed.contains_key(*n)) {
            return Err(Error::file(
                index,
                format!("tensor `{n}` of {} is not in the index", f.display()),
            ));
        }
    }
    let dir = weights
        .first()
        .and_then(|w| w.parent())
        .unwrap_or(Path::new("."));
    super::validate::hf(
        cfg,
        &found,
        prefix,
        config_json.get("text_config").is_some(),
        awq.map(|a| a.group_size),
    )
    .map_err(|e| Error::file(dir, e))
}

fn load_hf(
    model_ref: &str,
    config: &Path,
    tok_path: Option<&Path>,
    tok_config: Option<&Path>,
    weights: &[PathBuf],
    index: Option<&Path>,
    opts: &LoadOptions,
) -> Result<Loaded> {
    let cfg = LlamaConfig::from_hf_json(
        &std::fs::read_to_string(config).map_err(|e| Error::file(config, e))?,
    )
    .map_err(|e| Error::in_file(config, e))?;
    let tok = hf_tokenizer(config, tok_path, opts)?;
    for w in weights {
        if !w.is_file() {
            return Err(Error::file(w, "weight file is missing"));
        }
    }
    // SAFETY: the files are memory-mapped read-only; we do not modify them while mapped.
    let st =
        unsafe { candle_core::safetensors::MmapedSafetensors::multi(weights) }.map_err(|e| {
            Error::model(format!(
                "{}: invalid safetensors file: {e}",
                weights
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config).map_err(|e| Error::file(config, e))?)
            .map_err(|e| Error::file(config, e))?;
    let awq = match config_json.get("quantization_config") {
        None | Some(serde_json::Value::Null) => None,
        Some(q) => {
            Some(crate::awq::AwqConfig::from_json(q).map_err(|e| Error::in_file(config, e))?)
        }
    };
    let names: BTreeSet<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
    let prefix = text_prefix(&names)?;
    check_hf_weights(&cfg, weights, index, &prefix, &config_json, awq.as_ref())?;
    check_vocab(&tok, cfg.vocab_size).map_err(|e| Error::file(config, e))?;
    // Each tensor is copied out of the mapping, whose pages are then dropped from this
    // process (they stay in the page cache): peak memory is the weights plus one tensor, not
    // the weights and the whole file.
    let copy = |name: &str| -> Result<Tensor> {
        let t = st
            .load(name, &Device::Cpu)
            .map_err(|e| Error::model(format!("tensor `{name}`: {e}")))?;
        if let Ok(view) = st.get(name) {
            release_mapped(view.data());
        }
        Ok(t)
    };
    let get = |name: &str, dt: DType| -> Result<Tensor> { Ok(copy(name)?.to_dtype(dt)?) };
    // One linear layer `<p>.weight`, or AWQ's `<p>.qweight/.qzeros/.scales` dequantized to the
    // chosen dtype (one layer at a time: the f32 copy of a single matrix is all that is added).
    let lin = |p: &str| -> Result<Weight> {
        let qweight = format!("{p}.qweight");
        match &awq {
            Some(a) if names.contains(&qweight) => {
                let raw = |part: &str| {
                    copy(&format!("{p}.{part}"))
                        .map_err(|e| Error::model(format!("AWQ tensor `{p}.{part}`: {e}")))
                };
                let w = crate::awq::dequantize_awq_gemm(
                    &raw("qweight")?,
                    &raw("qzeros")?,
                    &raw("scales")?,
                    a.group_size,
                )
                .map_err(|e| Error::model(format!("`{p}`: {e}")))?;
                Weight::dense(w.to_dtype(opts.dtype)?)
            }
            _ => Weight::dense(get(&format!("{p}.weight"), opts.dtype)?),
        }
    };
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        layers.push(Layer::load(
            &mut (),
            |_, t| get(&t.hf_name(&prefix, Some(i)), DType::F32),
            |_, t| lin(&t.hf_stem(&prefix, Some(i))),
        )?);
    }
    let embed = get(&EMBED.hf_name(&prefix, None), DType::F32)?;
    // The head sits beside the text model: `lm_head` (transformers 5 wrappers, plain models) or
    // `language_model.lm_head` (4.x wrappers).
    let head = [
        OUTPUT.hf_stem(&prefix, None),
        OUTPUT.hf_stem(HF_PREFIX, None),
    ]
    .into_iter()
    .find(|h| names.contains(&format!("{h}.weight")) || names.contains(&format!("{h}.qweight")));
    let lm_head = match head {
        Some(h) if !cfg.tie_word_embeddings => lin(&h)?,
        _ => Weight::dense(embed.to_dtype(opts.dtype)?)?,
    };
    let norm = get(&OUTPUT_NORM.hf_name(&prefix, None), DType::F32)?;
    let tc: Option<serde_json::Value> = match tok_config {
        Some(p) => Some(
            serde_json::from_str(&std::fs::read_to_string(p)?).map_err(|e| Error::file(p, e))?,
        ),
        None => None,
    };
    let chat_template = tc.as_ref().and_then(|v| v.get("chat_template").cloned());
    let eos_token = tc
        .as_ref()
        .and_then(|v| v.get("eos_token"))
        .and_then(|e| {
            e.as_str()
                .or_else(|| e.get("content").and_then(|c| c.as_str()))
        })
        .map(String::from)
        .or_else(|| {
            cfg.eos_token_ids
                .first()
                .and_then(|&id| tok.id_to_token(id))
        });
    let mut hashes = vec![];
    for w in weights {
        hashes.push(sha256_file(w)?);
    }
    let dir = config.parent().unwrap_or(Path::new("."));
    let fingerprint = serde_json::json!({
        "source": model_ref,
        "path": dir.display().to_string(),
        "format": if awq.is_some() { "safetensors-awq" } else { "safetensors" },
        "quantization": awq.as_ref().map(|a| serde_json::json!({
            "method": "awq", "version": "gemm", "bits": a.bits, "group_size": a.group_size,
            "dequantized_to": format!("{:?}", opts.dtype).to_lowercase(),
        })),
        "sha256": hashes,
        "architecture": cfg.architecture,
        "config": cfg.describe(),
        "eos_token_ids": cfg.eos_token_ids,
        "compute": format!("{:?}", opts.dtype).to_lowercase(),
        "tokenizer": "tokenizer.json",
        "loglik_sum": LOGLIK_SUM_TORCH,
    });
    let name = if Path::new(model_ref).exists() {
        model_name(dir)
    } else {
        model_ref
            .rsplit('/')
            .next()
            .unwrap_or(model_ref)
            .to_string()
    };
    Ok(Loaded {
        llama: Llama {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            interleaved_rope: false,
            rope_freq_factors: None,
            llamacpp_arith: false,
            rope: Default::default(),
        },
        tokenizer: tok,
        name,
        fingerprint,
        chat_template,
        eos_token,
    })
}

#[cfg(test)]
mod hash_cache_tests {
    use super::*;

    #[test]
    fn a_remembered_hash_is_the_files_and_a_rewritten_file_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let (file, root) = (dir.path().join("m.gguf"), dir.path().join("cache"));
        std::fs::write(&file, b"first contents").unwrap();
        let first = sha256_read(&file).unwrap();
        assert_eq!(sha256_cached(&file, Some(&root)).unwrap(), first);
        let entry = hash_cache_entry(&file, &root).unwrap();
        assert_eq!(std::fs::read_to_string(&entry).unwrap(), first);
        assert_eq!(sha256_cached(&file, Some(&root)).unwrap(), first);
        // the same length, rewritten in place: a new change time, a new entry, a new hash
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"other contents").unwrap();
        let second = sha256_read(&file).unwrap();
        assert_ne!(first, second);
        assert_ne!(hash_cache_entry(&file, &root).unwrap(), entry);
        assert_eq!(sha256_cached(&file, Some(&root)).unwrap(), second);
    }
}
