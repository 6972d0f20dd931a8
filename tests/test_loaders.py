"""Tests for lfmrt.loaders: the safetensors reader, config normalisation, HF directories.

Every malformed input must raise lfmrt.errors.LoadError whose message names the file, tensor
or field; nothing may crash. Corrupt files are written by hand, byte by byte.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pytest

from lfmrt.errors import LoadError
from lfmrt.loaders import (
    load_config,
    load_hf_checkpoint,
    parse_config,
    read_safetensors,
    read_sharded_safetensors,
)

FIXTURE_MODELS = Path(__file__).parent / "fixtures" / "models"

# ----------------------------------------------------------------------------------------------
# Writing safetensors files by hand


def write_raw(path: Path, header: Any, data: bytes = b"", header_len: Optional[int] = None) -> Path:
    """Writes length + header + data exactly as given (header: dict, str or bytes)."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode("utf-8")
    n = len(header) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + header + data)
    return path


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns by truncation (exact for values with <= 8 mantissa bits)."""
    return (np.ascontiguousarray(x, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path: Path, tensors: Dict[str, Tuple[str, np.ndarray]], pad_to: int = 8) -> Path:
    """A valid file: name -> (dtype, array with the raw values, bf16 given as uint16 bits)."""
    header: Dict[str, Any] = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, (dtype, array) in tensors.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % pad_to)
    return write_raw(path, text, data)


def small_tensors() -> Dict[str, Tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    values = rng.integers(-64, 64, size=(4, 6)).astype(np.float32) / 8  # exact in bf16
    return {
        "w.f32": ("F32", values),
        "w.f16": ("F16", values.astype(np.float16)),
        "w.bf16": ("BF16", to_bf16_bits(values)),
        "empty": ("F32", np.zeros((0, 3), np.float32)),
        "scalar": ("F32", np.array(2.5, np.float32)),
    }


# ----------------------------------------------------------------------------------------------
# safetensors: valid files


def test_reads_all_dtypes_zero_copy(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", small_tensors())
    file = read_safetensors(path)
    expected = small_tensors()["w.f32"][1]

    assert file.metadata == {"format": "pt"}
    assert list(file.tensors) == ["w.f32", "w.f16", "w.bf16", "empty", "scalar"]
    f32, f16, bf16 = file.tensors["w.f32"], file.tensors["w.f16"], file.tensors["w.bf16"]
    assert (f32.dtype, f32.shape, f32.file, f32.name) == ("F32", (4, 6), str(path), "w.f32")
    assert f16.data.nbytes == 4 * 6 * 2 and bf16.data.nbytes == 4 * 6 * 2
    np.testing.assert_array_equal(f32.array(), expected)
    np.testing.assert_array_equal(f16.array().astype(np.float32), expected)
    np.testing.assert_array_equal(from_bf16_bits(bf16.array()), expected)
    assert file.tensors["empty"].array().shape == (0, 3)
    assert file.tensors["scalar"].shape == () and float(file.tensors["scalar"].array()) == 2.5

    whole = np.frombuffer(file.mapping, dtype=np.uint8)
    for ref in file.tensors.values():
        assert ref.data.dtype == np.uint8
        assert not ref.data.flags.writeable and not ref.data.flags.owndata
        if ref.data.nbytes:
            assert np.shares_memory(ref.data, whole)  # a view into the mapping, not a copy


def test_unaligned_data_section_is_fine(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", small_tensors(), pad_to=1)
    file = read_safetensors(path)
    np.testing.assert_array_equal(file.tensors["w.f32"].array(), small_tensors()["w.f32"][1])


def test_reads_files_written_by_the_safetensors_package(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    source = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 4
    tensors = {
        "a": source,
        "b": source.to(torch.float16),
        "c": source.to(torch.bfloat16),
        "d": torch.ones(5, dtype=torch.float32),
    }
    path = tmp_path / "ref.safetensors"
    st_torch.save_file(tensors, str(path), metadata={"k": "v"})

    file = read_safetensors(path)
    assert file.metadata == {"k": "v"}
    assert {n: r.dtype for n, r in file.tensors.items()} == {"a": "F32", "b": "F16", "c": "BF16", "d": "F32"}
    expected = source.numpy()
    np.testing.assert_array_equal(file.tensors["a"].array(), expected)
    np.testing.assert_array_equal(file.tensors["b"].array().astype(np.float32), expected)
    np.testing.assert_array_equal(from_bf16_bits(file.tensors["c"].array()), expected)
    assert file.tensors["c"].shape == (2, 3, 4)


def test_large_file_opens_without_reading_it(tmp_path: Path) -> None:
    """A 700 MB checkpoint (sparse on disk) must open in well under a second."""
    rows, cols = 350_000, 1024  # 700 MB of F16
    nbytes = rows * cols * 2
    header = json.dumps({"big": {"dtype": "F16", "shape": [rows, cols], "data_offsets": [0, nbytes]}})
    path = write_raw(tmp_path / "big.safetensors", header)
    with open(path, "r+b") as f:
        f.truncate(8 + len(header) + nbytes)

    start = time.perf_counter()
    file = read_safetensors(path)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"opening took {elapsed:.3f}s"
    assert file.tensors["big"].data.nbytes == nbytes
    assert file.tensors["big"].array()[-1, -1] == 0  # readable at the very end


# ----------------------------------------------------------------------------------------------
# safetensors: corrupt files


def good_entry(nbytes: int = 16, dtype: str = "F32", shape: Any = None) -> Dict[str, Any]:
    return {"dtype": dtype, "shape": shape if shape is not None else [nbytes // 4], "data_offsets": [0, nbytes]}


def expect_load_error(path: Path, *fragments: str) -> str:
    with pytest.raises(LoadError) as info:
        read_safetensors(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("size", [0, 1, 7])
def test_file_shorter_than_length_field(tmp_path: Path, size: int) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x01" * size)
    expect_load_error(path, "too short")


def test_header_length_larger_than_file(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "m.safetensors", {"t": good_entry()}, b"\0" * 16, header_len=10**6)
    expect_load_error(path, "header length 1000000")


def test_header_length_near_u64_max(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "m.safetensors", b"{}", header_len=2**64 - 1)
    expect_load_error(path, "header length")


@pytest.mark.parametrize(
    "header, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"t": 5}', "'t'"),
        (b'{"__metadata__": {"a": 1}}', "__metadata__"),
        (b'{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
         b'"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', "duplicate key 't'"),
    ],
)
def test_malformed_header(tmp_path: Path, header: bytes, fragment: str) -> None:
    path = write_raw(tmp_path / "m.safetensors", header, b"\0" * 8)
    expect_load_error(path, fragment)


@pytest.mark.parametrize("missing", ["dtype", "shape", "data_offsets"])
def test_entry_missing_field(tmp_path: Path, missing: str) -> None:
    entry = good_entry()
    del entry[missing]
    path = write_raw(tmp_path / "m.safetensors", {"layers.0.w": entry}, b"\0" * 16)
    expect_load_error(path, "'layers.0.w'", repr(missing))


@pytest.mark.parametrize("dtype", ["I64", "F8_E4M3", "F64", "float32", 7])
def test_unknown_dtype(tmp_path: Path, dtype: Any) -> None:
    entry = {"dtype": dtype, "shape": [2], "data_offsets": [0, 16]}
    path = write_raw(tmp_path / "m.safetensors", {"embed.weight": entry}, b"\0" * 16)
    expect_load_error(path, "'embed.weight'", "unknown dtype", repr(dtype))


@pytest.mark.parametrize(
    "entry, fragment",
    [
        ({"dtype": "F32", "shape": [4], "data_offsets": [0, 32]}, "run past the end"),  # truncated
        ({"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}, "out of order"),
        ({"dtype": "F32", "shape": [4], "data_offsets": [-4, 12]}, "out of order"),
        ({"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}, "needs 20"),  # lies about size
        ({"dtype": "F16", "shape": [4], "data_offsets": [0, 16]}, "needs 8"),
        ({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}, "shape"),
        ({"dtype": "F32", "shape": [4.0], "data_offsets": [0, 16]}, "shape"),
        ({"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}, "shape"),
        ({"dtype": "F32", "shape": [4], "data_offsets": [0]}, "data_offsets"),
        ({"dtype": "F32", "shape": [4], "data_offsets": [False, 16]}, "data_offsets"),
        ({"dtype": "F32", "shape": [4], "data_offsets": [0, 2**70]}, "run past the end"),
        ({"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}, "needs"),
    ],
)
def test_entry_lies_about_bytes(tmp_path: Path, entry: Dict[str, Any], fragment: str) -> None:
    path = write_raw(tmp_path / "m.safetensors", {"blk.w": entry}, b"\0" * 16)
    expect_load_error(path, "'blk.w'", fragment)


def test_overlapping_offsets(tmp_path: Path) -> None:
    header = {
        "first": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "second": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    path = write_raw(tmp_path / "m.safetensors", header, b"\0" * 24)
    expect_load_error(path, "'first'", "'second'", "overlap")


def test_truncated_real_file(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", small_tensors())
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    expect_load_error(path, "run past the end")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    expect_load_error(tmp_path / "nope.safetensors", "cannot open")
    (tmp_path / "dir.safetensors").mkdir()
    expect_load_error(tmp_path / "dir.safetensors")


# ----------------------------------------------------------------------------------------------
# Sharded checkpoints


def write_sharded(directory: Path) -> Path:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_safetensors(directory / "model-00001-of-00002.safetensors", {"model.a": ("F32", a)})
    write_safetensors(directory / "model-00002-of-00002.safetensors", {"model.b": ("F32", a + 10)})
    index = {
        "metadata": {"total_size": 48},
        "weight_map": {
            "model.a": "model-00001-of-00002.safetensors",
            "model.b": "model-00002-of-00002.safetensors",
        },
    }
    index_path = directory / "model.safetensors.index.json"
    index_path.write_text(json.dumps(index))
    return index_path


def test_sharded_checkpoint(tmp_path: Path) -> None:
    files, tensors = read_sharded_safetensors(write_sharded(tmp_path))
    assert len(files) == 2 and set(tensors) == {"model.a", "model.b"}
    assert tensors["model.b"].file.endswith("model-00002-of-00002.safetensors")
    np.testing.assert_array_equal(tensors["model.b"].array()[1], [13, 14, 15])


def test_sharded_missing_shard(tmp_path: Path) -> None:
    index_path = write_sharded(tmp_path)
    os.remove(tmp_path / "model-00002-of-00002.safetensors")
    with pytest.raises(LoadError) as info:
        read_sharded_safetensors(index_path)
    message = str(info.value)
    assert str(index_path) in message and "model-00002-of-00002.safetensors" in message
    assert "'model.b'" in message


def test_sharded_tensor_listed_but_absent(tmp_path: Path) -> None:
    index_path = write_sharded(tmp_path)
    index = json.loads(index_path.read_text())
    index["weight_map"]["model.ghost"] = "model-00001-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(LoadError) as info:
        read_sharded_safetensors(index_path)
    message = str(info.value)
    assert "'model.ghost'" in message and "model-00001-of-00002.safetensors" in message
    assert str(index_path) in message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{oops", "not valid JSON"),
        ('{"metadata": {}}', "weight_map"),
        ('{"weight_map": {"a": 3}}', "'a'"),
        ('{"weight_map": {"a": "../evil.safetensors"}}', "outside"),
        ('{"weight_map": {"a": "/etc/passwd"}}', "outside"),
    ],
)
def test_sharded_bad_index(tmp_path: Path, text: str, fragment: str) -> None:
    index_path = tmp_path / "model.safetensors.index.json"
    index_path.write_text(text)
    with pytest.raises(LoadError) as info:
        read_sharded_safetensors(index_path)
    assert str(index_path) in str(info.value) and fragment in str(info.value)


def test_sharded_duplicate_tensor(tmp_path: Path) -> None:
    index_path = write_sharded(tmp_path)
    a = np.zeros(3, np.float32)
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"model.b": ("F32", a), "model.a": ("F32", a)})
    with pytest.raises(LoadError, match="'model.a' appears in both"):
        read_sharded_safetensors(index_path)


# ----------------------------------------------------------------------------------------------
# config.json, both dialects

FULL_ATTN_350M = [2, 5, 8, 10, 12, 14]
LAYER_TYPES_350M = ["full_attention" if i in FULL_ATTN_350M else "conv" for i in range(16)]


def config_dialect_a() -> Dict[str, Any]:
    """The original LFM2-350M config.json spelling."""
    return {
        "architectures": ["Lfm2ForCausalLM"],
        "model_type": "lfm2",
        "block_auto_adjust_ff_dim": True,
        "block_dim": 1024,
        "block_ff_dim": 6656,
        "block_ffn_dim_multiplier": 1.0,
        "block_multiple_of": 256,
        "block_norm_eps": 1e-05,
        "bos_token_id": 1,
        "conv_L_cache": 3,
        "conv_bias": False,
        "conv_dim": 1024,
        "eos_token_id": 7,
        "hidden_size": 1024,
        "full_attn_idxs": FULL_ATTN_350M,
        "max_position_embeddings": 128000,
        "norm_eps": 1e-05,
        "num_attention_heads": 16,
        "num_heads": 16,
        "num_hidden_layers": 16,
        "num_key_value_heads": 8,
        "pad_token_id": 0,
        "rope_theta": 1000000.0,
        "tie_embedding": True,
        "vocab_size": 65536,
    }


def config_dialect_b() -> Dict[str, Any]:
    """The same model as transformers >= 5 writes it."""
    return {
        "architectures": ["Lfm2ForCausalLM"],
        "model_type": "lfm2",
        "block_auto_adjust_ff_dim": True,
        "block_ffn_dim_multiplier": 1.0,
        "block_multiple_of": 256,
        "bos_token_id": 1,
        "conv_L_cache": 3,
        "conv_bias": False,
        "eos_token_id": 7,
        "hidden_size": 1024,
        "intermediate_size": 6656,
        "layer_types": LAYER_TYPES_350M,
        "max_position_embeddings": 128000,
        "norm_eps": 1e-05,
        "num_attention_heads": 16,
        "num_hidden_layers": 16,
        "num_key_value_heads": 8,
        "pad_token_id": 0,
        "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
        "tie_word_embeddings": True,
        "vocab_size": 65536,
    }


def config_transformers4() -> Dict[str, Any]:
    """transformers 4.x: dialect B names but rope_theta at the top level."""
    raw = config_dialect_b()
    del raw["rope_parameters"]
    raw["rope_theta"] = 1000000.0
    return raw


def normalised(config: Any) -> Dict[str, Any]:
    return {k: v for k, v in vars(config).items() if k != "raw"}


def test_350m_dialect_a() -> None:
    config = parse_config(config_dialect_a())
    assert config.ff_dim == 4608  # int(2 * 6656 / 3) = 4437 -> multiple of 256
    assert config.layer_types == tuple(LAYER_TYPES_350M) and config.n_layers == 16
    assert (config.n_heads, config.n_kv_heads, config.head_dim) == (16, 8, 64)
    assert (config.vocab_size, config.hidden_size, config.conv_kernel) == (65536, 1024, 3)
    assert config.rope_theta == 1e6 and config.norm_eps == 1e-5 and config.max_context == 128000
    assert config.tie_embeddings is True and config.conv_bias is False
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, [7], 0)
    assert config.raw == config_dialect_a()


@pytest.mark.parametrize("make", [config_dialect_b, config_transformers4])
def test_dialects_normalise_identically(make: Any) -> None:
    assert normalised(parse_config(make())) == normalised(parse_config(config_dialect_a()))


def test_defaults_when_optional_fields_are_absent() -> None:
    raw = {
        "vocab_size": 100,
        "hidden_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 300,
    }
    config = parse_config(raw)
    assert config.layer_types == ("full_attention",) * 3  # no full_attn_idxs: all attention
    assert config.ff_dim == 256  # int(200 * 1.0) = 200 -> 256
    assert (config.conv_kernel, config.conv_bias, config.norm_eps) == (3, False, 1e-5)
    assert (config.rope_theta, config.max_context, config.tie_embeddings) == (1e6, 128000, True)
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, [2], 0)


@pytest.mark.parametrize(
    "changes, ff_dim",
    [
        ({"block_auto_adjust_ff_dim": False}, 6656),
        # Rounding sits inside the multiplier branch (transformers 5's strict config refuses
        # null here, older versions and the modeling code accept it).
        ({"block_ffn_dim_multiplier": None}, 4437),
        ({"block_ffn_dim_multiplier": 1.3, "block_multiple_of": 64}, 5824),
        ({"block_multiple_of": 1}, 4437),
        ({"block_ff_dim": 4096}, 2816),
    ],
)
def test_ff_dim_adjustment(changes: Dict[str, Any], ff_dim: int) -> None:
    raw = config_dialect_a()
    raw.update(changes)
    assert parse_config(raw).ff_dim == ff_dim


def test_precedence_follows_transformers() -> None:
    raw = config_dialect_b()
    raw.update(
        block_ff_dim=4096,  # beats intermediate_size
        tie_embedding=False,  # beats tie_word_embeddings
        full_attn_idxs=[0],  # loses to layer_types
        rope_theta=5.0,  # loses to rope_parameters
    )
    config = parse_config(raw)
    assert config.ff_dim == 2816 and config.tie_embeddings is False
    assert config.layer_types == tuple(LAYER_TYPES_350M) and config.rope_theta == 1e6


def test_explicit_head_dim_and_eos_list() -> None:
    raw = config_dialect_b()
    raw.update(head_dim=32, eos_token_id=[2, 7], bos_token_id=None)
    config = parse_config(raw)
    assert config.head_dim == 32 and config.eos_token_id == [2, 7] and config.bos_token_id is None


REQUIRED = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size"]


@pytest.mark.parametrize("field", REQUIRED + ["block_ff_dim"])
def test_missing_required_field(tmp_path: Path, field: str) -> None:
    raw = config_dialect_a()
    del raw[field]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(LoadError) as info:
        load_config(path)
    assert str(path) in str(info.value) and repr(field) in str(info.value)
    assert "missing" in str(info.value)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"hidden_size": 1000}, "num_attention_heads"),  # 1000 % 16
        ({"num_key_value_heads": 5}, "num_key_value_heads"),  # 16 % 5
        ({"hidden_size": 0}, "hidden_size"),
        ({"vocab_size": -1}, "vocab_size"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"hidden_size": "1024"}, "hidden_size"),
        ({"hidden_size": True}, "hidden_size"),
        ({"block_ff_dim": 0}, "block_ff_dim"),
        ({"block_multiple_of": 0}, "block_multiple_of"),
        ({"block_ffn_dim_multiplier": "x"}, "block_ffn_dim_multiplier"),
        ({"conv_L_cache": 0}, "conv_L_cache"),
        ({"conv_bias": "no"}, "conv_bias"),
        ({"norm_eps": -1.0}, "norm_eps"),
        ({"rope_theta": 0}, "rope_theta"),
        ({"tie_embedding": 1}, "tie_embedding"),
        ({"max_position_embeddings": 0}, "max_position_embeddings"),
        ({"eos_token_id": "7"}, "eos_token_id"),
        ({"bos_token_id": [1, 2]}, "bos_token_id"),
        ({"full_attn_idxs": [2, 16]}, "full_attn_idxs"),
        ({"layer_types": ["conv"] * 15}, "layer_types"),
        ({"layer_types": ["conv"] * 15 + ["sliding_attention"]}, "layer_types"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0}}, "rope_parameters.rope_type"),
        ({"rope_parameters": {"rope_theta": -5}}, "rope_parameters.rope_theta"),
        ({"rope_parameters": [1]}, "rope_parameters"),
    ],
)
def test_nonsense_config_names_the_field(tmp_path: Path, changes: Dict[str, Any], field: str) -> None:
    raw = config_dialect_a()
    raw.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(LoadError) as info:
        load_config(path)
    assert str(path) in str(info.value) and repr(field) in str(info.value), str(info.value)


def test_unreadable_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{")
    with pytest.raises(LoadError, match="not valid JSON"):
        load_config(path)
    path.write_text("[]")
    with pytest.raises(LoadError, match="JSON object"):
        load_config(path)


TRANSFORMERS_CASES = [
    config_dialect_a(),
    config_dialect_b(),
    config_transformers4(),
    {**config_dialect_a(), "block_ffn_dim_multiplier": 1.5, "block_multiple_of": 128},
    {**config_dialect_a(), "block_auto_adjust_ff_dim": False, "tie_embedding": False},
    {**config_dialect_b(), "block_ff_dim": 8192, "rope_parameters": {"rope_theta": 10000.0}},
    {k: v for k, v in config_dialect_a().items() if k != "full_attn_idxs"},
]


@pytest.mark.parametrize("raw", TRANSFORMERS_CASES)
def test_matches_transformers(raw: Dict[str, Any]) -> None:
    """The normalised fields equal what transformers' Lfm2Config / Lfm2MLP / Lfm2Attention use."""
    pytest.importorskip("torch")
    lfm2 = pytest.importorskip("transformers.models.lfm2.modeling_lfm2")
    from transformers import Lfm2Config as HFLfm2Config

    ours = parse_config(json.loads(json.dumps(raw)))
    theirs = HFLfm2Config(**json.loads(json.dumps(raw)))
    # Build the MLP at a tiny hidden size: only its width is compared.
    mlp = lfm2.Lfm2MLP(HFLfm2Config(**{**json.loads(json.dumps(raw)), "hidden_size": 2}))
    assert ours.ff_dim == mlp.w1.out_features
    assert list(ours.layer_types) == list(theirs.layer_types)
    assert ours.tie_embeddings == theirs.tie_word_embeddings
    assert ours.rope_theta == theirs.rope_parameters["rope_theta"]
    assert ours.head_dim == theirs.hidden_size // theirs.num_attention_heads
    assert ours.conv_kernel == theirs.conv_L_cache and ours.norm_eps == theirs.norm_eps
    assert ours.max_context == theirs.max_position_embeddings


# ----------------------------------------------------------------------------------------------
# Hugging Face directories


def tiny_config() -> Dict[str, Any]:
    return {
        "vocab_size": 32,
        "hidden_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "block_ff_dim": 24,
        "block_multiple_of": 16,
        "full_attn_idxs": [1],
        "eos_token_id": 7,
    }


def tiny_tensors() -> Dict[str, Tuple[str, np.ndarray]]:
    def t(*shape: int) -> Tuple[str, np.ndarray]:
        return ("F32", np.full(shape, len(shape), np.float32))

    return {
        "model.embed_tokens.weight": t(32, 8),
        "model.embedding_norm.weight": t(8),
        "model.layers.0.conv.in_proj.weight": t(24, 8),
        "model.layers.1.self_attn.q_layernorm.weight": t(4),
        "lm_head.weight": t(32, 8),
    }


def make_tokenizer_json(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=280,
        special_tokens=["<|pad|>", "<|startoftext|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(["hello world", "hello there"], trainer)
    tokenizer.save(str(path))


def make_checkpoint(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    write_safetensors(directory / "model.safetensors", tiny_tensors())
    make_tokenizer_json(directory / "tokenizer.json")
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": {"content": "<|startoftext|>", "lstrip": False},
                "eos_token": "<|im_end|>",
                "pad_token": "<|pad|>",
                "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}",
            }
        )
    )
    (directory / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [2, 7], "temperature": 0.3, "top_k": 50, "min_p": 0.15,
                    "repetition_penalty": 1.05, "do_sample": True})
    )
    return directory


def test_hf_checkpoint(tmp_path: Path) -> None:
    ckpt = load_hf_checkpoint(make_checkpoint(tmp_path / "ckpt"))
    assert ckpt.path == str(tmp_path / "ckpt")
    assert ckpt.config.ff_dim == 16 and ckpt.config.layer_types == ("conv", "full_attention")
    assert set(ckpt.tensors) == {
        "embed_tokens.weight",
        "embedding_norm.weight",
        "layers.0.conv.in_proj.weight",
        "layers.1.self_attn.q_layernorm.weight",
        "lm_head.weight",
    }
    ref = ckpt.tensors["layers.0.conv.in_proj.weight"]
    assert ref.name == "model.layers.0.conv.in_proj.weight" and ref.shape == (24, 8)
    assert ref.file.endswith("model.safetensors")
    assert ckpt.tokenizer is not None and ckpt.tokenizer.token_to_id("<|im_end|>") == 2
    assert ckpt.chat_template.startswith("{{ bos_token }}")
    assert ckpt.bos_token == "<|startoftext|>" and ckpt.eos_token == "<|im_end|>"
    assert ckpt.special_tokens["pad_token"] == "<|pad|>"
    gen = ckpt.generation
    assert gen.eos_token_id == [2, 7] and gen.temperature == 0.3 and gen.top_k == 50
    assert gen.min_p == 0.15 and gen.repetition_penalty == 1.05 and gen.do_sample is True
    assert gen.top_p is None
    assert len(ckpt.files) == 1


def test_hf_optional_files_absent(tmp_path: Path) -> None:
    directory = tmp_path / "bare"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    write_safetensors(directory / "model.safetensors", tiny_tensors())
    ckpt = load_hf_checkpoint(directory)
    assert ckpt.tokenizer is None and ckpt.chat_template is None and ckpt.special_tokens == {}
    assert ckpt.generation.eos_token_id == [7] and ckpt.generation.temperature is None


def test_hf_chat_template_sources(tmp_path: Path) -> None:
    directory = make_checkpoint(tmp_path / "ckpt")
    config_path = directory / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())

    tokenizer_config["chat_template"] = [
        {"name": "tool_use", "template": "TOOLS"},
        {"name": "default", "template": "DEFAULT"},
    ]
    config_path.write_text(json.dumps(tokenizer_config))
    assert load_hf_checkpoint(directory).chat_template == "DEFAULT"

    (directory / "chat_template.jinja").write_text("FROM JINJA FILE ✓", encoding="utf-8")
    assert load_hf_checkpoint(directory).chat_template == "FROM JINJA FILE ✓"


def test_hf_special_tokens_map_fills_gaps(tmp_path: Path) -> None:
    directory = make_checkpoint(tmp_path / "ckpt")
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    (directory / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": {"content": "<|startoftext|>"}, "eos_token": "IGNORED"})
    )
    ckpt = load_hf_checkpoint(directory)
    assert ckpt.bos_token == "<|startoftext|>" and ckpt.eos_token == "<|im_end|>"


def test_hf_sharded_directory(tmp_path: Path) -> None:
    directory = tmp_path / "sharded"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    write_sharded(directory)
    ckpt = load_hf_checkpoint(directory)
    assert set(ckpt.tensors) == {"a", "b"} and len(ckpt.files) == 2


def test_hf_other_safetensors_names(tmp_path: Path) -> None:
    directory = tmp_path / "odd"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    write_safetensors(directory / "part1.safetensors", {"model.x": ("F32", np.zeros(2, np.float32))})
    write_safetensors(directory / "part2.safetensors", {"lm_head.weight": ("F32", np.zeros(2, np.float32))})
    assert set(load_hf_checkpoint(directory).tensors) == {"x", "lm_head.weight"}


def expect_checkpoint_error(directory: Path, *fragments: str) -> None:
    with pytest.raises(LoadError) as info:
        load_hf_checkpoint(directory)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_hf_errors_name_the_path(tmp_path: Path) -> None:
    expect_checkpoint_error(tmp_path / "missing", str(tmp_path / "missing"), "not a directory")

    directory = tmp_path / "ckpt"
    directory.mkdir()
    expect_checkpoint_error(directory, str(directory / "config.json"), "missing")

    (directory / "config.json").write_text(json.dumps(tiny_config()))
    expect_checkpoint_error(directory, str(directory), "no model.safetensors")


@pytest.mark.parametrize(
    "filename, text, fragment",
    [
        ("tokenizer.json", "{not a tokenizer", "tokenizer.json"),
        ("tokenizer_config.json", "{", "tokenizer_config.json"),
        ("tokenizer_config.json", '{"chat_template": 5}', "chat_template"),
        ("tokenizer_config.json", '{"chat_template": [{"name": "default"}]}', "chat_template"),
        ("tokenizer_config.json", '{"bos_token": 3}', "bos_token"),
        ("generation_config.json", '{"temperature": "hot"}', "'temperature'"),
        ("generation_config.json", '{"top_k": 2.5}', "'top_k'"),
        ("generation_config.json", '{"eos_token_id": ["x"]}', "'eos_token_id'"),
        ("generation_config.json", '{"do_sample": 1}', "'do_sample'"),
        ("generation_config.json", "[]", "generation_config.json"),
    ],
)
def test_hf_malformed_side_files(tmp_path: Path, filename: str, text: str, fragment: str) -> None:
    directory = make_checkpoint(tmp_path / "ckpt")
    (directory / filename).write_text(text)
    expect_checkpoint_error(directory, str(directory / filename), fragment)


def test_hf_name_collision_after_stripping_prefix(tmp_path: Path) -> None:
    directory = make_checkpoint(tmp_path / "ckpt")
    tensors = tiny_tensors()
    tensors["embed_tokens.weight"] = tensors["model.embed_tokens.weight"]
    write_safetensors(directory / "model.safetensors", tensors)
    expect_checkpoint_error(directory, "'model.embed_tokens.weight'", "'embed_tokens.weight'")


def test_hf_corrupt_weights_propagate(tmp_path: Path) -> None:
    directory = make_checkpoint(tmp_path / "ckpt")
    (directory / "model.safetensors").write_bytes(b"\x00\x01")
    expect_checkpoint_error(directory, str(directory / "model.safetensors"), "too short")


@pytest.mark.parametrize(
    "model_dir",
    sorted(p for p in FIXTURE_MODELS.glob("*") if (p / "config.json").is_file()) or [None],
)
def test_fixture_models_load(model_dir: Optional[Path]) -> None:
    """The committed fixture models load and agree with the safetensors package."""
    if model_dir is None:
        pytest.skip("no fixture models committed yet")
    st = pytest.importorskip("safetensors")
    ckpt = load_hf_checkpoint(model_dir)
    count = 0
    for file in ckpt.files:
        with st.safe_open(file.path, framework="numpy") as reference:
            for name in reference.keys():
                ref = file.tensors[name]
                assert list(ref.shape) == list(reference.get_slice(name).get_shape())
                count += 1
    assert count == len(ckpt.tensors) and "embed_tokens.weight" in ckpt.tensors
