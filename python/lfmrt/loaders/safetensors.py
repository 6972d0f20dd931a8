"""A zero-copy reader for the safetensors container (single files and sharded checkpoints).

The format: an 8-byte little-endian header length ``N``, ``N`` bytes of JSON mapping each tensor
name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the data
section), then the data section. Every file is memory-mapped read-only and each tensor becomes a
``numpy`` view of exactly its bytes, so opening a checkpoint costs only the header parse and
resident memory grows with what is actually read.

Everything in the header is checked against the file's real size before any tensor byte is
touched; any inconsistency raises :class:`~lfmrt.errors.LoadError` naming the file and tensor.
This module deliberately does not depend on the ``safetensors`` package.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..errors import LoadError
from .config import read_json_file

# Bytes per element for the dtypes the C++ core computes with (safetensors spelling).
DTYPE_SIZES: Dict[str, int] = {"F32": 4, "F16": 2, "BF16": 2}

# numpy has no bfloat16: BF16 tensors are exposed as their raw uint16 bit patterns.
_NUMPY_DTYPES: Dict[str, Any] = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


# The largest dimension a tensor may have: the runtime keeps shapes as int64. A tensor with a
# zero dimension holds no bytes whatever its other dimensions claim, so only this bounds them.
MAX_DIMENSION = 2**63 - 1


@dataclass(frozen=True, eq=False)
class TensorRef:
    """One tensor inside a memory-mapped file, not yet converted or copied.

    Attributes:
        name: the tensor's name as the file spells it (a loader may rename it, see ``hf.py``).
        dtype: ``"F32"``, ``"F16"`` or ``"BF16"``.
        shape: the tensor's dimensions, outermost first (row-major).
        data: a read-only ``uint8`` view of exactly the tensor's bytes inside the mapping;
            ``data.nbytes == prod(shape) * DTYPE_SIZES[dtype]``. It keeps the mapping alive.
            It need not be aligned to the element size.
        file: the path of the file holding the tensor.
        file_mapped: ``data`` is a view of a read-only memory map of ``file`` (as the loaders
            make it), so the runtime may drop pages it no longer reads (they would be read
            again from the file); False for arrays made in memory, e.g. quantized on load.
    """

    name: str
    dtype: str
    shape: Tuple[int, ...]
    data: np.ndarray
    file: str
    file_mapped: bool = False

    def array(self) -> np.ndarray:
        """Returns a zero-copy, read-only typed view with the tensor's shape.

        F32 and F16 give ``float32`` / ``float16`` arrays; BF16 gives ``uint16`` bit patterns
        (``(x.astype(np.uint32) << 16).view(np.float32)`` widens them exactly).
        """
        return self.data.view(_NUMPY_DTYPES[self.dtype]).reshape(self.shape)


@dataclass(frozen=True, eq=False)
class SafetensorsFile:
    """A memory-mapped ``.safetensors`` file and the tensors it holds.

    Attributes:
        path: the file's path.
        metadata: the header's optional ``__metadata__`` string map (empty if absent).
        tensors: name -> :class:`TensorRef`, in header order.
        mapping: the read-only memory map every tensor view points into.
    """

    path: str
    metadata: Dict[str, str]
    tensors: Dict[str, TensorRef]
    mapping: mmap.mmap


def _reject_duplicate_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """``json`` object hook: a repeated key is an error, not a silent overwrite."""
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _is_int(value: Any) -> bool:
    """True for JSON integers (``bool`` is an ``int`` subclass in Python but not a number here)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Entry:
    """One validated header entry, before its view is made."""

    name: str
    dtype: str
    shape: Tuple[int, ...]
    begin: int
    end: int


def _parse_entry(path: str, name: str, entry: Any, data_len: int) -> _Entry:
    """Validates one header entry against the data section's real length."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise LoadError(f"{where}: header entry is {type(entry).__name__}, expected an object")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise LoadError(f"{where}: header entry has no {key!r}")

    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise LoadError(
            f"{where}: unknown dtype {dtype!r} (lfmrt reads {', '.join(DTYPE_SIZES)})"
        )

    shape = entry["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise LoadError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    if any(d > MAX_DIMENSION for d in shape):
        raise LoadError(f"{where}: shape {shape!r} has a dimension above {MAX_DIMENSION} (2**63 - 1)")

    offsets = entry["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise LoadError(f"{where}: data_offsets {offsets!r} is not a pair of integers")
    begin, end = offsets
    if begin < 0 or end < begin:
        raise LoadError(f"{where}: data_offsets [{begin}, {end}] are out of order")
    if end > data_len:
        raise LoadError(
            f"{where}: data_offsets [{begin}, {end}] run past the end of the data section "
            f"({data_len} bytes; the file may be truncated)"
        )

    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != expected:
        raise LoadError(
            f"{where}: data_offsets [{begin}, {end}] span {end - begin} bytes but shape "
            f"{shape} of {dtype} needs {expected}"
        )
    return _Entry(name, dtype, tuple(shape), begin, end)


def _check_no_overlap(path: str, entries: Sequence[_Entry]) -> None:
    """Raises if two non-empty tensors share any byte."""
    previous = None
    for entry in sorted((e for e in entries if e.end > e.begin), key=lambda e: e.begin):
        if previous is not None and entry.begin < previous.end:
            raise LoadError(
                f"{path}: tensors {previous.name!r} [{previous.begin}, {previous.end}) and "
                f"{entry.name!r} [{entry.begin}, {entry.end}) overlap"
            )
        previous = entry


def _parse_header(
    path: str, mapping: mmap.mmap, file_size: int
) -> Tuple[Dict[str, str], List[_Entry], int]:
    """Parses and validates the header; returns (metadata, entries, data section offset)."""
    (header_len,) = struct.unpack("<Q", mapping[:8])
    if header_len > file_size - 8:
        raise LoadError(
            f"{path}: header length {header_len} exceeds the {file_size - 8} bytes after the "
            f"length field (file truncated or not safetensors)"
        )
    try:
        header = json.loads(
            mapping[8 : 8 + header_len].decode("utf-8"), object_pairs_hook=_reject_duplicate_keys
        )
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise LoadError(f"{path}: header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise LoadError(f"{path}: header is {type(header).__name__}, expected a JSON object")

    metadata = header.pop("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise LoadError(f"{path}: __metadata__ is not a map of strings")

    data_start = 8 + header_len
    data_len = file_size - data_start
    entries = [_parse_entry(path, name, entry, data_len) for name, entry in header.items()]
    _check_no_overlap(path, entries)
    return metadata, entries, data_start


def read_safetensors(path: str | os.PathLike) -> SafetensorsFile:
    """Memory-maps one ``.safetensors`` file and returns views of all its tensors.

    Raises:
        LoadError: the file cannot be opened, is truncated, its header is not valid JSON, or any
            entry is incomplete, has an unsupported dtype, or points outside the data section /
            overlaps another / disagrees with its shape. The message names the file and tensor.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            if file_size < 8:
                raise LoadError(
                    f"{path}: file is {file_size} bytes, too short for a safetensors header "
                    f"(at least 8 bytes)"
                )
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise LoadError(f"{path}: cannot open safetensors file: {exc}") from exc

    try:
        metadata, entries, data_start = _parse_header(path, mapping, file_size)
    except LoadError:
        mapping.close()  # no view into it exists yet
        raise

    tensors = {
        e.name: TensorRef(
            name=e.name,
            dtype=e.dtype,
            shape=e.shape,
            data=np.frombuffer(
                mapping, dtype=np.uint8, count=e.end - e.begin, offset=data_start + e.begin
            ),
            file=path,
            file_mapped=True,
        )
        for e in entries
    }
    return SafetensorsFile(path=path, metadata=metadata, tensors=tensors, mapping=mapping)


def read_safetensors_index(index_path: str | os.PathLike) -> Dict[str, str]:
    """Reads ``model.safetensors.index.json`` and returns its ``weight_map`` (tensor -> shard).

    Shard names must be relative paths inside the index's directory.

    Raises:
        LoadError: naming the index file, when it is unreadable, not JSON, has no ``weight_map``
            object, or names a shard outside its directory.
    """
    index_path = os.fspath(index_path)
    index = read_json_file(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise LoadError(f"{index_path}: no 'weight_map' object")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise LoadError(f"{index_path}: tensor {name!r} maps to {shard!r}, not a file name")
        parts = shard.replace("\\", "/").split("/")
        if os.path.isabs(shard) or ".." in parts:
            raise LoadError(f"{index_path}: shard {shard!r} is outside the checkpoint directory")
    return weight_map


def merge_tensors(files: Sequence[SafetensorsFile]) -> Dict[str, TensorRef]:
    """Combines the tensors of several files into one map.

    Raises:
        LoadError: naming the tensor and both files when two files hold the same name.
    """
    tensors: Dict[str, TensorRef] = {}
    for file in files:
        for name, ref in file.tensors.items():
            if name in tensors:
                raise LoadError(
                    f"tensor {name!r} appears in both {tensors[name].file} and {ref.file}"
                )
            tensors[name] = ref
    return tensors


def read_sharded_safetensors(
    index_path: str | os.PathLike,
) -> Tuple[List[SafetensorsFile], Dict[str, TensorRef]]:
    """Opens every shard a ``model.safetensors.index.json`` names.

    Returns:
        The opened shards (keep them to keep the mappings alive) and all their tensors by name.

    Raises:
        LoadError: naming the index file and the shard when a shard is missing, or the tensor
            when the index lists a tensor its shard does not hold; plus anything
            :func:`read_safetensors` raises for a shard.
    """
    index_path = os.fspath(index_path)
    weight_map = read_safetensors_index(index_path)
    directory = os.path.dirname(index_path)

    shards: Dict[str, SafetensorsFile] = {}
    for name, shard in weight_map.items():
        if shard in shards:
            continue
        shard_path = os.path.join(directory, shard)
        if not os.path.isfile(shard_path):
            raise LoadError(
                f"{index_path}: shard {shard!r} (listed for tensor {name!r}) does not exist "
                f"at {shard_path}"
            )
        shards[shard] = read_safetensors(shard_path)

    files = list(shards.values())
    tensors = merge_tensors(files)
    for name, shard in weight_map.items():
        if name not in shards[shard].tensors:
            raise LoadError(
                f"{index_path}: tensor {name!r} is listed in shard {shard!r} but "
                f"{shards[shard].path} does not contain it"
            )
    return files, tensors


__all__ = [
    "DTYPE_SIZES",
    "SafetensorsFile",
    "TensorRef",
    "merge_tensors",
    "read_safetensors",
    "read_safetensors_index",
    "read_sharded_safetensors",
]
