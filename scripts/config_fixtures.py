"""Write config.json files the way the installed transformers writes them, and what transformers
reads back from each (the values that change the numbers). Needs only transformers (no torch).

Usage: python config_fixtures.py OUT_DIR [EXPORT_DIR]
With EXPORT_DIR (the test model as `hermes-eval export` writes it) and transformers 5, also writes
OUT_DIR/smollm2-135m-tf5.json: that config.json loaded and saved again by transformers 5.
Writes OUT_DIR/tf<major>/<case>.json = {"transformers": version, "config": <config.json as
saved>, "read": <what transformers reads from it>}. Cases that start from a hand-written dict
(missing fields) are loaded with from_dict, not written by the class.
"""
import json
import os
import sys

import transformers
from transformers import AutoConfig, LlamaConfig, MistralConfig

MAJOR = int(transformers.__version__.split(".")[0])


def rope_of(c):
    """(rope_theta, rope parameters without theta) as this transformers understands them."""
    if MAJOR >= 5:
        p = dict(c.rope_parameters or {})
        theta = p.pop("rope_theta", None)
        return theta, p
    s = dict(getattr(c, "rope_scaling", None) or {})
    if "type" in s and "rope_type" not in s:
        s["rope_type"] = s.pop("type")
    s.pop("type", None)
    if not s:
        s = {"rope_type": "default"}
    return c.rope_theta, s


def read(c):
    t = c.get_text_config() if hasattr(c, "get_text_config") else c
    theta, rope = rope_of(t)
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    eos = t.eos_token_id
    return {
        "model_type": t.model_type,
        "hidden_size": t.hidden_size,
        "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_hidden_layers,
        "num_attention_heads": t.num_attention_heads,
        "num_key_value_heads": t.num_key_value_heads,
        "head_dim": head_dim,
        "rms_norm_eps": t.rms_norm_eps,
        "rope_theta": theta,
        "rope": rope,
        "max_position_embeddings": t.max_position_embeddings,
        "vocab_size": t.vocab_size,
        # the text model's flag decides (PreTrainedModel.tie_weights reads get_text_config())
        "tie_word_embeddings": bool(getattr(t, "tie_word_embeddings", False)),
        "sliding_window": getattr(t, "sliding_window", None) if t.model_type == "mistral" else None,
        "bos_token_id": t.bos_token_id,
        "eos_token_ids": eos if isinstance(eos, list) else ([] if eos is None else [eos]),
    }


LLAMA31 = dict(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
    rms_norm_eps=1e-5, bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
    tie_word_embeddings=False,
)
LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def rope_kwargs(theta, scaling):
    """Constructor arguments for RoPE in this transformers' own vocabulary."""
    if MAJOR >= 5:
        p = {"rope_type": "default"} if scaling is None else dict(scaling)
        p["rope_theta"] = theta
        return {"rope_parameters": p}
    return {"rope_theta": theta} if scaling is None else {"rope_theta": theta, "rope_scaling": scaling}


def written():
    """Configs built by the config classes and saved with save_pretrained."""
    yield "llama2", LlamaConfig(**rope_kwargs(10000.0, None))
    yield "llama31", LlamaConfig(**LLAMA31, **rope_kwargs(500000.0, LLAMA31_ROPE))
    yield "llama_linear", LlamaConfig(
        max_position_embeddings=4096, **rope_kwargs(10000.0, {"rope_type": "linear", "factor": 2.0}))
    yield "llama_dynamic", LlamaConfig(
        max_position_embeddings=4096, **rope_kwargs(10000.0, {"rope_type": "dynamic", "factor": 2.0}))
    yield "llama_yarn", LlamaConfig(
        max_position_embeddings=32768,
        **rope_kwargs(1000000.0, {"rope_type": "yarn", "factor": 4.0,
                                  "original_max_position_embeddings": 8192}))
    yield "llama_head_dim", LlamaConfig(
        hidden_size=2048, num_attention_heads=16, num_key_value_heads=2, head_dim=256,
        **rope_kwargs(10000.0, None))
    # Mistral 7B v0.1 (Hermes 2 Pro's base: 32,032 tokens with the added ChatML ones).
    yield "mistral_v01", MistralConfig(
        vocab_size=32032, max_position_embeddings=32768, sliding_window=4096,
        rms_norm_eps=1e-5, **rope_kwargs(10000.0, None))
    # Mistral 7B v0.2+: no sliding window, theta 1e6.
    yield "mistral_v02", MistralConfig(
        max_position_embeddings=32768, sliding_window=None, rms_norm_eps=1e-5,
        **rope_kwargs(1000000.0, None))
    try:
        from transformers import LlavaConfig
        yield "llava_llama31", LlavaConfig(
            text_config=LlamaConfig(**LLAMA31, **rope_kwargs(500000.0, LLAMA31_ROPE)).to_dict())
    except ImportError:
        pass


def from_dicts():
    """Hand-written configs with fields missing: what transformers fills in."""
    yield "llama_missing", {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    yield "mistral_missing", {"architectures": ["MistralForCausalLM"], "model_type": "mistral"}


def main(out):
    d = os.path.join(out, f"tf{MAJOR}")
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, ".tmp")
    for name, cfg in written():
        cfg.save_pretrained(tmp)
        with open(os.path.join(tmp, "config.json")) as f:
            saved = json.load(f)
        back = AutoConfig.from_pretrained(tmp)
        dump(d, name, saved, read(back))
    for name, raw in from_dicts():
        cls = {"llama": LlamaConfig, "mistral": MistralConfig}[raw["model_type"]]
        dump(d, name, raw, read(cls.from_dict(dict(raw))))
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)


def dump(d, name, saved, got):
    with open(os.path.join(d, name + ".json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "config": saved, "read": got},
                  f, indent=1, sort_keys=True)
        f.write("\n")


def resave_export(out, export):
    c = AutoConfig.from_pretrained(export)
    tmp = os.path.join(out, ".tmp-export")
    c.save_pretrained(tmp)
    with open(os.path.join(tmp, "config.json")) as f:
        saved = json.load(f)
    os.remove(os.path.join(tmp, "config.json"))
    os.rmdir(tmp)
    dump(out, "smollm2-135m-tf5", saved, read(c))


if __name__ == "__main__":
    main(sys.argv[1])
    if len(sys.argv) > 2 and MAJOR >= 5 and os.path.isfile(os.path.join(sys.argv[2], "config.json")):
        resave_export(sys.argv[1], sys.argv[2])
