"""Loads an LFM2 GGUF file (architecture ``lfm2``, as llama.cpp's converter writes it).

The container is read by lfmrt's own reader, :func:`_walk_header`, straight from a read-only
memory map: one pass over the header checks every string, array and tensor-info record against
the file's real size (and every tensor type and data range) while it decodes the metadata (numeric
arrays in one ``numpy.frombuffer`` call, string arrays in a tight loop) and collects the tensor
infos. Tensors become ``uint8`` views of exactly their bytes inside the mapping, never copies. The
``gguf`` package's ``GGUFReader`` is not on the load path, for two reasons. Speed: it parses every
array element separately, which costs over a second for a 65k-token vocabulary, several times the
rest of the load. Safety: it trusts the file (a huge array count can make it loop for a very long
time, and garbage raises whatever numpy raises), whereas every malformed header here is a
:class:`~lfmrt.errors.LoadError` naming the file and the offending key or tensor, raised before
anything is allocated from a count the file claims. The ``gguf`` package still supplies the
format's constants and writes files, and the tests check this reader against ``GGUFReader``.

llama.cpp's layout, for the record: GGUF lists dimensions innermost first, so a ``[n_embd,
n_vocab]`` GGUF tensor is a row-major ``(n_vocab, n_embd)`` matrix, the Hugging Face shape; the
converter permutes nothing for LFM2 (no q/k RoPE permutation) and only squeezes the short-conv
weight from ``(hidden, 1, k)`` to ``(hidden, k)``, which the loader restores. A tied model has no
``output.weight``.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType
from tokenizers import Tokenizer

from ..errors import LoadError
from .config import Lfm2Config
from .gguf_tokenizer import TOKENIZER_ARRAYS, tokenizer_from_gguf
from .hf import GenerationDefaults
from .safetensors import MAX_DIMENSION, TensorRef

ARCHITECTURE = "lfm2"
GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

# GGML type id -> lfmrt dtype name, for the types lfmrt computes with.
GGML_DTYPES: Dict[int, str] = {
    int(GGMLQuantizationType[name]): name for name in ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K")
}
# (values per block, bytes per block) by GGML type id.
_BLOCKS: Dict[int, Tuple[int, int]] = {i: GGML_QUANT_SIZES[GGMLQuantizationType(i)] for i in GGML_DTYPES}

# Canonical (Hugging Face without "model.") -> GGUF tensor names: llama.cpp's LFM2 name map
# (gguf-py's tensor_mapping.py). "{i}" is the block index.
GLOBAL_TENSOR_NAMES = {
    "embed_tokens.weight": "token_embd.weight",
    "embedding_norm.weight": "token_embd_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_TENSOR_NAMES = {
    "operator_norm.weight": "attn_norm.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "feed_forward.w1.weight": "ffn_gate.weight",
    "feed_forward.w3.weight": "ffn_up.weight",
    "feed_forward.w2.weight": "ffn_down.weight",
    "conv.in_proj.weight": "shortconv.in_proj.weight",
    "conv.in_proj.bias": "shortconv.in_proj.bias",
    "conv.conv.weight": "shortconv.conv.weight",
    "conv.conv.bias": "shortconv.conv.bias",
    "conv.out_proj.weight": "shortconv.out_proj.weight",
    "conv.out_proj.bias": "shortconv.out_proj.bias",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.out_proj.weight": "attn_output.weight",
    "self_attn.q_layernorm.weight": "attn_q_norm.weight",
    "self_attn.k_layernorm.weight": "attn_k_norm.weight",
}


def gguf_tensor_names(n_layers: int) -> Dict[str, str]:
    """Canonical name -> GGUF name for every tensor an LFM2 model of ``n_layers`` blocks may have."""
    names = dict(GLOBAL_TENSOR_NAMES)
    for i in range(n_layers):
        for canonical, gguf_name in LAYER_TENSOR_NAMES.items():
            names[f"layers.{i}.{canonical}"] = f"blk.{i}.{gguf_name}"
    return names


@dataclass(frozen=True, eq=False)
class GGUFCheckpoint:
    """Everything lfmrt reads from an LFM2 GGUF file; the same attributes as
    :class:`~lfmrt.loaders.hf.HFCheckpoint`, plus the file's metadata.

    Attributes:
        path: the file.
        config: the hyper-parameters from ``lfm2.*`` metadata and the tensors.
        tensors: canonical name -> tensor view into the mapping (dtype ``F32``, ``F16``,
            ``BF16``, ``Q8_0``, ``Q4_0``, ``Q4_K``, ``Q5_K`` or ``Q6_K``; the shape is in values,
            outermost first, and ``data`` holds the GGUF block bytes).
        tokenizer: rebuilt from ``tokenizer.ggml.*``, or ``None`` when the file has none.
        chat_template: ``tokenizer.chat_template``, or ``None``.
        special_tokens: ``bos_token``, ``eos_token``, ``pad_token`` -> token text.
        generation: end-of-sequence ids and the ``general.sampling.*`` defaults.
        metadata: every metadata key -> value (arrays as lists), in file order, except the
            tokenizer's vocabulary arrays (:data:`TOKENIZER_ARRAYS`) when ``tokenizer`` was
            rebuilt from them: it holds them, and the lists would keep ~10 MB of Python strings
            for a 65,536-token vocabulary resident for as long as the model lives.
        files: the read-only memory map the tensor views point into (one ``mmap.mmap``).
    """

    path: str
    config: Lfm2Config
    tensors: Dict[str, TensorRef]
    tokenizer: Optional[Tokenizer]
    chat_template: Optional[str]
    special_tokens: Dict[str, str]
    generation: GenerationDefaults
    metadata: Dict[str, Any] = field(repr=False)
    files: List[mmap.mmap] = field(repr=False)


# --- the header: checked and decoded in one pass -------------------------------------------

# struct formats (little-endian) of the scalar value types; numeric arrays use the same layouts.
_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.BOOL: "?",
    GGUFValueType.UINT16: "H", GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i", GGUFValueType.FLOAT32: "f",
    GGUFValueType.UINT64: "Q", GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
}  # fmt: skip
_SCALARS = {kind: struct.Struct("<" + fmt) for kind, fmt in _SCALAR_FORMATS.items()}
_SCALAR_SIZES = {kind: scalar.size for kind, scalar in _SCALARS.items()}
# The numpy dtypes GGUFReader decodes arrays with (so ``tolist()`` gives the same Python values).
_ARRAY_DTYPES = {
    GGUFValueType.UINT8: np.dtype("<u1"), GGUFValueType.INT8: np.dtype("<i1"), GGUFValueType.BOOL: np.dtype("?"),
    GGUFValueType.UINT16: np.dtype("<u2"), GGUFValueType.INT16: np.dtype("<i2"),
    GGUFValueType.UINT32: np.dtype("<u4"), GGUFValueType.INT32: np.dtype("<i4"), GGUFValueType.FLOAT32: np.dtype("<f4"),
    GGUFValueType.UINT64: np.dtype("<u8"), GGUFValueType.INT64: np.dtype("<i8"), GGUFValueType.FLOAT64: np.dtype("<f8"),
}  # fmt: skip
_U64 = struct.Struct("<Q")
_MAX_DIMS = 4


@dataclass(frozen=True)
class _TensorInfo:
    """One tensor-info record, checked."""

    name: str
    dtype: str
    dims: Tuple[int, ...]  # GGUF order: innermost first
    start: int  # absolute file offset
    nbytes: int


@dataclass(frozen=True)
class _Header:
    """A checked and decoded GGUF header.

    Attributes:
        values: metadata key -> value (strings as ``str``, arrays as lists), in file order.
        types: metadata key -> its GGUF types, as ``GGUFReader`` lists them: ``[kind]`` for a
            scalar or string, ``[ARRAY, item kind]`` for an array (``[ARRAY]`` when it is empty).
        tensors: the tensor-info records, in file order.
    """

    values: Dict[str, Any]
    types: Dict[str, List[GGUFValueType]]
    tensors: List[_TensorInfo]


class _Cursor:
    """Reads little-endian values from a buffer, refusing to read past its end."""

    def __init__(self, buffer: mmap.mmap, size: int, path: str) -> None:
        self.buffer, self.size, self.path, self.pos = buffer, size, path, 0

    def skip(self, n: int, what: str) -> int:
        """Advances over ``n`` bytes of ``what``; returns where they start."""
        if n > self.size - self.pos:
            raise LoadError(
                f"{self.path}: truncated or malformed GGUF: {what} at offset {self.pos} needs {n} bytes, "
                f"only {self.size - self.pos} remain"
            )
        start = self.pos
        self.pos += n
        return start

    def u32(self, what: str) -> int:
        return struct.unpack_from("<I", self.buffer, self.skip(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack_from(self.buffer, self.skip(8, what))[0]

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        start = self.skip(n, what)
        try:
            return str(self.buffer[start : start + n], "utf-8")
        except UnicodeDecodeError as exc:
            raise LoadError(f"{self.path}: {what} at offset {start} is not UTF-8: {exc}") from exc

    def strings(self, count: int, what: str) -> List[str]:
        """``count`` strings (a string array's items), each bounds-checked and UTF-8-checked."""
        buffer, size, pos = self.buffer, self.size, self.pos
        if count > (size - pos) // 8:  # each needs at least its 8-byte length
            raise LoadError(
                f"{self.path}: truncated or malformed GGUF: {what} claims {count} strings, more than the "
                f"{size - pos} bytes left can hold"
            )
        unpack = _U64.unpack_from
        items: List[str] = []
        append = items.append
        index = 0
        try:
            for index in range(count):
                if size - pos < 8:
                    self.pos = pos
                    self.skip(8, f"length of {what}[{index}]")  # raises
                n = unpack(buffer, pos)[0]
                pos += 8
                if n > size - pos:
                    self.pos = pos
                    self.skip(n, f"{what}[{index}]")  # raises
                append(str(buffer[pos : pos + n], "utf-8"))
                pos += n
        except UnicodeDecodeError as exc:
            raise LoadError(f"{self.path}: {what}[{index}] at offset {pos} is not UTF-8: {exc}") from exc
        self.pos = pos
        return items

    def value_type(self, what: str) -> GGUFValueType:
        raw = self.u32(f"type of {what}")
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise LoadError(f"{self.path}: {what} has unknown value type {raw}") from None


def _read_value(cursor: _Cursor, kind: GGUFValueType, key: str) -> Tuple[Any, List[GGUFValueType]]:
    """Reads one metadata value of type ``kind``; returns it (arrays as lists) and its types."""
    what = f"metadata {key!r}"
    if kind == GGUFValueType.STRING:
        return cursor.string(what), [kind]
    if kind != GGUFValueType.ARRAY:
        scalar = _SCALARS[kind]
        return scalar.unpack_from(cursor.buffer, cursor.skip(scalar.size, what))[0], [kind]
    item = cursor.value_type(f"items of {what}")
    count = cursor.u64(f"length of {what}")
    if item == GGUFValueType.ARRAY:
        raise LoadError(f"{cursor.path}: {what} is an array of arrays, which lfmrt does not read")
    types = [kind, item] if count else [kind]
    if item == GGUFValueType.STRING:
        return cursor.strings(count, what), types
    dtype = _ARRAY_DTYPES[item]
    start = cursor.skip(count * dtype.itemsize, f"{what} ({count} values)")
    return np.frombuffer(cursor.buffer, dtype=dtype, count=count, offset=start).tolist(), types


def _walk_header(path: str, buffer: mmap.mmap, size: int) -> _Header:
    """Checks and decodes the header: the metadata, and where every tensor lies in the file.

    Raises:
        LoadError: wrong magic or version, a big-endian file, anything that runs past the end of
            the file, a string that is not UTF-8, an unknown value or tensor type, a metadata key
            or tensor name that appears twice, a bad alignment, a tensor whose data lies outside
            the file or whose row length its block size does not divide.
    """
    cursor = _Cursor(buffer, size, path)
    magic = buffer[: min(4, size)]
    if magic != GGUF_MAGIC:
        raise LoadError(f"{path}: not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
    cursor.skip(4, "magic")
    version = cursor.u32("version")
    if version not in GGUF_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in GGUF_VERSIONS:
            raise LoadError(f"{path}: a big-endian GGUF file; lfmrt reads little-endian files only")
        raise LoadError(f"{path}: GGUF version {version}; lfmrt reads versions {GGUF_VERSIONS}")
    n_tensors = cursor.u64("tensor count")
    n_metadata = cursor.u64("metadata count")

    values: Dict[str, Any] = {}
    types: Dict[str, List[GGUFValueType]] = {}
    for index in range(n_metadata):  # each entry takes bytes, so a huge count runs out of file
        key = cursor.string(f"metadata key #{index}")
        if key in types:
            raise LoadError(f"{path}: metadata key {key!r} appears twice")
        kind = cursor.value_type(f"metadata {key!r}")
        values[key], types[key] = _read_value(cursor, kind, key)

    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in values:
        value = values["general.alignment"]
        if types["general.alignment"] != [GGUFValueType.UINT32] or value == 0 or value & (value - 1):
            raise LoadError(f"{path}: general.alignment must be a UINT32 power of two")
        alignment = value

    records = []
    for index in range(n_tensors):
        name = cursor.string(f"name of tensor #{index}")
        n_dims = cursor.u32(f"dimension count of tensor {name!r}")
        if not 1 <= n_dims <= _MAX_DIMS:
            raise LoadError(f"{path}: tensor {name!r} has {n_dims} dimensions (GGUF allows 1 to {_MAX_DIMS})")
        dims = tuple(cursor.u64(f"dimensions of tensor {name!r}") for _ in range(n_dims))
        if any(dim > MAX_DIMENSION for dim in dims):
            raise LoadError(f"{path}: tensor {name!r} has dimensions {list(dims)}, one above {MAX_DIMENSION} "
                            "(ggml's int64)")
        ggml_type = cursor.u32(f"type of tensor {name!r}")
        offset = cursor.u64(f"offset of tensor {name!r}")
        records.append((name, dims, ggml_type, offset))
    data_start = -(-cursor.pos // alignment) * alignment

    tensors: List[_TensorInfo] = []
    seen = set()
    for name, dims, ggml_type, offset in records:
        if name in seen:
            raise LoadError(f"{path}: tensor {name!r} appears twice")
        seen.add(name)
        dtype = GGML_DTYPES.get(ggml_type)
        if dtype is None:
            try:
                type_name = GGMLQuantizationType(ggml_type).name
            except ValueError:
                type_name = f"unknown type id {ggml_type}"
            raise LoadError(
                f"{path}: tensor {name!r} has type {type_name}; lfmrt reads {', '.join(GGML_DTYPES.values())}"
            )
        per_block, block_bytes = _BLOCKS[ggml_type]
        if dims[0] % per_block:
            raise LoadError(
                f"{path}: tensor {name!r} has rows of {dims[0]} values, not a multiple of {dtype}'s block of "
                f"{per_block}"
            )
        nbytes = int(np.prod(dims, dtype=object)) // per_block * block_bytes
        if offset % alignment:
            raise LoadError(f"{path}: tensor {name!r} data offset {offset} is not a multiple of {alignment}")
        start = data_start + offset
        if start + nbytes > size:
            raise LoadError(
                f"{path}: tensor {name!r} data [{start}, {start + nbytes}) runs past the end of the file "
                f"({size} bytes; the file may be truncated)"
            )
        tensors.append(_TensorInfo(name, dtype, dims, start, nbytes))
    return _Header(values, types, tensors)


# --- metadata -------------------------------------------------------------------------------

_INTEGER_TYPES = {t for t in _SCALAR_SIZES if t not in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64, GGUFValueType.BOOL)}
_NUMBER_TYPES = _INTEGER_TYPES | {GGUFValueType.FLOAT32, GGUFValueType.FLOAT64}


class _Fields:
    """Typed access to GGUF metadata that names the file and key in every error."""

    def __init__(self, values: Dict[str, Any], types: Dict[str, List[GGUFValueType]], path: str) -> None:
        self.values, self.types, self.path = values, types, path

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.values:
            if required:
                raise LoadError(f"{self.path}: metadata key {key!r} is missing")
            return None
        return self.values[key]

    def integer(self, key: str, required: bool = True, minimum: int = 1) -> Optional[int]:
        value = self._get(key, required)
        if value is None:
            return None
        if len(self.types[key]) != 1 or self.types[key][0] not in _INTEGER_TYPES:
            raise LoadError(f"{self.path}: metadata {key!r} must be an integer, got {value!r}")
        if value < minimum:
            raise LoadError(f"{self.path}: metadata {key!r} must be >= {minimum}, got {value}")
        return int(value)

    def number(self, key: str, required: bool = True) -> Optional[float]:
        value = self._get(key, required)
        if value is None:
            return None
        if len(self.types[key]) != 1 or self.types[key][0] not in _NUMBER_TYPES or not value > 0:
            raise LoadError(f"{self.path}: metadata {key!r} must be a positive number, got {value!r}")
        return float(value)

    def string(self, key: str, required: bool = True) -> Optional[str]:
        value = self._get(key, required)
        if value is not None and self.types[key] != [GGUFValueType.STRING]:
            raise LoadError(f"{self.path}: metadata {key!r} must be a string, got {value!r}")
        return value

    def integers(self, key: str) -> List[int]:
        """An integer array, or one integer standing for every layer (returned as one item)."""
        value = self._get(key, True)
        kinds = self.types[key]
        if kinds[0] == GGUFValueType.ARRAY and (len(kinds) == 1 or kinds[1] in _INTEGER_TYPES):
            return [int(v) for v in value]
        if kinds[0] in _INTEGER_TYPES:
            return [int(value)]
        raise LoadError(f"{self.path}: metadata {key!r} must be an integer or an integer array, got {value!r}")


def _config(fields: _Fields, tensor_names: set, vocab_size: int) -> Lfm2Config:
    """The model's hyper-parameters from ``lfm2.*`` metadata (llama.cpp's keys and defaults)."""
    arch = ARCHITECTURE
    n_layers = fields.integer(f"{arch}.block_count")
    hidden = fields.integer(f"{arch}.embedding_length")
    n_heads = fields.integer(f"{arch}.attention.head_count")
    kv_key = f"{arch}.attention.head_count_kv"
    kv_heads = fields.integers(kv_key)
    if len(kv_heads) == 1:
        kv_heads = kv_heads * n_layers
    if len(kv_heads) != n_layers:
        raise LoadError(f"{fields.path}: metadata {kv_key!r} has {len(kv_heads)} entries for {n_layers} blocks")
    attention_kv = sorted({k for k in kv_heads if k})
    if any(k < 0 for k in kv_heads) or len(attention_kv) > 1:
        raise LoadError(
            f"{fields.path}: metadata {kv_key!r} is {kv_heads}; lfmrt needs 0 (short conv) or one KV head count"
        )
    n_kv_heads = attention_kv[0] if attention_kv else n_heads
    if n_heads % n_kv_heads:
        raise LoadError(f"{fields.path}: {n_kv_heads} KV heads ({kv_key!r}) do not divide {n_heads} heads")
    head_dim = fields.integer(f"{arch}.attention.key_length", required=False)
    if head_dim is None:
        if hidden % n_heads:
            raise LoadError(f"{fields.path}: {n_heads} heads do not divide embedding_length {hidden}")
        head_dim = hidden // n_heads
    eos = fields.integer("tokenizer.ggml.eos_token_id", required=False, minimum=0)
    return Lfm2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        ff_dim=fields.integer(f"{arch}.feed_forward_length"),
        layer_types=tuple("full_attention" if k else "conv" for k in kv_heads),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        conv_kernel=fields.integer(f"{arch}.shortconv.l_cache"),
        conv_bias=any(n.endswith("shortconv.in_proj.bias") for n in tensor_names),
        norm_eps=fields.number(f"{arch}.attention.layer_norm_rms_epsilon"),
        rope_theta=fields.number(f"{arch}.rope.freq_base", required=False) or 10000.0,
        max_context=fields.integer(f"{arch}.context_length"),
        tie_embeddings="output.weight" not in tensor_names,
        bos_token_id=fields.integer("tokenizer.ggml.bos_token_id", required=False, minimum=0),
        eos_token_id=[eos] if eos is not None else [],
        pad_token_id=fields.integer("tokenizer.ggml.padding_token_id", required=False, minimum=0),
        raw={k: v for k, v in fields.values.items() if not k.startswith("tokenizer.ggml.")},
    )


def _generation(fields: _Fields, config: Lfm2Config) -> GenerationDefaults:
    """End-of-sequence ids and the ``general.sampling.*`` defaults the converter copies from
    ``generation_config.json``."""

    def sampling(key: str) -> Optional[float]:
        full = f"general.sampling.{key}"
        if full not in fields.values:
            return None
        value = fields.values[full]
        if fields.types[full][0] not in _NUMBER_TYPES or isinstance(value, (list, str)):
            raise LoadError(f"{fields.path}: metadata {full!r} must be a number, got {value!r}")
        return float(value)

    top_k = sampling("top_k")
    return GenerationDefaults(
        eos_token_id=list(config.eos_token_id),
        temperature=sampling("temp"),
        top_k=int(top_k) if top_k is not None else None,
        top_p=sampling("top_p"),
        min_p=sampling("min_p"),
        repetition_penalty=sampling("penalty_repeat"),
    )


def _tensors(path: str, data: np.ndarray, infos: List[_TensorInfo], config_layers: int) -> Dict[str, TensorRef]:
    """Zero-copy views of every tensor (slices of ``data``, the whole mapping as ``uint8``), under
    canonical names (unknown names are kept as they are)."""
    canonical_of = {g: c for c, g in gguf_tensor_names(config_layers).items()}
    tensors: Dict[str, TensorRef] = {}
    for info in infos:
        shape = tuple(reversed(info.dims))
        name = canonical_of.get(info.name, info.name)
        if name.endswith("conv.conv.weight") and len(shape) == 2:
            shape = (shape[0], 1, shape[1])  # the converter squeezed (hidden, 1, k) to (hidden, k)
        tensors[name] = TensorRef(
            name=info.name,
            dtype=info.dtype,
            shape=shape,
            data=data[info.start : info.start + info.nbytes],
            file=path,
            file_mapped=True,
        )
    return tensors


def _close(buffer: mmap.mmap) -> None:
    """Unmaps a file the load gave up on (unless something still views it; then the GC will)."""
    try:
        buffer.close()
    except BufferError:
        pass


def load_gguf_checkpoint(path: str | os.PathLike) -> GGUFCheckpoint:
    """Loads an LFM2 GGUF file without copying any weight.

    Raises:
        LoadError: naming the file and the key or tensor, for a missing or unreadable file, a
            truncated or malformed header, wrong magic or version, an architecture other than
            ``lfm2``, a missing metadata key, an unknown tensor type or a tensor whose data lies
            outside the file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise LoadError(f"{path}: {size} bytes, too short for a GGUF header (the file may be truncated)")
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise LoadError(f"{path}: cannot open GGUF file: {exc}") from exc

    try:
        header = _walk_header(path, buffer, size)
        infos = header.tensors
        # "GGUF.*" names GGUFReader's own header fields; metadata never held such keys.
        values = {k: v for k, v in header.values.items() if not k.startswith("GGUF.")}
        fields = _Fields(values, header.types, path)
        arch = fields.string("general.architecture")
        if arch != ARCHITECTURE:
            raise LoadError(f"{path}: general.architecture is {arch!r}; lfmrt loads {ARCHITECTURE!r} models")

        rebuilt = tokenizer_from_gguf(values, path)
        embed = next((i for i in infos if i.name == "token_embd.weight"), None)
        if rebuilt is not None:
            vocab_size = len(values["tokenizer.ggml.tokens"])
        elif embed is not None and len(embed.dims) == 2:
            vocab_size = embed.dims[1]
        else:
            raise LoadError(f"{path}: no tokenizer.ggml.tokens and no token_embd.weight to size the vocabulary")
        config = _config(fields, {i.name for i in infos}, vocab_size)
        chat_template = fields.string("tokenizer.chat_template", required=False)
        generation = _generation(fields, config)
    except BaseException:
        _close(buffer)
        raise

    return GGUFCheckpoint(
        path=path,
        config=config,
        tensors=_tensors(path, np.frombuffer(buffer, dtype=np.uint8), infos, config.n_layers),
        tokenizer=rebuilt.tokenizer if rebuilt else None,
        chat_template=chat_template,
        special_tokens=dict(rebuilt.special_tokens) if rebuilt else {},
        generation=generation,
        metadata={k: v for k, v in values.items() if rebuilt is None or k not in TOKENIZER_ARRAYS},
        files=[buffer],
    )


__all__ = [
    "ARCHITECTURE",
    "GGML_DTYPES",
    "GGUFCheckpoint",
    "GLOBAL_TENSOR_NAMES",
    "LAYER_TENSOR_NAMES",
    "gguf_tensor_names",
    "load_gguf_checkpoint",
]
