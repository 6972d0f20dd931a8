"""Inputs the fuzzers (fuzz/, fuzz/run.sh) found breaking a contract, kept as regression tests.

Some of them broke only a rule of C++ that an ordinary build survives silently (undefined
behaviour that UBSan reports); those fail before their fix only under tools/sanitize.sh, which
runs this file, and each says so.
"""
import json
import shutil
import struct
from pathlib import Path

import pytest

import lfmrt
from lfmrt.text.chat_template import ChatTemplate, TemplateError
from test_gguf_errors import tensor_info_offset
from test_loaders import write_raw

FUZZ = Path(__file__).parents[1] / "fuzz"


def test_empty_session_snapshot_round_trips(tiny_model_dir):
    # fuzz_snapshot.py, seed "empty": restoring a snapshot with no tokens called memcpy with the
    # null data() of an empty vector (UBSan: "null pointer passed as argument 1"). Fails before
    # the fix under tools/sanitize.sh only.
    model = lfmrt.Model.load(tiny_model_dir, n_threads=1)
    restored = model.load_session(model.session().save())
    assert restored.tokens == []
    assert restored.append([1, 2]).shape == (model.config.vocab_size,)


def test_snapshot_of_another_model_with_undecodable_summary_is_a_load_error(tiny_model_dir):
    # fuzz_snapshot.py: a snapshot whose fingerprint differs has its architecture summary
    # compared field by field, and the message quoted the snapshot's bytes as they were, so a byte
    # that is not UTF-8 made pybind11 raise UnicodeDecodeError instead of LoadError.
    header = struct.Struct("<8sIQQQ")  # magic, version, fingerprint, payload length, FNV-1a

    def fnv1a(data: bytes) -> int:
        value = 1469598103934665603
        for byte in data:
            value = ((value ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        return value

    model = lfmrt.Model.load(tiny_model_dir, n_threads=1)
    session = model.session()
    session.append([1, 2, 3])
    snapshot = session.save()
    magic, version, fingerprint, _, _ = header.unpack_from(snapshot)
    payload = bytearray(snapshot[header.size :])
    at = payload.index(b"hidden_size=") + len(b"hidden_size=")
    payload[at] = 0xFF
    mangled = header.pack(magic, version, fingerprint ^ 1, len(payload), fnv1a(bytes(payload))) + bytes(payload)
    try:
        model.load_session(mangled)
    except lfmrt.LoadError as error:
        assert "hidden_size \\xff" in str(error), str(error)
    else:
        raise AssertionError("a snapshot of another model loaded")


# A dimension past int64 in a tensor that holds nothing (another dimension is 0, so its size in
# bytes is 0 and every size check passed) reached the core, whose int64 shapes pybind11 could
# not cast it to: a RuntimeError ("Unable to cast Python instance of type tuple") instead of
# LoadError. fuzz_gguf.py found it (ASan build and plain alike); safetensors headers had the
# same gap.
_PAST_INT64 = 2**64 - 240


def test_gguf_tensor_with_a_dimension_past_int64_is_a_load_error(tmp_path):
    data = bytearray((FUZZ / "corpus" / "gguf" / "micro-f32.gguf").read_bytes())
    # An extra block's tensor (the name's length unchanged), which no config field is checked against.
    name = "blk.0.ffn_down.weight"
    at = tensor_info_offset(data, name)
    data[at - len(name) : at] = b"blk.9.ffn_down.weight"
    assert struct.unpack_from("<I", data, at)[0] == 2
    struct.pack_into("<QQ", data, at + 4, _PAST_INT64, 0)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    try:
        lfmrt.Model.load(bad, n_threads=1)
    except lfmrt.LoadError as error:
        assert str(bad) in str(error) and "blk.9.ffn_down.weight" in str(error) and "int64" in str(error), str(error)
    else:
        raise AssertionError("a tensor with a dimension past int64 loaded")


def test_safetensors_tensor_with_a_dimension_past_int64_is_a_load_error(tmp_path):
    micro = FUZZ / "micro"
    shutil.copy(micro / "config.json", tmp_path / "config.json")
    data = (micro / "model.safetensors").read_bytes()
    (length,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + length])
    header["model.layers.9.feed_forward.w2.weight"] = {"dtype": "F32", "shape": [0, _PAST_INT64], "data_offsets": [0, 0]}
    write_raw(tmp_path / "model.safetensors", header, data[8 + length :])
    try:
        lfmrt.Model.load(tmp_path, n_threads=1)
    except lfmrt.LoadError as error:
        message = str(error)
        assert "model.safetensors" in message and "model.layers.9.feed_forward.w2.weight" in message, message
        assert "2**63 - 1" in message, message
    else:
        raise AssertionError("a tensor with a dimension past int64 loaded")


def test_chat_template_nested_too_deeply_is_a_template_error():
    # fuzz_chat_template.py: jinja2's parser recurses once per level of nesting, and a template
    # nested deeper than Python's recursion limit raised RecursionError out of ChatTemplate
    # (documented to raise TemplateError); rendering already turned it into one.
    for source in ["{{ " + "[" * 2000 + " }}", "{{ " + "-" * 5000 + "1 }}", "{% if x %}" * 1000 + "{% endif %}" * 1000]:
        with pytest.raises(TemplateError, match="nests too deeply"):
            ChatTemplate(source, "<|startoftext|>", "<|im_end|>")


def test_chat_template_jinja2_compiles_to_invalid_python_is_a_template_error():
    # fuzz_chat_template.py: a slice with a tuple of bounds parses as Jinja, but jinja2 writes
    # Python for it that Python's compiler rejects, and that SyntaxError escaped ChatTemplate.
    with pytest.raises(TemplateError, match="does not compile: SyntaxError"):
        ChatTemplate("{{ messages[:b, 0.1] }}", "<|startoftext|>", "<|im_end|>")
