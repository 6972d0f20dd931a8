"""Writes an LFM2 checkpoint (Hugging Face or GGUF) as a GGUF file that lfmrt and llama.cpp load.

The metadata is what llama.cpp's ``convert_hf_to_gguf.py`` writes for ``Lfm2ForCausalLM``, in its
order: ``general.*``, the ``lfm2.*`` hyper-parameters (per-layer KV head counts with 0 on
short-conv layers, the short-conv cache length, the RMSNorm epsilon, the RoPE base), the file
type, the byte-level BPE tokenizer (pre-tokenizer ``"lfm2"``) with its special tokens, and the
chat template. Tensor types follow :mod:`lfmrt.quantization`. Tensors are converted one at a time
while the file is written, so memory holds one tensor's worth of converted data, and the file is
written under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

from ..errors import LoadError
from ..loaders import Checkpoint
from ..loaders.gguf import ARCHITECTURE, gguf_tensor_names
from ..loaders.gguf_tokenizer import gguf_tokenizer_fields
from . import convert, nbytes, scheme, tensor_types

# GGUF's quantization_version for the block layouts written here (llama.cpp's current one).
QUANTIZATION_VERSION = 2

Progress = Callable[[int, int, str, str], None]


@dataclass(frozen=True)
class WrittenTensor:
    """One tensor of a written file: GGUF name, element type, shape (outermost first), bytes."""

    name: str
    dtype: str
    shape: Tuple[int, ...]
    nbytes: int


def _encodes_special(checkpoint: Checkpoint, role: str) -> bool:
    """Whether plain encoding adds the bos (``role="bos"``) or eos token, as the tokenizer's
    post-processor decides (this is what ``gguf.SpecialVocab`` reads too)."""
    tokenizer = checkpoint.tokenizer
    token = checkpoint.special_tokens.get(f"{role}_token")
    if tokenizer is None or token is None:
        return False
    token_id = tokenizer.token_to_id(token)
    with_special = tokenizer.encode("a", add_special_tokens=True).ids
    plain = tokenizer.encode("a", add_special_tokens=False).ids
    if len(with_special) == len(plain):
        return False
    return (with_special[0] if role == "bos" else with_special[-1]) == token_id


def _add_metadata(writer: GGUFWriter, checkpoint: Checkpoint, file_type: int, name: str) -> None:
    config = checkpoint.config
    writer.add_type("model")
    writer.add_name(name)
    generation = checkpoint.generation
    if generation.top_k is not None:
        writer.add_sampling_top_k(generation.top_k)
    if generation.top_p is not None:
        writer.add_sampling_top_p(generation.top_p)
    if generation.min_p is not None:
        writer.add_sampling_min_p(generation.min_p)
    if generation.temperature is not None:
        writer.add_sampling_temp(generation.temperature)
    if generation.repetition_penalty is not None:
        writer.add_sampling_penalty_repeat(generation.repetition_penalty)

    writer.add_block_count(config.n_layers)
    writer.add_context_length(config.max_context)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.ff_dim)
    writer.add_head_count(config.n_heads)
    writer.add_head_count_kv([config.n_kv_heads if kind == "full_attention" else 0 for kind in config.layer_types])
    if config.head_dim * config.n_heads != config.hidden_size:
        writer.add_key_length(config.head_dim)
        writer.add_value_length(config.head_dim)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_file_type(file_type)
    writer.add_vocab_size(config.vocab_size)
    writer.add_shortconv_l_cache(config.conv_kernel)
    writer.add_quantization_version(QUANTIZATION_VERSION)

    if checkpoint.tokenizer is not None:
        fields = gguf_tokenizer_fields(
            checkpoint.tokenizer,
            config.vocab_size,
            checkpoint.special_tokens,
            add_bos=_encodes_special(checkpoint, "bos"),
            add_eos=_encodes_special(checkpoint, "eos"),
        )
        for key, value in fields.items():
            if isinstance(value, str):
                writer.add_string(key, value)
            elif isinstance(value, bool):
                writer.add_bool(key, value)
            elif isinstance(value, int):
                writer.add_uint32(key, value)
            else:
                writer.add_array(key, value)
    if checkpoint.chat_template:
        writer.add_chat_template(checkpoint.chat_template)


def _plan(checkpoint: Checkpoint, types: Dict[str, str]) -> List[Tuple[str, str]]:
    """(canonical, GGUF) names in writing order: embedding, blocks in order, final norm, head."""
    names = gguf_tensor_names(checkpoint.config.n_layers)
    missing = [name for name in types if name not in names]
    if missing:
        raise LoadError(f"{checkpoint.path}: tensor {missing[0]!r} has no GGUF name for an LFM2 model")
    order = {canonical: i for i, canonical in enumerate(names)}
    first = ["embed_tokens.weight"]
    last = ["embedding_norm.weight", "lm_head.weight"]

    def key(canonical: str) -> Tuple[int, int]:
        if canonical in first:
            return (0, 0)
        if canonical in last:
            return (2, last.index(canonical))
        return (1, order[canonical])

    return [(canonical, names[canonical]) for canonical in sorted(types, key=key)]


def write_gguf(
    checkpoint: Checkpoint,
    out: Union[str, "os.PathLike[str]"],
    scheme_name: str = "f16",
    *,
    head_type: Optional[str] = None,
    name: Optional[str] = None,
    progress: Optional[Progress] = None,
) -> List[WrittenTensor]:
    """Writes ``checkpoint`` to ``out`` as an LFM2 GGUF file with ``scheme_name``'s tensor types.

    Args:
        checkpoint: from :func:`~lfmrt.loaders.load_checkpoint` (a HF directory or a GGUF file;
            quantized sources are dequantized first, which compounds rounding).
        out: the file to write (replaced only once the new one is complete).
        scheme_name: ``f32``, ``f16``, ``bf16``, ``q8_0``, ``q4_0``, ``q4_k_m``, ``q5_k_m``, ``q6_k``.
        head_type: element type for the LM head (the tied embedding, if tied) instead of the
            policy's choice.
        name: ``general.name`` (default: the source's file or directory name).
        progress: called after each tensor as ``progress(done, total, gguf_name, dtype)``.

    Returns:
        What was written, tensor by tensor.

    Raises:
        ValueError: an unknown scheme or head type.
        LoadError: a tensor with no LFM2 GGUF name, or an unusable tokenizer.
        OSError: the file cannot be written.
    """
    chosen = scheme(scheme_name)
    config = checkpoint.config
    tied = config.tie_embeddings
    tensors = {n: ref for n, ref in checkpoint.tensors.items() if not (tied and n == "lm_head.weight")}
    types = tensor_types(config, {n: ref.shape for n, ref in tensors.items()}, chosen, head_type)
    plan = _plan(checkpoint, types)

    out = os.fspath(out)
    default_name = os.path.splitext(os.path.basename(os.path.normpath(checkpoint.path)))[0]
    partial = out + ".partial"
    writer = GGUFWriter(partial, ARCHITECTURE)
    written: List[WrittenTensor] = []
    try:
        _add_metadata(writer, checkpoint, int(chosen.file_type), name or default_name)
        for canonical, gguf_name in plan:
            shape = tensors[canonical].shape
            if canonical.endswith("conv.conv.weight"):
                shape = (shape[0], shape[-1])  # llama.cpp's ssm_conv wants (hidden, k)
            dtype = types[canonical]
            size = nbytes(dtype, shape)
            byte_shape = tuple(shape[:-1]) + (size // max(1, int(np.prod(shape[:-1], dtype=np.int64))),)
            writer.add_tensor_info(gguf_name, byte_shape, np.dtype(np.uint8), size, GGMLQuantizationType[dtype])
            written.append(WrittenTensor(gguf_name, dtype, tuple(shape), size))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for done, ((canonical, gguf_name), info) in enumerate(zip(plan, written), start=1):
            data = convert(tensors[canonical], info.dtype).data
            writer.write_tensor_data(np.ascontiguousarray(data).reshape(-1))
            if progress is not None:
                progress(done, len(plan), gguf_name, info.dtype)
        writer.close()
        os.replace(partial, out)
    except BaseException:
        writer.close()
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return written


__all__ = ["QUANTIZATION_VERSION", "WrittenTensor", "write_gguf"]
