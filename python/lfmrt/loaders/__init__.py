"""Readers for model containers. Each returns zero-copy views of memory-mapped weights.

- :func:`load_checkpoint`: either of the two below, by what the path is.
- :func:`load_hf_checkpoint`: a Hugging Face directory (config, safetensors, tokenizer, template).
- :func:`load_gguf_checkpoint`: an LFM2 GGUF file (as llama.cpp's converter writes it).
- :func:`read_safetensors` / :func:`read_sharded_safetensors`: the safetensors container alone.
- :func:`load_config` / :func:`parse_config`: ``config.json`` in either LFM2 dialect.
"""

import os
from typing import Union

from .config import Lfm2Config, load_config, parse_config
from .gguf import GGUFCheckpoint, load_gguf_checkpoint
from .hf import GenerationDefaults, HFCheckpoint, load_hf_checkpoint
from .safetensors import (
    DTYPE_SIZES,
    SafetensorsFile,
    TensorRef,
    read_safetensors,
    read_sharded_safetensors,
)

Checkpoint = Union[HFCheckpoint, GGUFCheckpoint]


def load_checkpoint(path: Union[str, "os.PathLike[str]"]) -> Checkpoint:
    """Loads a file (or a path ending in ``.gguf``) with :func:`load_gguf_checkpoint`, anything
    else (a Hugging Face directory) with :func:`load_hf_checkpoint`."""
    if os.path.isfile(path) or (os.fspath(path).lower().endswith(".gguf") and not os.path.isdir(path)):
        return load_gguf_checkpoint(path)
    return load_hf_checkpoint(path)


__all__ = [
    "Checkpoint",
    "DTYPE_SIZES",
    "GGUFCheckpoint",
    "GenerationDefaults",
    "HFCheckpoint",
    "Lfm2Config",
    "SafetensorsFile",
    "TensorRef",
    "load_checkpoint",
    "load_config",
    "load_gguf_checkpoint",
    "load_hf_checkpoint",
    "parse_config",
    "read_safetensors",
    "read_sharded_safetensors",
]
