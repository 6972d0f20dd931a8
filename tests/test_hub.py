"""Loading by name: local paths, "demo", and Hugging Face repo ids through a pre-filled Hub cache
in the real cache layout (models--owner--name/{blobs,refs/main,snapshots/<commit>/...})."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

import pytest

import lfmrt
from lfmrt.hub import is_repo_id, resolve_model, select_gguf, split_quant_tag

pytest.importorskip("huggingface_hub")

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_cache(cache: Path, repo_id: str, files: Dict[str, bytes], revision: str = "main") -> Path:
    """Writes ``files`` into ``cache`` as huggingface_hub does: each file's bytes in
    blobs/<sha256>, the snapshot as relative symlinks to them, and refs/<revision> naming the
    commit. Returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(COMMIT)
    for name, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / digest).write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / digest, link.parent))
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hub cache in a temp folder, offline."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def checkpoint_files(directory: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.name != "golden.npz"}


def test_repo_id_syntax():
    assert is_repo_id("LiquidAI/LFM2.5-350M")
    assert is_repo_id("LiquidAI/LFM2.5-350M-GGUF:Q4_K_M")
    assert split_quant_tag("LiquidAI/LFM2.5-350M-GGUF:Q4_K_M") == ("LiquidAI/LFM2.5-350M-GGUF", "Q4_K_M")
    assert split_quant_tag("a/b") == ("a/b", None)
    for not_repo in ("model", "./a/b", "/abs/path", "a/b/c", "../a", "a/model.gguf", "demo", ""):
        assert not is_repo_id(not_repo), not_repo


def test_local_paths_and_demo_resolve_to_themselves(tiny_model_dir, tmp_path, monkeypatch):
    assert resolve_model(tiny_model_dir) == str(tiny_model_dir)
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)
    assert resolve_model("demo") == lfmrt.demo_model_path()
    # A local folder that happens to look like owner/name wins over the Hub.
    local = tmp_path / "owner" / "name"
    local.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_model("owner/name") == "owner/name"


def test_a_missing_path_that_is_no_repo_id_says_so():
    with pytest.raises(lfmrt.LoadError, match="no such file or directory.*repo id"):
        resolve_model("/nonexistent/model/dir")


def test_checkpoint_repo_from_the_cache_offline(hub_cache, tiny_model_dir):
    snapshot = fill_cache(hub_cache, "tiny/lfm2-hybrid", checkpoint_files(tiny_model_dir))
    assert resolve_model("tiny/lfm2-hybrid") == str(snapshot)
    from_hub = lfmrt.Model.load("tiny/lfm2-hybrid")
    local = lfmrt.Model.load(tiny_model_dir)
    prompt = local.tokenize("The model")
    assert from_hub.generate(prompt, max_tokens=8, temperature=0).tokens == \
        local.generate(prompt, max_tokens=8, temperature=0).tokens


def test_a_revision_other_than_main(hub_cache, tiny_model_dir):
    fill_cache(hub_cache, "tiny/lfm2-hybrid", checkpoint_files(tiny_model_dir), revision="v1")
    assert resolve_model("tiny/lfm2-hybrid", revision="v1").endswith(COMMIT)
    with pytest.raises(lfmrt.LoadError, match="not in the Hugging Face cache"):
        resolve_model("tiny/lfm2-hybrid")  # main was never downloaded


GGUF_FILES = {
    "LFM2.5-350M-Q4_K_M.gguf": b"q4km",
    "LFM2.5-350M-Q8_0.gguf": b"q8",
    "LFM2.5-350M-F16.gguf": b"f16",
    "README.md": b"card",
}


def test_gguf_repo_file_choice_offline(hub_cache):
    snapshot = fill_cache(hub_cache, "LiquidAI/LFM2.5-350M-GGUF", GGUF_FILES)
    repo = "LiquidAI/LFM2.5-350M-GGUF"
    assert resolve_model(repo) == str(snapshot / "LFM2.5-350M-Q4_K_M.gguf")  # the default quant
    assert resolve_model(repo + ":Q8_0") == str(snapshot / "LFM2.5-350M-Q8_0.gguf")
    assert resolve_model(repo + ":q8_0") == str(snapshot / "LFM2.5-350M-Q8_0.gguf")
    assert resolve_model(repo, file="*F16.gguf") == str(snapshot / "LFM2.5-350M-F16.gguf")
    with pytest.raises(lfmrt.LoadError, match=r"no .gguf file for quant Q5_K_M \(available: .*Q8_0.gguf"):
        resolve_model(repo + ":Q5_K_M")
    with pytest.raises(lfmrt.LoadError, match="matches several files"):
        resolve_model(repo, file="*.gguf")


def test_select_gguf_rules():
    assert select_gguf(["only-Q8_0.gguf"], None, None, "r") == "only-Q8_0.gguf"  # a single file
    assert select_gguf(["sub/m-Q6_K.gguf", "m-Q4_K_M.gguf"], None, "Q6_K", "r") == "sub/m-Q6_K.gguf"
    # The tag must be the whole quant name: Q4_K is not Q4_K_M.
    with pytest.raises(lfmrt.LoadError):
        select_gguf(["m-Q4_K_M.gguf"], None, "Q4_K", "r")


def test_offline_and_nothing_cached_fails_fast_with_advice(hub_cache):
    start = time.monotonic()
    with pytest.raises(lfmrt.LoadError) as error:
        lfmrt.Model.load("LiquidAI/LFM2.5-350M")
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert "LiquidAI/LFM2.5-350M" in message
    assert "not in the Hugging Face cache" in message and str(hub_cache) in message
    assert "HF_HUB_OFFLINE" in message
    assert "hf download LiquidAI/LFM2.5-350M" in message and "--demo" in message


def test_unreachable_hub_falls_back_to_the_cache(hub_cache, tiny_model_dir, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")

    def no_network(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_network)
    snapshot = fill_cache(hub_cache, "tiny/lfm2-hybrid", checkpoint_files(tiny_model_dir))
    assert resolve_model("tiny/lfm2-hybrid") == str(snapshot)
    with pytest.raises(lfmrt.LoadError, match="could not be reached.*hf download other/model"):
        resolve_model("other/model")


def test_a_real_connection_failure_is_quick_and_clear(tmp_path):
    """No mocks: the Hub endpoint is a closed local port, as when a machine has no network."""
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path)}
    for name in ("HF_HUB_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(lfmrt.__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    code = ("import lfmrt\n"
            "try:\n    lfmrt.Model.load('LiquidAI/LFM2.5-350M')\n"
            "except lfmrt.LoadError as error:\n    print(error)\n")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert time.monotonic() - start < 30
    assert result.returncode == 0, result.stderr
    assert "not in the Hugging Face cache" in result.stdout and "could not be reached" in result.stdout


def test_hub_answers_are_reported(hub_cache, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")

    class RepositoryNotFoundError(Exception):
        pass

    def not_found(*args, **kwargs):
        raise RepositoryNotFoundError("404: repository not found")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", not_found)
    with pytest.raises(lfmrt.LoadError, match="nobody/nothing: RepositoryNotFoundError: 404"):
        resolve_model("nobody/nothing")


def test_download_fetches_only_what_the_model_needs(hub_cache, monkeypatch):
    """The online path asks for the repo's file list (with a timeout), then downloads the
    checkpoint files or the one chosen GGUF file."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    asked = {}

    class Sibling:
        def __init__(self, name):
            self.rfilename = name

    class Info:
        siblings = [Sibling(n) for n in ["config.json", "model.safetensors", "tokenizer.json",
                                         "chat_template.jinja", "README.md", "onnx/model.onnx",
                                         "model-Q8_0.gguf"]]

    def model_info(self, repo_id, revision=None, timeout=None):
        asked["timeout"] = timeout
        return Info()

    def hf_hub_download(repo_id, filename, revision=None, cache_dir=None, etag_timeout=None):
        asked.setdefault("files", []).append(filename)
        return os.path.join(cache_dir, "snap", filename)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    assert resolve_model("some/model") == os.path.join(str(hub_cache), "snap")
    assert asked["timeout"] is not None and asked["timeout"] <= 30
    assert sorted(asked["files"]) == ["chat_template.jinja", "config.json", "model.safetensors", "tokenizer.json"]
    asked.clear()
    assert resolve_model("some/model:Q8_0") == os.path.join(str(hub_cache), "snap", "model-Q8_0.gguf")
    assert asked["files"] == ["model-Q8_0.gguf"]


def test_missing_huggingface_hub_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(lfmrt.LoadError, match=r'pip install "lfmrt\[hub\]"'):
        resolve_model("LiquidAI/LFM2.5-350M")
