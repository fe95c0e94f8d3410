#!/usr/bin/env python3
"""Write tests/fixtures/torch_f32.json: PyTorch's own CPU float32 results for the inputs that
tests/torch_sum.rs rebuilds from the same integer generator, so the fixture holds only outputs.

- "sums": `torch.tensor(v, dtype=float32).sum()` of per-token-log-probability-like vectors
  (lengths 1..2048);
- "log_softmax": `torch.log_softmax(row, -1)` of logit-like rows (vocabulary 49152, as SmolLM2) at
  a few token ids, and each row's argmax;
- "continuations": lm-evaluation-harness's computation on such rows: log_softmax, gather of the
  continuation tokens, `.sum()`, `float()`;
- "log_sums": `-log_softmax(row)[argmax]` = torch's `log(sum(exp(x - max)))` for 4,286 rows of
  4,096 values, all `c = -k/1024` but a 0 at `(7919 k) % 4096` (k = 1, 8, .., 29,996): enough
  sums to tell SLEEF's `logf_u10` from a correctly rounded log (they differ on ~0.3 %).

Usage (torch from PyPI; the CPU kernels are the same in the CUDA wheels):
    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch numpy
    /tmp/tv/bin/python scripts/torch_reference.py > tests/fixtures/torch_f32.json
"""
import json
import sys

import numpy as np
import torch

MASK = (1 << 64) - 1
VOCAB = 49152


class SplitMix64:
    """splitmix64, as in tests/torch_sum.rs."""

    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def logprob_like(rng, n):
    """Negative floats, log-uniform in magnitude over [2^-14, 2^5): exponent and mantissa bits
    drawn directly, so every f32 mantissa occurs."""
    out = np.empty(n, dtype=np.uint32)
    for i in range(n):
        u = rng.next()
        e = 127 - 14 + (u >> 59) % 19
        out[i] = (1 << 31) | (e << 23) | (u & 0x7FFFFF)
    return out.view(np.float32)


def logit_row(rng):
    """Logit-like row: a triangular bulk on [-8, 8) plus 6 peaks of +4..+20, all multiples of
    2^-18 (exact in f32 and in both generators)."""
    a = np.empty(VOCAB, dtype=np.int64)
    for i in range(VOCAB):
        u = rng.next()
        a[i] = (u >> 42) + ((u >> 20) & 0x3FFFFF) - (1 << 22)
    for _ in range(6):
        u = rng.next()
        a[(u >> 32) % VOCAB] += (1 << 21) + (u & 0xFFFFFFFF) % (1 << 23)
    return (a.astype(np.float64) * 2.0**-19).astype(np.float32)


def targets(rng, n):
    return [int(rng.next() % VOCAB) for _ in range(n)]


SUM_LENGTHS = [1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 100,
               127, 128, 129, 149, 200, 255, 256, 257, 300, 511, 512, 513, 777, 1000, 1023,
               1024, 1025, 1500, 2047, 2048]


def main():
    out = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    sums = []
    for n in SUM_LENGTHS:
        v = logprob_like(SplitMix64(1000 + n), n)
        sums.append({"seed": 1000 + n, "len": n, "sum": float(torch.from_numpy(v).sum())})
    out["sums"] = sums

    rows = []
    for seed in range(1, 9):
        rng = SplitMix64(seed)
        row = logit_row(rng)
        ids = targets(rng, 8)
        lsm = torch.log_softmax(torch.from_numpy(row), -1)
        rows.append({
            "seed": seed,
            "targets": ids,
            "values": [float(lsm[i]) for i in ids],
            "argmax": int(lsm.argmax()),
        })
    out["log_softmax"] = rows

    conts = []
    for seed, n in [(101, 1), (102, 7), (103, 40), (104, 149)]:
        rng = SplitMix64(seed)
        logits = torch.from_numpy(np.stack([logit_row(rng) for _ in range(n)])).unsqueeze(0)
        ids = targets(rng, n)
        lsm = torch.log_softmax(logits, dim=-1)
        picked = torch.gather(lsm, 2, torch.tensor(ids).view(1, n, 1)).squeeze(-1)
        conts.append({"seed": seed, "len": n, "targets": ids, "sum": float(picked.sum())})
    out["continuations"] = conts

    ks = torch.arange(1, 30001, 7)
    c = (-ks.double() * 2.0**-10).float()
    rows = c.view(-1, 1).repeat(1, 4096)
    pos = (ks * 7919) % 4096
    rows[torch.arange(len(ks)), pos] = 0.0
    lsm = torch.log_softmax(rows, -1)
    out["log_sums"] = {"k_step": 7, "values": (-lsm[torch.arange(len(ks)), pos]).tolist()}
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
