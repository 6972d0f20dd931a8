#!/usr/bin/env python3
"""Fuzzes the GGUF reader, then what a loaded file feeds: the model, tokenizer, chat template.

Each input is a whole ``.gguf`` file, loaded with ``load_gguf_checkpoint`` (lfmrt's bounds-checked
header walk, the metadata's typed fields, the BPE tokenizer rebuilt from ``tokenizer.ggml.*``);
when it loads, a Model is built from it (tensor types, block shapes and sizes checked by the C++
core, the chat template compiled) and one forward step runs, and text goes through its tokenizer
both ways.

Contract: ``lfmrt.LoadError`` only, naming the file; no crash, no hang.
Seeds: fuzz/corpus/gguf (the micro model in f32 / f16 / bf16, and a width-32 twin with the
fixtures' tokenizer and template in Q8_0 / Q4_0).
"""
import functools

import atheris

import harness

with atheris.instrument_imports(include=["lfmrt"]):
    import lfmrt
    import lfmrt.text.chat_template
    from lfmrt.loaders import load_gguf_checkpoint

# Compiling a chat template costs tens of milliseconds, about two thirds of an input that loads:
# the Model takes a compiled template shared by the inputs with the same source (a failed
# compile is not cached: it raises, and the Model's LoadError is still checked). Compiling itself
# is fuzz_chat_template.py's to fuzz.
lfmrt.text.chat_template.ChatTemplate = functools.lru_cache(maxsize=64)(lfmrt.text.chat_template.ChatTemplate)

WORK = harness.scratch_dir()
PATH = WORK / "model.gguf"


def test_one_input(data: bytes) -> None:
    harness.write_fresh(PATH, data)
    try:
        checkpoint = load_gguf_checkpoint(PATH)
    except lfmrt.LoadError as error:
        harness.require_named(error, PATH)
        return
    model = lfmrt.Model(checkpoint, n_threads=1)
    model.session().append([0])
    if model.tokenizer is not None:
        model.detokenize(model.tokenize("Hi, Zürich! <|im_end|>"))


if __name__ == "__main__":
    harness.fuzz(test_one_input, (lfmrt.LoadError,))
