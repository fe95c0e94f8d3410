#!/usr/bin/env python3
"""Write a corpus of hostile model files made from good ones (issue 13's classes), never committed.

    scripts/hostile-models.py MODEL.gguf HF_DIR OUT_DIR

MODEL.gguf is the test model (SmolLM2-135M-Instruct Q4_1), HF_DIR its f32 Hugging Face export
(`hermes-eval export`). OUT_DIR receives one file or directory per case and `manifest.json`:
a list of {"class", "case", "model", "expect"}, where `expect` is a piece of the one-line error
hermes-eval must print (tests/hostile_model.rs runs every case). Python 3 standard library only:
the GGUF is parsed and rewritten here (header changed, tensor data copied as it is), the
safetensors header is rewritten the same way.
"""
import json
import os
import shutil
import struct
import sys

# GGUF value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}


class Reader:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def str(self):
        n = self.take("<Q")
        s = self.b[self.p:self.p + n]
        self.p += n
        return s

    def value(self, t):
        if t == STR:
            return self.str()
        if t == ARR:
            et, n = self.take("<I"), self.take("<Q")
            return (et, [self.value(et) for _ in range(n)])
        return self.take(SCALAR[t])


def read_gguf(path):
    b = open(path, "rb").read()
    r = Reader(b)
    assert r.take("<I") == 0x46554747, "not GGUF"
    version = r.take("<I")
    nt, nkv = r.take("<Q"), r.take("<Q")
    kv = []
    for _ in range(nkv):
        k = r.str()
        t = r.take("<I")
        kv.append([k.decode(), t, r.value(t)])
    tensors = []
    for _ in range(nt):
        name = r.str().decode()
        nd = r.take("<I")
        dims = [r.take("<Q") for _ in range(nd)]
        tensors.append([name, dims, r.take("<I"), r.take("<Q")])
    align = next((v for k, t, v in kv if k == "general.alignment"), 32)
    start = (r.p + align - 1) // align * align
    return {"version": version, "kv": kv, "tensors": tensors, "data": b[start:]}


def enc_value(t, v):
    if t == STR:
        v = v.encode() if isinstance(v, str) else v
        return struct.pack("<Q", len(v)) + v
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(enc_value(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def write_gguf(g, path, align=32):
    out = [struct.pack("<IIQQ", 0x46554747, g["version"], len(g["tensors"]), len(g["kv"]))]
    for k, t, v in g["kv"]:
        out.append(enc_value(STR, k) + struct.pack("<I", t) + enc_value(t, v))
    for name, dims, ty, off in g["tensors"]:
        out.append(enc_value(STR, name) + struct.pack("<I", len(dims))
                   + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ty, off))
    head = b"".join(out)
    pad = (-len(head)) % align if align > 0 else 0
    with open(path, "wb") as f:
        f.write(head + b"\0" * pad + g["data"])


def copy(g):
    return {"version": g["version"], "kv": [list(x) for x in g["kv"]],
            "tensors": [[n, list(d), t, o] for n, d, t, o in g["tensors"]], "data": g["data"]}


def set_kv(g, key, t, v):
    for e in g["kv"]:
        if e[0] == key:
            e[1], e[2] = t, v
            return g
    g["kv"].append([key, t, v])
    return g


def tensor(g, name):
    return next(x for x in g["tensors"] if x[0] == name)


def main():
    gguf_path, hf_dir, out = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    base = read_gguf(gguf_path)
    arch = next(v for k, t, v in base["kv"] if k == "general.architecture").decode()
    A = lambda k: f"{arch}.{k}"
    manifest = []

    def case(cls, name, g, expect, align=32):
        path = os.path.join(out, f"{name}.gguf")
        write_gguf(g, path, align)
        manifest.append({"class": cls, "case": name, "model": path, "expect": expect})

    def kv_case(cls, name, key, t, v, expect):
        case(cls, name, set_kv(copy(base), key, t, v), expect)

    # Sizes that overflow or would allocate hundreds of GB.
    g = copy(base)
    tensor(g, "blk.0.attn_q.weight")[1] = [1 << 32, 1 << 32]
    case("overflow", "dims_2p32_x_2p32", g, "64 bits")
    g = copy(base)
    tensor(g, "blk.0.attn_norm.weight")[1] = [576, 1 << 58]
    case("overflow", "dims_576_x_2p58", g, "64 bits")
    kv_case("block_count", "block_count_1e9", A("block_count"), U32, 10**9, "block_count` = 1000000000")
    kv_case("block_count", "block_count_29", A("block_count"), U32, 29, "is not used by this model")
    kv_case("block_count", "block_count_0", A("block_count"), U32, 0, "`block_count` is 0")
    # Hyper-parameters that would divide by zero or mis-shape the attention.
    kv_case("heads", "head_count_0", A("attention.head_count"), U32, 0, "head_count` = 0")
    kv_case("heads", "head_count_7", A("attention.head_count"), U32, 7, "not a multiple of")
    kv_case("heads", "head_count_kv_0", A("attention.head_count_kv"), U32, 0, "head_count_kv` = 0")
    kv_case("heads", "head_count_kv_2", A("attention.head_count_kv"), U32, 2, "not a multiple of")
    kv_case("heads", "key_length_0", A("attention.key_length"), U32, 0, "head dimension 0")
    kv_case("heads", "embedding_length_0", A("embedding_length"), U32, 0, "embedding_length` = 0")
    # Wrong types and insane values: never a silent default.
    kv_case("wrong_type", "context_length_string", A("context_length"), STR, "8192", "not an integer")
    kv_case("wrong_type", "freq_base_string", A("rope.freq_base"), STR, "100000", "not a float")
    kv_case("wrong_type", "vocab_size_string", A("vocab_size"), STR, "49152", "not an integer")
    kv_case("wrong_type", "bos_id_float", "tokenizer.ggml.bos_token_id", F32, 1.0, "not an integer")
    kv_case("bad_value", "rms_eps_nan", A("attention.layer_norm_rms_epsilon"), F32, float("nan"),
            "between 0 and 1")
    kv_case("bad_value", "rms_eps_negative", A("attention.layer_norm_rms_epsilon"), F32, -1e-5,
            "between 0 and 1")
    kv_case("bad_value", "freq_base_0", A("rope.freq_base"), F32, 0.0, "finite number above 1")
    kv_case("bad_value", "eos_outside_vocab", "tokenizer.ggml.eos_token_id", U32, 10**6,
            "outside the vocabulary")
    g = copy(base)
    g["kv"] = [e for e in g["kv"] if e[0] != A("context_length")]
    case("missing", "no_context_length", g, "context_length` is missing")
    # Structure: duplicates, overlaps, roles, shapes.
    g = copy(base)
    g["kv"].append(list(next(e for e in g["kv"] if e[0] == A("block_count"))))
    case("duplicate", "duplicate_key", g, "duplicate metadata key")
    g = copy(base)
    g["tensors"][1][0] = g["tensors"][0][0]
    case("duplicate", "duplicate_tensor", g, "duplicate tensor")
    g = copy(base)
    a, b = tensor(g, "blk.0.attn_k.weight"), tensor(g, "blk.0.attn_v.weight")
    b[3] = a[3]
    case("overlap", "overlapping_data", g, "overlap")
    g = copy(base)
    tensor(g, "blk.0.attn_norm.weight")[2] = 3  # Q4_1
    case("role", "norm_quantized", g, "not allowed for a norm vector")
    kv_case("shape", "ffn_length_contradicts", A("feed_forward_length"), U32, 1000,
            "imply [1000, 576]")
    g = copy(base)
    embd = tensor(g, "token_embd.weight")
    embd[1] = [embd[1][0], embd[1][1] - 32]
    case("shape", "head_fewer_rows_than_vocab", g, "token_embd.weight` has shape")
    g = copy(base)
    g["tensors"].pop()
    case("shape", "tensor_missing", g, "is missing")
    # The reader's own checks.
    kv_case("alignment", "alignment_0", "general.alignment", U32, 0, "not a power of two")
    g = copy(base)
    tensor(g, "blk.3.ffn_up.weight")[3] += 4
    case("alignment", "misaligned_offset", g, "not a multiple of the alignment")
    g = copy(base)
    g["data"] = g["data"][: len(g["data"]) // 2]
    case("truncated", "truncated", g, "past the end of the file")
    g = copy(base)
    tensor(g, "output_norm.weight")[2] = 77
    case("dtype", "unknown_dtype", g, "unknown type 77")
    g = copy(base)
    g["version"] = 1
    case("header", "version_1", g, "version 1 is not supported")
    g = copy(base)
    g["kv"].append(["general.evil", ARR, (ARR, [])])
    case("header", "nested_array", g, "arrays of arrays")

    # Hugging Face directories (config.json and the safetensors header).
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))

    def hf_case(cls, name, cfg_change=None, header_change=None, expect=""):
        d = os.path.join(out, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for f in os.listdir(hf_dir):
            if f not in ("config.json", "model.safetensors"):
                shutil.copy(os.path.join(hf_dir, f), d)
        c = json.loads(json.dumps(cfg))
        if cfg_change:
            cfg_change(c)
        json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=1)
        src = os.path.join(hf_dir, "model.safetensors")
        if header_change is None:
            os.symlink(os.path.abspath(src), os.path.join(d, "model.safetensors"))
        else:
            raw = open(src, "rb").read()
            n = struct.unpack_from("<Q", raw, 0)[0]
            h = json.loads(raw[8:8 + n])
            header_change(h)
            hb = json.dumps(h).encode()
            hb += b" " * ((-len(hb)) % 8)
            with open(os.path.join(d, "model.safetensors"), "wb") as f:
                f.write(struct.pack("<Q", len(hb)) + hb + raw[8 + n:])
        manifest.append({"class": cls, "case": name, "model": d, "expect": expect})

    hf_case("hf_config", "hf_layers_1e9", lambda c: c.update(num_hidden_layers=10**9),
            expect="num_hidden_layers` = 1000000000")
    hf_case("hf_config", "hf_heads_0", lambda c: c.update(num_attention_heads=0),
            expect="attention heads cannot share")
    hf_case("hf_config", "hf_eps_string", lambda c: c.update(rms_norm_eps="1e-5"),
            expect="rms_norm_eps")
    hf_case("hf_config", "hf_layers_29", lambda c: c.update(num_hidden_layers=29),
            expect="is not used by this model")

    def int32_proj(h):
        h["model.layers.0.self_attn.q_proj.weight"]["dtype"] = "I32"
    hf_case("hf_tensor", "hf_projection_int32", header_change=int32_proj,
            expect="stored as I32")

    def wrong_shape(h):
        t = h["model.layers.0.mlp.down_proj.weight"]
        t["shape"] = [t["shape"][1], t["shape"][0]]
    hf_case("hf_tensor", "hf_transposed_down", header_change=wrong_shape,
            expect="mlp.down_proj.weight` has shape")

    def overflow(h):
        h["model.norm.weight"]["shape"] = [1 << 32, 1 << 32]
    hf_case("hf_tensor", "hf_shape_overflow", header_change=overflow, expect="invalid safetensors")

    json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), indent=1)
    print(f"{len(manifest)} cases in {out}")


if __name__ == "__main__":
    main()
