"""Tiny randomly initialised Llama/Mistral models saved by transformers, with the per-position
log-probabilities transformers computes for a fixed token sequence (f32, eager attention).

Usage: python arch_fixtures.py OUT_DIR   (needs transformers 5 and torch)
Writes OUT_DIR/<case>/{config.json, model.safetensors, tokenizer.json, expected.json};
expected.json holds the token ids and logprobs[t] = log p(ids[t+1] | ids[..=t]) for every
position t. tokenizer.json: byte-level BPE over the 256 byte symbols (no merges) plus, where the
model's vocabulary is larger, added special tokens `<|added_N|>` with ids from 256 on.
"""
import json
import os
import sys

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

BASE_VOCAB = 256
ADDED = 32  # tokens beyond the base vocabulary, like Hermes 2 Pro's 32,000 + 32
SEQ = 40

COMMON = dict(
    hidden_size=64, intermediate_size=96, num_hidden_layers=2, head_dim=16,
    rms_norm_eps=1e-5, max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
    tie_word_embeddings=False,
)


def cases():
    # Mistral, sliding window (8) much shorter than the sequence, GQA 8:1, untied head, added
    # tokens used in the input.
    yield "mistral_window_gqa8", MistralForCausalLM, MistralConfig(
        **COMMON, vocab_size=BASE_VOCAB + ADDED, num_attention_heads=8, num_key_value_heads=1,
        sliding_window=8, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    # Llama 3.1 RoPE scaling with a small original context so that every band of the scaling
    # (kept, interpolated, divided) is used by head_dim 16.
    yield "llama31_rope", LlamaForCausalLM, LlamaConfig(
        **COMMON, vocab_size=BASE_VOCAB + ADDED, num_attention_heads=4, num_key_value_heads=2,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 16})
    yield "llama_yarn", LlamaForCausalLM, LlamaConfig(
        **COMMON, vocab_size=BASE_VOCAB, num_attention_heads=4, num_key_value_heads=4,
        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                         "original_max_position_embeddings": 16})
    yield "llama_linear", LlamaForCausalLM, LlamaConfig(
        **COMMON, vocab_size=BASE_VOCAB, num_attention_heads=4, num_key_value_heads=1,
        rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})


def tokenizer(vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import AddedToken
    # GPT-2's bytes_to_unicode(): token id = byte value
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_to_char = dict(zip(bs, (chr(c) for c in cs)))
    vocab = {byte_to_char[b]: b for b in range(256)}
    t = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens([AddedToken(f"<|added_{i}|>", special=True, normalized=False)
                          for i in range(vocab_size - 256)])
    return t


def main(out):
    for name, cls, cfg in cases():
        torch.manual_seed(0)
        cfg._attn_implementation = "eager"
        model = cls(cfg).to(torch.float32).eval()
        # Larger weights than the default init (std 0.02) so attention and RoPE matter.
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.normal_(0.0, 0.3)
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, cfg.vocab_size, (1, SEQ), generator=g)
        # the text "a<|added_3|>b" where the vocabulary has added tokens: ids 97, 259, 98
        if cfg.vocab_size > 256:
            ids[0, 5:8] = torch.tensor([97, 259, 98])
        with torch.no_grad():
            logits = model(ids).logits[0].double()
        lp = torch.log_softmax(logits, dim=-1)
        target = [float(lp[t, ids[0, t + 1]]) for t in range(SEQ - 1)]
        d = os.path.join(out, name)
        model.save_pretrained(d, safe_serialization=True)
        for f in os.listdir(d):
            if f not in ("config.json", "model.safetensors"):
                os.remove(os.path.join(d, f))
        tok = tokenizer(cfg.vocab_size)
        tok.save(os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                       "ids": ids[0].tolist(), "logprobs": target}, f, indent=1)
            f.write("\n")
        print(name, os.path.getsize(os.path.join(d, "model.safetensors")), "bytes")


if __name__ == "__main__":
    main(sys.argv[1])
