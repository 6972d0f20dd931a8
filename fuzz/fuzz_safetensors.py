#!/usr/bin/env python3
"""Fuzzes the safetensors loader, then the weight binding behind it.

Each input is a whole ``model.safetensors`` file in a directory with the micro model's
config.json, loaded with ``load_hf_checkpoint`` (``read_safetensors`` inside it); every tensor is
viewed with ``TensorRef.array()``; a Model is built from the checkpoint (the C++ core binds every
tensor against the config's shapes and dtypes) and one forward step runs on whatever numbers the
file holds.

Contract: ``lfmrt.LoadError`` only, and the loader's errors name the file or its directory; no
crash, no hang.
Seeds: fuzz/corpus/safetensors (the micro model in F32, BF16, F16).

    fuzz/run.sh safetensors          (or: python fuzz/fuzz_safetensors.py CORPUS... -flags)
"""
import shutil

import atheris

import harness

with atheris.instrument_imports(include=["lfmrt"]):
    import lfmrt
    from lfmrt.loaders import load_hf_checkpoint

WORK = harness.scratch_dir()
shutil.copy(harness.MICRO_MODEL / "config.json", WORK / "config.json")
WEIGHTS = WORK / "model.safetensors"


def test_one_input(data: bytes) -> None:
    harness.write_fresh(WEIGHTS, data)
    try:
        checkpoint = load_hf_checkpoint(WORK)
    except lfmrt.LoadError as error:
        harness.require_named(error, WORK)
        return
    for ref in checkpoint.tensors.values():
        ref.array()
    model = lfmrt.Model(checkpoint, n_threads=1)
    model.session().append([1, 2])


if __name__ == "__main__":
    harness.fuzz(test_one_input, (lfmrt.LoadError,))
