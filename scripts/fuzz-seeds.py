#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (scripts/fuzz.sh), made from the repository's own files.

    scripts/fuzz-seeds.py OUT_DIR [MODEL.gguf]

Writes OUT_DIR/<target>/seed-*: a tiny consistent Llama GGUF (and, with MODEL.gguf, a copy of
the test model's metadata with its vocabulary cut to 256 tokens), task files with a row,
Hermes tool-call completions, JSON-mode instance/schema pairs, a completions reply. Never
committed: the corpora live under fuzz/corpus (ignored).
"""
import glob
import importlib.util
import json
import os
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("hostile", os.path.join(here, "hostile-models.py"))
hm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hm)
repo = os.path.dirname(here)


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"seed-{name}"), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def tiny_gguf(path):
    """1 block, hidden 32, 2 heads / 1 kv head, ffn 64, vocab 64 (gpt2 BPE over single bytes)."""
    h, ff, v, hd = 32, 64, 64, 16
    kv = [["general.architecture", hm.STR, "llama"],
          ["llama.block_count", hm.U32, 1], ["llama.embedding_length", hm.U32, h],
          ["llama.feed_forward_length", hm.U32, ff], ["llama.attention.head_count", hm.U32, 2],
          ["llama.attention.head_count_kv", hm.U32, 1], ["llama.context_length", hm.U32, 128],
          ["llama.attention.layer_norm_rms_epsilon", hm.F32, 1e-5],
          ["llama.rope.freq_base", hm.F32, 10000.0],
          ["tokenizer.ggml.model", hm.STR, "gpt2"], ["tokenizer.ggml.pre", hm.STR, "smollm"],
          ["tokenizer.ggml.tokens", hm.ARR, (hm.STR, [chr(33 + i) for i in range(v)])],
          ["tokenizer.ggml.merges", hm.ARR, (hm.STR, [])],
          ["tokenizer.ggml.bos_token_id", hm.U32, 1], ["tokenizer.ggml.eos_token_id", hm.U32, 2]]
    shapes = [("token_embd.weight", [h, v])]
    for n, s in [("attn_norm", [h]), ("attn_q", [h, 2 * hd]), ("attn_k", [h, hd]),
                 ("attn_v", [h, hd]), ("attn_output", [2 * hd, h]), ("ffn_norm", [h]),
                 ("ffn_gate", [h, ff]), ("ffn_up", [h, ff]), ("ffn_down", [ff, h])]:
        shapes.append((f"blk.0.{n}.weight", s))
    shapes.append(("output_norm.weight", [h]))
    tensors, off = [], 0
    for n, dims in shapes:
        size = 4
        for d in dims:
            size *= d
        tensors.append([n, dims, 0, off])
        off += (size + 31) // 32 * 32
    g = {"version": 3, "kv": kv, "tensors": tensors, "data": b"\0" * off}
    hm.write_gguf(g, path)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    tiny = os.path.join(out, "tiny.gguf")
    tiny_gguf(tiny)
    put(out, "gguf", "tiny", open(tiny, "rb").read())
    os.remove(tiny)
    if len(sys.argv) > 2:
        g = hm.read_gguf(sys.argv[2])
        for e in g["kv"]:
            if e[1] == hm.ARR and len(e[2][1]) > 256:
                e[2] = (e[2][0], e[2][1][:256])
        g["tensors"], g["data"] = [], b""
        p = os.path.join(out, "model-header.gguf")
        hm.write_gguf(g, p)
        put(out, "gguf", "model-header", open(p, "rb").read())
        os.remove(p)
    for i, t in enumerate(sorted(glob.glob(os.path.join(repo, "tasks", "*.toml")))[:40]):
        put(out, "task_file", f"{i}", open(t).read() + "\0" + json.dumps(
            {"question": "Q?", "choices": {"text": ["a", "b"], "label": ["A", "B"]},
             "answerKey": "A", "label": 0, "ctx": "c", "endings": ["x", "y"]}))
    fc = os.path.join(repo, "tests", "fixtures", "fc")
    for i, line in enumerate(open(os.path.join(fc, "func_calling_eval.jsonl"))):
        r = json.loads(line)
        put(out, "tool_call", f"{i}", f"<tool_call>\n{r['completion']}\n</tool_call><|im_end|>")
        put(out, "json_judge", f"fc{i}", r["completion"] + "\0" + json.dumps(json.loads(r["tools"])[0]["function"]["parameters"]))
    for i, line in enumerate(open(os.path.join(fc, "json_mode_eval.jsonl"))):
        r = json.loads(line)
        put(out, "json_judge", f"json{i}", r["completion"] + "\0" + (r["schema"] if isinstance(r["schema"], str) else json.dumps(r["schema"])))
    put(out, "tool_call", "literal", "{'a': [1, 2.5, None, True, (3,)], \"b\": 'x\\n'}")
    reply = {"choices": [{"index": 0, "text": "", "logprobs": {
        "tokens": ["a", "b", "c", "d"], "token_logprobs": [None, -1.5, -0.25, -2.0],
        "top_logprobs": [None, {"b": -1.5}, {"c": -0.25}, {"x": -1.0}]}}]}
    put(out, "server_response", "one", bytes([0, 4, 1]) + json.dumps(reply).encode())
    put(out, "hf_config", "config", b"\0" + open(os.path.join(repo, "tests", "fixtures", "configs", sorted(os.listdir(os.path.join(repo, "tests", "fixtures", "configs")))[0]), "rb").read()
        if os.path.isdir(os.path.join(repo, "tests", "fixtures", "configs")) else b"\0{}")
    hdr = json.dumps({"model.norm.weight": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}).encode()
    hdr += b" " * ((-len(hdr)) % 8)
    put(out, "hf_config", "safetensors", b"\1" + struct.pack("<Q", len(hdr)) + hdr + b"\0" * 32)
    put(out, "request_cache", "empty", b"")
    put(out, "request_cache", "garbage", b'{"k":"00","v":1}\nnot json\n')
    print(f"seeds in {out}")


if __name__ == "__main__":
    main()
