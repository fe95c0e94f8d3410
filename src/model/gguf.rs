//! The GGUF header reader: every count, length, shape and offset checked before it is trusted.
//!
//! It produces candle's [`gguf_file::Content`] (so tensors are still read by candle), but parses
//! the header itself, as llama.cpp's `gguf_init_from_file` does and more strictly than candle's
//! reader: version 2 or 3 only; no duplicate metadata key or tensor name; no nested arrays;
//! `general.alignment` a `u32` power of two; at most 4 dimensions, each at least 1, whose product
//! (and the byte size) is computed with checked arithmetic; a row length that is a whole number of
//! quantization blocks; tensor data aligned, inside the file and not overlapping another tensor's.
//! Every length is bounded by the bytes left in the file before anything is allocated, so a few
//! changed bytes give a one-line error, never a huge allocation or a panic.
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use candle_core::quantized::GgmlDType;
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// GGML_MAX_NAME (including the terminating NUL in llama.cpp).
const MAX_NAME: u64 = 64;
const DEFAULT_ALIGNMENT: u64 = 32;
/// llama.cpp's GGUF_MAX_STRING_LENGTH.
const MAX_STRING: u64 = 1 << 30;

/// The ggml type ids this reader knows (ggml.h `enum ggml_type`).
pub fn dtype_from_id(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// The bytes a tensor of `shape` (row-major, as candle stores it) and `dtype` occupies, or why it
/// cannot exist: a row (the last dimension) that is not a whole number of blocks, or a size that
/// overflows.
pub fn tensor_bytes(shape: &[usize], dtype: GgmlDType) -> std::result::Result<u64, String> {
    let bs = dtype.block_size() as u64;
    let row = *shape.last().unwrap_or(&1) as u64;
    if !row.is_multiple_of(bs) {
        return Err(format!(
            "rows of {row} elements are not a whole number of {dtype:?} blocks of {bs}"
        ));
    }
    let elems = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in 64 bits"))?;
    (elems / bs)
        .checked_mul(dtype.type_size() as u64)
        .ok_or_else(|| format!("shape {shape:?} needs more bytes than fit in 64 bits"))
}

/// Read and check a GGUF file's header. The file is returned for reading tensors.
pub fn read(path: &Path) -> Result<(Content, std::fs::File)> {
    let f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let len = f.metadata().map_err(|e| Error::file(path, e))?.len();
    let mut r = Header::new(BufReader::with_capacity(1 << 20, &f), len);
    let ct = parse(&mut r).map_err(|e| Error::file(path, format!("not a valid GGUF file: {e}")))?;
    Ok((ct, f))
}

/// Parse a GGUF header held in memory (the whole file, or at least its header and the length it
/// claims): what [`read`] does on a file, for tests and fuzzing.
pub fn parse_bytes(bytes: &[u8]) -> std::result::Result<Content, String> {
    parse(&mut Header::new(bytes, bytes.len() as u64))
}

/// A reader that knows how many bytes are left in the file.
struct Header<R> {
    r: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Header<R> {
    fn new(r: R, len: u64) -> Self {
        Header { r, pos: 0, len }
    }

    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let mut b = [0u8; N];
        if self.left() < N as u64 {
            return Err(format!("the file ends inside {what} at byte {}", self.pos));
        }
        self.r
            .read_exact(&mut b)
            .map_err(|e| format!("reading {what} at byte {}: {e}", self.pos))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    /// A count of things at least `min_size` bytes each, bounded by the bytes left.
    fn count(&mut self, what: &str, min_size: u64) -> std::result::Result<u64, String> {
        let n = self.u64(what)?;
        if n.saturating_mul(min_size) > self.left() {
            return Err(format!(
                "{what} is {n}, more than the {} bytes left in the file can hold",
                self.left()
            ));
        }
        Ok(n)
    }

    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let n = self.count(&format!("the length of {what}"), 1)?;
        if n > MAX_STRING {
            return Err(format!("{what} is {n} bytes long (at most {MAX_STRING})"));
        }
        // Read, not pre-allocated: memory follows the bytes actually there.
        let mut v = Vec::new();
        (&mut self.r)
            .take(n)
            .read_to_end(&mut v)
            .map_err(|e| format!("reading {what} at byte {}: {e}", self.pos))?;
        if v.len() as u64 != n {
            return Err(format!("the file ends inside {what} at byte {}", self.pos));
        }
        self.pos += n;
        // As candle's and llama.cpp's readers: trailing NULs dropped, invalid UTF-8 replaced.
        while v.last() == Some(&0) {
            v.pop();
        }
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    fn value(&mut self, ty: u32, key: &str, in_array: bool) -> std::result::Result<Value, String> {
        let w = |s: &str| format!("the value of `{key}` ({s})");
        Ok(match ty {
            0 => Value::U8(self.bytes::<1>(&w("u8"))?[0]),
            1 => Value::I8(self.bytes::<1>(&w("i8"))?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.bytes(&w("u16"))?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes(&w("i16"))?)),
            4 => Value::U32(u32::from_le_bytes(self.bytes(&w("u32"))?)),
            5 => Value::I32(i32::from_le_bytes(self.bytes(&w("i32"))?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes(&w("f32"))?)),
            7 => match self.bytes::<1>(&w("bool"))?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("`{key}`: bool value {b} is neither 0 nor 1")),
            },
            8 => Value::String(self.string(&w("string"))?),
            9 if in_array => return Err(format!("`{key}`: arrays of arrays are not supported")),
            9 => {
                let ety = self.u32(&w("array type"))?;
                let min = match ety {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    10..=12 => 8,
                    8 => 8,
                    9 => return Err(format!("`{key}`: arrays of arrays are not supported")),
                    t => return Err(format!("`{key}`: unknown array element type {t}")),
                };
                let n = self.count(&format!("the length of array `{key}`"), min)?;
                // Grown as elements arrive: a count is bounded by the file's bytes, not by memory.
                let mut v = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    v.push(self.value(ety, key, true)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64(&w("u64"))?),
            11 => Value::I64(i64::from_le_bytes(self.bytes(&w("i64"))?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes(&w("f64"))?)),
            t => return Err(format!("`{key}`: unknown value type {t}")),
        })
    }
}

fn parse<R: Read>(r: &mut Header<R>) -> std::result::Result<Content, String> {
    if r.bytes::<4>("the magic")? != *b"GGUF" {
        return Err("the file does not start with GGUF".into());
    }
    let magic = match r.u32("the version")? {
        2 => VersionedMagic::GgufV2,
        3 => VersionedMagic::GgufV3,
        v => return Err(format!("GGUF version {v} is not supported (2 and 3 are)")),
    };
    // A tensor info is at least an 8-byte name length, 4-byte n_dims, 4-byte type, 8-byte
    // offset; a metadata entry an 8-byte key length, 4-byte type and a 1-byte value.
    let n_tensors = r.count("the tensor count", 24)?;
    let n_kv = r.count("the metadata count", 13)?;
    let mut metadata = HashMap::new();
    for _ in 0..n_kv {
        let key = r.string("a metadata key")?;
        let ty = r.u32(&format!("the type of `{key}`"))?;
        let v = r.value(ty, &key, false)?;
        if metadata.insert(key.clone(), v).is_some() {
            return Err(format!("duplicate metadata key `{key}`"));
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => *a as u64,
        Some(Value::U32(a)) => {
            return Err(format!("`general.alignment` = {a}: not a power of two"))
        }
        Some(v) => {
            return Err(format!(
                "`general.alignment` is a {:?}, not a u32",
                v.value_type()
            ))
        }
    };
    let mut infos: Vec<(String, TensorInfo, u64)> =
        Vec::with_capacity(n_tensors.min(1 << 16) as usize);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..n_tensors {
        let name = r.string("a tensor name")?;
        if name.len() as u64 >= MAX_NAME {
            return Err(format!(
                "tensor name `{name}` is {} bytes; at most {} are allowed",
                name.len(),
                MAX_NAME - 1
            ));
        }
        let n_dims = r.u32(&format!("the dimension count of `{name}`"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!(
                "tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
            ));
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = r.u64(&format!("the shape of `{name}`"))?;
            if d == 0 || d > i64::MAX as u64 {
                return Err(format!("tensor `{name}` has a dimension of {d}"));
            }
            shape.push(d as usize);
        }
        // GGUF lists ne[0] (the row length) first; candle's shapes are row-major.
        shape.reverse();
        let id = r.u32(&format!("the type of `{name}`"))?;
        let dtype =
            dtype_from_id(id).ok_or_else(|| format!("tensor `{name}`: unknown type {id}"))?;
        let offset = r.u64(&format!("the offset of `{name}`"))?;
        if !offset.is_multiple_of(alignment) {
            return Err(format!(
                "tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}"
            ));
        }
        let size = tensor_bytes(&shape, dtype).map_err(|e| format!("tensor `{name}`: {e}"))?;
        let info = TensorInfo {
            ggml_dtype: dtype,
            shape: shape.into(),
            offset,
        };
        if !seen.insert(name.clone()) {
            return Err(format!("duplicate tensor `{name}`"));
        }
        infos.push((name, info, size));
    }
    let data_start = r
        .pos
        .checked_next_multiple_of(alignment)
        .ok_or("the tensor data offset overflows")?;
    // Data inside the file, in order of offset, none overlapping the one before.
    let mut spans: Vec<(u64, u64, &str)> = Vec::with_capacity(infos.len());
    for (name, info, size) in &infos {
        let end = data_start
            .checked_add(info.offset)
            .and_then(|s| s.checked_add(*size))
            .filter(|&e| e <= r.len)
            .ok_or_else(|| {
                format!(
                    "tensor `{name}` ({size} bytes at data offset {}) ends past the end of the file: truncated or corrupt (the file has {} bytes)",
                    info.offset, r.len
                )
            })?;
        spans.push((data_start + info.offset, end, name));
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(format!(
                "tensors `{}` and `{}` overlap (bytes {}..{} and {}..{})",
                w[0].2, w[1].2, w[0].0, w[0].1, w[1].0, w[1].1
            ));
        }
    }
    Ok(Content {
        magic,
        metadata,
        tensor_infos: infos.into_iter().map(|(n, i, _)| (n, i)).collect(),
        tensor_data_offset: data_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 file with the given metadata (raw typed entries) and tensors.
    pub(crate) fn gguf(
        kv: &[(&str, u32, Vec<u8>)],
        tensors: &[(&str, &[u64], u32, u64)],
    ) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend((tensors.len() as u64).to_le_bytes());
        b.extend((kv.len() as u64).to_le_bytes());
        let s = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        for (k, t, v) in kv {
            s(&mut b, k);
            b.extend(t.to_le_bytes());
            b.extend(v);
        }
        for (name, dims, ty, off) in tensors {
            s(&mut b, name);
            b.extend((dims.len() as u32).to_le_bytes());
            for d in *dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(ty.to_le_bytes());
            b.extend(off.to_le_bytes());
        }
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        b
    }

    fn err(b: &[u8]) -> String {
        parse_bytes(b).expect_err("must be refused")
    }

    #[test]
    fn reads_a_well_formed_header() {
        let mut b = gguf(
            &[(
                "general.architecture",
                8,
                [5u64.to_le_bytes().to_vec(), b"llama".to_vec()].concat(),
            )],
            &[("a.weight", &[4, 2], 0, 0), ("b.weight", &[32], 0, 32)],
        );
        b.extend([0u8; 160]);
        let ct = parse_bytes(&b).unwrap();
        assert_eq!(ct.tensor_infos["a.weight"].shape.dims(), &[2, 4]);
        assert_eq!(ct.tensor_infos["b.weight"].offset, 32);
        assert_eq!(
            ct.metadata["general.architecture"].to_string().unwrap(),
            "llama"
        );
    }

    #[test]
    fn refuses_what_would_allocate_or_overflow() {
        // A string length of 2^60.
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend((1u64 << 60).to_le_bytes());
        b.extend([0u8; 16]);
        assert!(err(&b).contains("more than the"), "{}", err(&b));
        // 2^32 x 2^32 elements.
        let b = gguf(&[], &[("t", &[1 << 32, 1 << 32], 0, 0)]);
        assert!(
            err(&b).contains("64 bits") || err(&b).contains("past the end"),
            "{}",
            err(&b)
        );
        // 576 x 2^58.
        let b = gguf(&[], &[("t", &[576, 1 << 58], 0, 0)]);
        assert!(err(&b).contains("64 bits"), "{}", err(&b));
        // A tensor count the file cannot hold.
        let mut b = gguf(&[], &[]);
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&b).contains("tensor count"), "{}", err(&b));
    }

    #[test]
    fn refuses_duplicates_overlaps_and_bad_alignment() {
        let one = |v: u32| [v.to_le_bytes().to_vec()].concat();
        let b = gguf(&[("k", 4, one(1)), ("k", 4, one(2))], &[]);
        assert_eq!(err(&b), "duplicate metadata key `k`");
        let mut b = gguf(&[], &[("t", &[8], 0, 0), ("t", &[8], 0, 32)]);
        b.extend([0u8; 64]);
        assert_eq!(err(&b), "duplicate tensor `t`");
        let mut b = gguf(&[], &[("t", &[16], 0, 0), ("u", &[8], 0, 32)]);
        b.extend([0u8; 96]);
        assert!(
            err(&b).starts_with("tensors `t` and `u` overlap"),
            "{}",
            err(&b)
        );
        let b = gguf(&[("general.alignment", 4, one(0))], &[]);
        assert!(err(&b).contains("power of two"), "{}", err(&b));
        let b = gguf(
            &[(
                "general.alignment",
                8,
                [1u64.to_le_bytes().to_vec(), b"x".to_vec()].concat(),
            )],
            &[],
        );
        assert!(err(&b).contains("not a u32"), "{}", err(&b));
        let mut b = gguf(&[], &[("t", &[8], 0, 3)]);
        b.extend([0u8; 64]);
        assert!(
            err(&b).contains("not a multiple of the alignment"),
            "{}",
            err(&b)
        );
    }

    #[test]
    fn refuses_partial_blocks_and_truncation() {
        // Q4_1 rows of 40 elements: not whole 32-element blocks.
        let mut b = gguf(&[], &[("t", &[40, 2], 3, 0)]);
        b.extend([0u8; 128]);
        assert!(err(&b).contains("whole number"), "{}", err(&b));
        let b = gguf(&[], &[("t", &[1024], 0, 0)]);
        assert!(err(&b).contains("past the end of the file"), "{}", err(&b));
        let b = gguf(&[], &[]);
        assert!(err(&b[..20]).contains("ends inside"), "{}", err(&b[..20]));
        let mut v1 = gguf(&[], &[]);
        v1[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert!(err(&v1).contains("version 1"));
    }
}
