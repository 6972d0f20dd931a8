"""Bad GGUF files through Model.load: a clear lfmrt.LoadError naming the problem, never a crash."""

from __future__ import annotations

import gc
import mmap
import struct
import subprocess
import sys
from pathlib import Path

import gguf
import pytest

import lfmrt
from lfmrt.loaders import load_checkpoint, load_gguf_checkpoint
from lfmrt.loaders.gguf import _walk_header
from lfmrt.quantization.gguf_writer import write_gguf

MODELS = Path(__file__).parent / "fixtures" / "models"
SOURCE = MODELS / "mixed_mha_hd64_f32_dialectA"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "good.gguf"
    write_gguf(load_checkpoint(SOURCE), path, "q8_0")
    return path


def rewrite(src: Path, dst: Path, drop_keys=(), arch=None, drop_tensors=(), set_keys=None) -> Path:
    """Copies a GGUF file with the gguf package, leaving out keys or tensors, changing values or
    renaming the architecture."""
    set_keys = set_keys or {}
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, arch or reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop_keys:
            continue
        sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, set_keys.get(key, field.contents()), field.types[0], sub_type=sub_type)
    for tensor in reader.tensors:
        if tensor.name not in drop_tensors:
            writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


def tensor_info_offset(data: bytes, name: str) -> int:
    """Where the tensor-info record of ``name`` continues after its name (n_dims comes next)."""
    encoded = name.encode()
    start = data.index(struct.pack("<Q", len(encoded)) + encoded)
    return start + 8 + len(encoded)


def test_the_unmodified_file_loads(good, tmp_path):
    assert lfmrt.Model.load(rewrite(good, tmp_path / "copy.gguf")).logits([1, 2]).shape == (2, 768)


@pytest.mark.parametrize("cut", [0, 3, 10, 23, 200, 5000, -100])
def test_truncated_file(good, tmp_path, cut):
    data = good.read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(data[:cut] if cut >= 0 else data[:cut])
    with pytest.raises(lfmrt.LoadError, match=r"bad\.gguf.*(truncated|short|runs past)"):
        lfmrt.Model.load(bad)


def test_wrong_magic(good, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + good.read_bytes()[4:])
    with pytest.raises(lfmrt.LoadError, match="not a GGUF file"):
        lfmrt.Model.load(bad)


@pytest.mark.parametrize("version, message", [(1, "version 1"), (7, "version 7"), (3 << 24, "big-endian")])
def test_wrong_version(good, tmp_path, version, message):
    data = bytearray(good.read_bytes())
    data[4:8] = struct.pack("<I", version)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(lfmrt.LoadError, match=message):
        lfmrt.Model.load(bad)


def test_tensor_data_out_of_bounds(good, tmp_path):
    data = bytearray(good.read_bytes())
    at = tensor_info_offset(data, "blk.3.ffn_down.weight")
    n_dims = struct.unpack_from("<I", data, at)[0]
    offset_at = at + 4 + 8 * n_dims + 4
    data[offset_at : offset_at + 8] = struct.pack("<Q", len(data))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(lfmrt.LoadError, match=r"blk\.3\.ffn_down\.weight.*runs past the end"):
        lfmrt.Model.load(bad)


@pytest.mark.parametrize("type_id, message", [(int(gguf.GGMLQuantizationType.Q5_1), "Q5_1"), (250, "unknown type id 250")])
def test_unknown_tensor_type(good, tmp_path, type_id, message):
    data = bytearray(good.read_bytes())
    at = tensor_info_offset(data, "blk.0.ffn_up.weight")
    n_dims = struct.unpack_from("<I", data, at)[0]
    struct.pack_into("<I", data, at + 4 + 8 * n_dims, type_id)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(lfmrt.LoadError, match=rf"blk\.0\.ffn_up\.weight.*{message}"):
        lfmrt.Model.load(bad)


def test_wrong_architecture(good, tmp_path):
    with pytest.raises(lfmrt.LoadError, match="general.architecture is 'llama'"):
        lfmrt.Model.load(rewrite(good, tmp_path / "bad.gguf", arch="llama"))


def test_missing_tensor(good, tmp_path):
    with pytest.raises(lfmrt.LoadError, match=r"layers\.1\.self_attn\.k_proj\.weight"):
        lfmrt.Model.load(rewrite(good, tmp_path / "bad.gguf", drop_tensors=("blk.1.attn_k.weight",)))


@pytest.mark.parametrize("key", ["lfm2.block_count", "lfm2.attention.head_count_kv", "lfm2.shortconv.l_cache"])
def test_missing_metadata_key(good, tmp_path, key):
    with pytest.raises(lfmrt.LoadError, match=key.replace(".", r"\.")):
        lfmrt.Model.load(rewrite(good, tmp_path / "bad.gguf", drop_keys=(key,)))


def test_missing_file_and_directory_that_is_not_gguf(tmp_path):
    with pytest.raises(lfmrt.LoadError, match="nowhere.gguf"):
        lfmrt.Model.load(tmp_path / "nowhere.gguf")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(lfmrt.LoadError, match="notes.txt"):
        lfmrt.Model.load(text)


def gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def hand_made(entries, tensors: bytes = b"", n_tensors: int = 0) -> bytes:
    """A GGUF v3 file from raw metadata entries (key, type id, value bytes) and tensor infos."""
    kvs = b"".join(gguf_string(key) + struct.pack("<I", kind) + value for key, kind, value in entries)
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, len(entries)) + kvs + tensors


T = gguf.GGUFValueType
ARCH = (b"general.architecture", T.STRING, gguf_string(b"lfm2"))


def test_duplicate_metadata_key(tmp_path):
    # GGUFReader would keep both under different names; llama.cpp and lfmrt refuse the file.
    bad = tmp_path / "bad.gguf"
    count = (b"lfm2.block_count", T.UINT32, struct.pack("<I", 2))
    bad.write_bytes(hand_made([ARCH, count, count]) + bytes(64))
    with pytest.raises(lfmrt.LoadError, match=r"bad\.gguf: metadata key 'lfm2\.block_count' appears twice"):
        lfmrt.Model.load(bad)


def test_empty_arrays_read_like_gguf_reader(tmp_path):
    """An empty array has no item type in GGUFReader's types, and lfmrt's reader agrees."""
    path = tmp_path / "empty.gguf"
    empty = [(f"test.{kind.name}".encode(), T.ARRAY, struct.pack("<IQ", kind, 0)) for kind in (T.UINT32, T.STRING)]
    path.write_bytes(hand_made([ARCH, *empty]) + bytes(64))
    reader = gguf.GGUFReader(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        header = _walk_header(str(path), buffer, len(buffer))
    expected = {k: (f.types, f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert {k: (header.types[k], v) for k, v in header.values.items()} == expected
    assert header.values["test.UINT32"] == [] and header.types["test.STRING"] == [T.ARRAY]


def test_token_that_is_not_utf8(good, tmp_path):
    data = bytearray(good.read_bytes())
    at = data.index(gguf_string(b"<|im_end|>")) + 8  # the token, not the chat template's text
    data[at] = 0xFF
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(lfmrt.LoadError, match=r"bad\.gguf: metadata 'tokenizer\.ggml\.tokens'\[\d+\] .*not UTF-8"):
        lfmrt.Model.load(bad)


def test_special_token_text_the_tokenizer_cannot_use_names_the_file(good, tmp_path):
    reader = gguf.GGUFReader(good)
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    bos = int(reader.fields["tokenizer.ggml.bos_token_id"].contents())
    tokens[bos] = "$weird:piece"
    bad = rewrite(good, tmp_path / "bad.gguf", set_keys={"tokenizer.ggml.tokens": tokens})
    with pytest.raises(lfmrt.LoadError, match=r"bad\.gguf: tokenizer\.ggml\.tokens .*'\$weird:piece'") as raised:
        lfmrt.Model.load(bad)
    assert "Cannot build Piece" in str(raised.value.__cause__)


def tokens_array_at(data: bytes) -> int:
    """Where the item type of tokenizer.ggml.tokens starts (the count follows it)."""
    return data.index(gguf_string(b"tokenizer.ggml.tokens")) + 8 + len(b"tokenizer.ggml.tokens") + 4


@pytest.mark.parametrize("count", [2**63 - 1, 2**40])
def test_string_array_with_a_huge_count(good, tmp_path, count):
    data = bytearray(good.read_bytes())
    struct.pack_into("<Q", data, tokens_array_at(data) + 4, count)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    message = rf"bad\.gguf: truncated or malformed GGUF: .*tokens.* claims {count} strings"
    with pytest.raises(lfmrt.LoadError, match=message):
        lfmrt.Model.load(bad)


def test_string_array_item_running_past_the_end(good, tmp_path):
    data = bytearray(good.read_bytes())
    at = tokens_array_at(data) + 4 + 8  # the first token's length
    struct.pack_into("<Q", data, at, 2**62)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(lfmrt.LoadError, match=r"bad\.gguf: truncated or malformed GGUF: .*tokens'\[0\]"):
        lfmrt.Model.load(bad)


def test_a_failed_load_leaves_no_mapping_behind(good, tmp_path):
    """The mapping is closed as soon as the load fails after the header walk (here: on the
    architecture), even while the error, and with it the loader's frames, is still held."""
    bad = rewrite(good, tmp_path / "bad.gguf", arch="llama")
    gc.collect()
    before = sum(type(o) is mmap.mmap and not o.closed for o in gc.get_objects())
    with pytest.raises(lfmrt.LoadError, match="architecture") as held:
        load_gguf_checkpoint(bad)
    assert held.value is not None
    assert sum(type(o) is mmap.mmap and not o.closed for o in gc.get_objects()) == before


FUZZ_SCRIPT = r"""
import random, struct, sys
from pathlib import Path
import lfmrt

source, work = Path(sys.argv[1]), Path(sys.argv[2])
original = source.read_bytes()
header_end = original.index(b"blk.0.attn_norm.weight") + 200  # metadata and tensor infos
rng = random.Random(4321)
outcomes = {"loaded": 0, "LoadError": 0}
for trial in range(240):
    data = bytearray(original)
    kind = trial % 4
    if kind == 0:  # truncate anywhere
        data = data[: rng.randrange(len(data))]
    elif kind == 1:  # random bytes in the header
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(header_end)] = rng.randrange(256)
    elif kind == 2:  # a huge count or length at a random 8-byte-aligned place in the header
        at = rng.randrange(4, header_end - 8)
        struct.pack_into("<Q", data, at, rng.choice([2**63 - 1, 2**40, 2**32 + 7, 0xFFFFFFFF]))
    else:  # bytes anywhere
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    work.write_bytes(bytes(data))
    try:
        model = lfmrt.Model.load(work)
        model.logits([1, 2, 3])
        outcomes["loaded"] += 1
    except lfmrt.LoadError:
        outcomes["LoadError"] += 1
print(outcomes)
"""


def test_fuzzed_and_truncated_files_never_crash(good, tmp_path):
    # In a child process, so a crash shows up as a failed test rather than a dead test run.
    result = subprocess.run(
        [sys.executable, "-c", FUZZ_SCRIPT, str(good), str(tmp_path / "fuzzed.gguf")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LoadError" in result.stdout


def test_config_disagreeing_with_a_quantized_tensor_names_it(good, tmp_path):
    bad = rewrite(good, tmp_path / "bad.gguf", set_keys={"lfm2.feed_forward_length": 256})
    with pytest.raises(lfmrt.LoadError, match=r"bad\.gguf \(its lfm2\.\* metadata\): gives tensor 'layers\.0\.feed_forward\.w1\.weight'"
                                           r".*lfm2\.feed_forward_length = 256"):
        lfmrt.Model.load(bad)
