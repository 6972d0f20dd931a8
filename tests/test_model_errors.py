"""Bad checkpoints through Model.load: a clear lfmrt.LoadError naming the culprit, never a crash."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lfmrt

MODELS = Path(__file__).parent / "fixtures" / "models"
SOURCE = MODELS / "all_conv_bias_f32"


def write_safetensors(path: Path, tensors: dict) -> None:
    """Writes {name: numpy array} as safetensors by hand (no dependency on the safetensors package)."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def read_tensors(path: Path) -> dict:
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    header.pop("__metadata__", None)
    data = raw[8 + size :]
    kinds = {"F32": np.float32, "F16": np.float16}
    return {
        name: np.frombuffer(data[e["data_offsets"][0] : e["data_offsets"][1]], kinds[e["dtype"]]).reshape(e["shape"])
        for name, e in header.items()
    }


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(SOURCE, target)
    return target


def rewrite(checkpoint: Path, edit) -> None:
    tensors = read_tensors(checkpoint / "model.safetensors")
    edit(tensors)
    write_safetensors(checkpoint / "model.safetensors", tensors)


def test_the_unmodified_copy_loads(checkpoint):
    assert lfmrt.Model.load(checkpoint).logits([1, 2]).shape[0] == 2


def test_wrong_tensor_shape_names_the_tensor(checkpoint):
    name = "model.layers.0.conv.out_proj.weight"
    rewrite(checkpoint, lambda t: t.__setitem__(name, t[name][:, :-1].copy()))
    with pytest.raises(lfmrt.LoadError, match=r"layers\.0\.conv\.out_proj\.weight.*shape"):
        lfmrt.Model.load(checkpoint)


def test_missing_tensor_names_the_tensor(checkpoint):
    rewrite(checkpoint, lambda t: t.pop("model.layers.1.feed_forward.w2.weight"))
    with pytest.raises(lfmrt.LoadError, match=r"layers\.1\.feed_forward\.w2\.weight"):
        lfmrt.Model.load(checkpoint)


def test_missing_bias_when_config_says_conv_bias(checkpoint):
    rewrite(checkpoint, lambda t: t.pop("model.layers.0.conv.in_proj.bias"))
    with pytest.raises(lfmrt.LoadError, match=r"layers\.0\.conv\.in_proj\.bias"):
        lfmrt.Model.load(checkpoint)


def test_untied_config_without_lm_head(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    for key in ("tie_word_embeddings", "tie_embedding"):
        config.pop(key, None)
    config["tie_word_embeddings"] = False
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(lfmrt.LoadError, match=r"lm_head\.weight"):
        lfmrt.Model.load(checkpoint)


def test_unknown_dtype_names_the_tensor(checkpoint):
    name = "model.embedding_norm.weight"
    rewrite(checkpoint, lambda t: t.__setitem__(name, t[name].astype(np.int64)))
    with pytest.raises(lfmrt.LoadError, match=r"embedding_norm\.weight"):
        lfmrt.Model.load(checkpoint)


def test_config_disagreeing_with_weights_names_config_json_and_the_field(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    config["hidden_size"] *= 2
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(lfmrt.LoadError, match=r"config\.json: gives tensor 'embed_tokens\.weight'.*hidden_size = 128"):
        lfmrt.Model.load(checkpoint)
    config["hidden_size"] //= 2
    config["intermediate_size"] += 64
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(lfmrt.LoadError, match=r"config\.json: gives tensor 'layers\.0\.feed_forward\.w1\.weight'.*intermediate_size"):
        lfmrt.Model.load(checkpoint)


def test_missing_config_field_names_the_field(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    del config["num_attention_heads"]
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(lfmrt.LoadError, match="num_attention_heads"):
        lfmrt.Model.load(checkpoint)


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(lfmrt.LoadError, match="nowhere"):
        lfmrt.Model.load(tmp_path / "nowhere")


FUZZ_SCRIPT = r"""
import random, shutil, sys
from pathlib import Path
import lfmrt

source, work = Path(sys.argv[1]), Path(sys.argv[2])
original = (source / "model.safetensors").read_bytes()
header_end = 8 + int.from_bytes(original[:8], "little")
rng = random.Random(1234)
outcomes = {"loaded": 0, "LoadError": 0}
for trial in range(150):
    data = bytearray(original)
    kind = trial % 3
    if kind == 0:  # truncate anywhere
        data = data[: rng.randrange(len(data))]
    elif kind == 1:  # flip bytes in the length prefix and the JSON header
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(header_end)] = rng.randrange(256)
    else:  # flip bytes anywhere
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    (work / "model.safetensors").write_bytes(bytes(data))
    try:
        model = lfmrt.Model.load(work)
        model.logits([1, 2, 3])
        outcomes["loaded"] += 1
    except lfmrt.LoadError:
        outcomes["LoadError"] += 1
print(outcomes)
"""


def test_fuzzed_and_truncated_weights_never_crash(checkpoint, tmp_path):
    # In a child process, so a crash shows up as a failed test rather than a dead test run.
    result = subprocess.run(
        [sys.executable, "-c", FUZZ_SCRIPT, str(SOURCE), str(checkpoint)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LoadError" in result.stdout


def test_broken_chat_template_is_a_load_error_naming_the_checkpoint(checkpoint):
    config_path = checkpoint / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text()) if config_path.exists() else {}
    tokenizer_config["chat_template"] = "{% for message in messages %}{{ message['content'] }"  # unclosed
    config_path.write_text(json.dumps(tokenizer_config))
    with pytest.raises(lfmrt.LoadError, match="chat template"):
        lfmrt.Model.load(checkpoint)
