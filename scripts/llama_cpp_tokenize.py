#!/usr/bin/env python3
"""Tokenize llama.cpp conformance cases with llama.cpp itself (llama-cpp-python, vocab only).

Usage: llama_cpp_tokenize.py GGUF INP
INP is a `ggml-vocab-*.gguf.inp` file (cases separated by `\\n__ggml_vocab_test__\\n`); prints one
line of ids per case, tokenized as llama.cpp's test-tokenizer-0 does (add_special=false,
parse_special=false). Run with the python of scripts/build-llama-cpp.sh's venv, with
LLAMA_CPP_LIB_PATH=<that dir>/lib where the script built a shared libllama.
"""
import sys

import llama_cpp

SEP = "\n__ggml_vocab_test__\n"
model = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
text = open(sys.argv[2], encoding="utf-8").read()
cases = text.split(SEP)
if text.endswith(SEP):
    cases.pop()
for case in cases:
    ids = model.tokenize(case.encode("utf-8"), add_bos=False, special=False)
    print(" ".join(str(i) for i in ids))
