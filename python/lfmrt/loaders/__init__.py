"""Readers for model containers. Each returns zero-copy views of memory-mapped weights.

- :func:`load_hf_checkpoint`: a Hugging Face directory (config, safetensors, tokenizer, template).
- :func:`read_safetensors` / :func:`read_sharded_safetensors`: the safetensors container alone.
- :func:`load_config` / :func:`parse_config`: ``config.json`` in either LFM2 dialect.
"""

from .config import Lfm2Config, load_config, parse_config
from .hf import GenerationDefaults, HFCheckpoint, load_hf_checkpoint
from .safetensors import (
    DTYPE_SIZES,
    SafetensorsFile,
    TensorRef,
    read_safetensors,
    read_sharded_safetensors,
)

__all__ = [
    "DTYPE_SIZES",
    "GenerationDefaults",
    "HFCheckpoint",
    "Lfm2Config",
    "SafetensorsFile",
    "TensorRef",
    "load_config",
    "load_hf_checkpoint",
    "parse_config",
    "read_safetensors",
    "read_sharded_safetensors",
]
