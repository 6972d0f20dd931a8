"""Weight types and which tensor gets which: the policy shared by quantize-on-load and GGUF out.

A *scheme* is what a user asks for (``"q4_k_m"``, ``"q8_0"``, ``"f16"``, ...); the policy turns it
into one element type per tensor, following llama.cpp's ``llama-quant.cpp`` so that lfmrt's
files hold what llama.cpp's own quantizer would write for LFM2:

* 1-D tensors (norms, biases) and the short-conv taps (``conv.conv.weight``) stay F32 in every
  scheme, as llama.cpp's converter and quantizer keep them.
* The LM head (``lm_head.weight``, or ``embed_tokens.weight`` when the head is tied to it) is
  Q6_K in every block scheme except Q8_0, which keeps Q8_0. An untied ``embed_tokens`` takes the
  scheme's base type.
* Q4_K_M and Q5_K_M give Q6_K to ``v_proj`` and ``w2`` (llama.cpp's ``attn_v`` / ``ffn_down``) in
  the layers llama.cpp's ``use_more_bits`` picks: the first and last eighth and every third
  layer between.
* A row length the type's block does not divide falls back to a type it does: K types (256
  values a block) to Q8_0, Q8_0 and Q4_0 (32 a block) to F16. (llama.cpp falls back from Q4_K
  to Q5_0 and from Q5_K to Q5_1, which lfmrt does not implement; Q8_0 is the next type up.)

Element types are spelled as lfmrt's C++ core and GGUF spell them: ``F32``, ``F16``, ``BF16``,
``Q8_0``, ``Q4_0``, ``Q4_K``, ``Q5_K``, ``Q6_K``.

:mod:`lfmrt.quantization.gguf_writer` writes a checkpoint as a GGUF file with these types.
"""

from __future__ import annotations

import dataclasses
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType
from gguf import quants as gguf_quants

from .. import _core
from ..devices import physical_core_count
from ..loaders import Checkpoint
from ..loaders.config import Lfm2Config
from ..loaders.safetensors import TensorRef

FLOAT_TYPES = ("F32", "F16", "BF16")
BLOCK_TYPES = ("Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K")
DTYPES = FLOAT_TYPES + BLOCK_TYPES

# (values per block, bytes per block) of each element type, as in GGUF.
BLOCK_SIZES: Dict[str, Tuple[int, int]] = {name: GGML_QUANT_SIZES[GGMLQuantizationType[name]] for name in DTYPES}


@dataclass(frozen=True)
class Scheme:
    """A quantization scheme a user can ask for.

    Attributes:
        name: the user-facing name (``"q4_k_m"``).
        base: the element type of most 2-D weights.
        file_type: GGUF ``general.file_type`` (llama.cpp's ``llama_ftype``).
        more_bits: Q6_K for ``v_proj``/``w2`` in llama.cpp's chosen layers (the ``_M`` mixes).
    """

    name: str
    base: str
    file_type: int
    more_bits: bool = False

    @property
    def quantized(self) -> bool:
        """Whether the scheme uses block types at all."""
        return self.base in BLOCK_TYPES


SCHEMES: Dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme("f32", "F32", LlamaFileType.ALL_F32),
        Scheme("f16", "F16", LlamaFileType.MOSTLY_F16),
        Scheme("bf16", "BF16", LlamaFileType.MOSTLY_BF16),
        Scheme("q8_0", "Q8_0", LlamaFileType.MOSTLY_Q8_0),
        Scheme("q4_0", "Q4_0", LlamaFileType.MOSTLY_Q4_0),
        Scheme("q4_k_m", "Q4_K", LlamaFileType.MOSTLY_Q4_K_M, more_bits=True),
        Scheme("q5_k_m", "Q5_K", LlamaFileType.MOSTLY_Q5_K_M, more_bits=True),
        Scheme("q6_k", "Q6_K", LlamaFileType.MOSTLY_Q6_K),
    )
}


def scheme(name: str) -> Scheme:
    """The scheme called ``name`` (case-insensitive).

    Raises:
        ValueError: naming the known schemes, for any other name.
    """
    found = SCHEMES.get(name.lower()) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f"unknown quantization type {name!r}; choose one of {', '.join(SCHEMES)}")
    return found


def nbytes(dtype: str, shape: Sequence[int]) -> int:
    """Bytes a tensor of ``shape`` (outermost first) takes in ``dtype``."""
    per_block, block_bytes = BLOCK_SIZES[dtype]
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    return n // per_block * block_bytes


def _use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's choice of layers that get more bits in the ``_M`` mixes."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _fits(dtype: str, cols: int) -> str:
    """``dtype``, or the type llama.cpp-style fallback picks when its block does not divide ``cols``."""
    if cols % BLOCK_SIZES[dtype][0] == 0:
        return dtype
    if dtype in ("Q4_K", "Q5_K", "Q6_K") and cols % BLOCK_SIZES["Q8_0"][0] == 0:
        return "Q8_0"
    return "F16"


_LAYER = re.compile(r"layers\.(\d+)\.")


def tensor_types(
    config: Lfm2Config,
    shapes: Mapping[str, Sequence[int]],
    chosen: Scheme,
    head_type: Optional[str] = None,
) -> Dict[str, str]:
    """The element type each tensor gets under ``chosen``.

    Args:
        config: the model's config (layer kinds, tied head).
        shapes: canonical tensor name -> shape (outermost first).
        chosen: the scheme.
        head_type: overrides the type of the LM head (``lm_head.weight``, or the tied
            ``embed_tokens.weight``), like llama-quantize's ``--output-tensor-type``.

    Raises:
        ValueError: ``head_type`` is not an element type.
    """
    if head_type is not None and head_type not in DTYPES:
        raise ValueError(f"unknown head type {head_type!r}; choose one of {', '.join(DTYPES)}")
    head = "embed_tokens.weight" if config.tie_embeddings else "lm_head.weight"
    attention_layers = [i for i, kind in enumerate(config.layer_types) if kind == "full_attention"]
    types: Dict[str, str] = {}
    for name, shape in shapes.items():
        if len(shape) < 2 or name.endswith("conv.conv.weight"):
            types[name] = "F32"
            continue
        dtype = chosen.base
        layer = _LAYER.match(name)
        if name == head:
            if head_type is not None:
                dtype = head_type
            elif chosen.quantized and chosen.base != "Q8_0":
                dtype = "Q6_K"
        elif chosen.more_bits and layer is not None:
            i = int(layer.group(1))
            if name.endswith("feed_forward.w2.weight") and _use_more_bits(i, config.n_layers):
                dtype = "Q6_K"
            elif name.endswith("self_attn.v_proj.weight") and _use_more_bits(
                attention_layers.index(i), len(attention_layers)
            ):
                dtype = "Q6_K"
        types[name] = _fits(dtype, int(shape[-1])) if dtype in BLOCK_TYPES else dtype
    return types


def to_f32(ref: TensorRef) -> np.ndarray:
    """The tensor's values as a new float32 array of its shape (any element type)."""
    if ref.dtype == "F32":
        return ref.data.view(np.float32).reshape(ref.shape).copy()
    if ref.dtype == "F16":
        return ref.data.view(np.float16).astype(np.float32).reshape(ref.shape)
    if ref.dtype == "BF16":
        return (ref.data.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(ref.shape)
    return np.asarray(_core.dequantize(ref.data, ref.dtype, list(ref.shape)))


def encode(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` (float32, any shape, rows along the last axis) stored as ``dtype``: a flat
    ``uint8`` array in GGUF's layout.

    F16 rounds to nearest even (as numpy and llama.cpp's converter do); BF16 rounds to nearest
    even (as ``gguf.quants`` does); block types use lfmrt's reference quantizers
    (``_core.quantize``).
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "F32":
        return values.reshape(-1).view(np.uint8)
    if dtype == "F16":
        return values.astype(np.float16).reshape(-1).view(np.uint8)
    if dtype == "BF16":
        return gguf_quants.quantize(values, GGMLQuantizationType.BF16).reshape(-1)
    rows = values.reshape(-1, values.shape[-1])
    # _core.quantize releases the GIL: split the rows across the cores (K types search scales).
    chunks = np.array_split(rows, min(physical_core_count(), max(1, len(rows) // 64)))
    if len(chunks) == 1:
        return np.asarray(_core.quantize(rows, dtype)).reshape(-1)
    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = list(pool.map(lambda chunk: np.asarray(_core.quantize(chunk, dtype)), chunks))
    return np.concatenate(parts, axis=0).reshape(-1)


def convert(ref: TensorRef, dtype: str) -> TensorRef:
    """``ref`` stored as ``dtype`` (the same object when it already is)."""
    if ref.dtype == dtype:
        return ref
    data = encode(to_f32(ref), dtype)
    return TensorRef(name=ref.name, dtype=dtype, shape=ref.shape, data=data, file=ref.file)


def quantize_checkpoint(checkpoint: Checkpoint, scheme_name: str, head_type: Optional[str] = None) -> Checkpoint:
    """A copy of ``checkpoint`` (HF or GGUF) whose tensors are stored as ``scheme_name`` asks.

    Tensors that keep their type stay zero-copy views; converted ones are new in-memory arrays.

    Raises:
        ValueError: an unknown scheme or head type.
    """
    chosen = scheme(scheme_name)
    shapes = {name: ref.shape for name, ref in checkpoint.tensors.items()}
    types = tensor_types(checkpoint.config, shapes, chosen, head_type)
    return dataclasses.replace(checkpoint, tensors=dict(convert_all(checkpoint.tensors, types)))


def convert_all(
    tensors: Mapping[str, TensorRef], types: Mapping[str, str]
) -> Iterator[Tuple[str, TensorRef]]:
    """Yields ``(name, tensor as types[name])`` one tensor at a time, in ``types``' order."""
    for name, dtype in types.items():
        yield name, convert(tensors[name], dtype)


__all__ = [
    "BLOCK_SIZES",
    "BLOCK_TYPES",
    "DTYPES",
    "FLOAT_TYPES",
    "SCHEMES",
    "Scheme",
    "convert",
    "convert_all",
    "encode",
    "nbytes",
    "quantize_checkpoint",
    "scheme",
    "tensor_types",
    "to_f32",
]
