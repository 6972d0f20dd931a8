"""The CUDA backend (cpp/src/backends/cuda/; builds with ``CMAKE_ARGS="-DLFMRT_CUDA=ON"``).

Everywhere: without a CUDA device (no driver, no GPU, or a build without the backend) lfmrt
imports, ``lfmrt.devices()`` lists no CUDA device, ``device="cuda"`` is a ValueError that says why,
and the CPU still runs; the extension module never needs libcuda or libcudart to load.

With a CUDA device (``pytest -m cuda``; ``tools/gpu_check_cuda.sh`` sets ``LFMRT_REQUIRE_CUDA=1``
so that a missing one fails instead of skipping), per device:

- every golden model: logits within the CPU's tolerances against transformers (1e-4 f32,
  1e-3 bf16 / f16) and 40 greedy tokens per prompt identical to the CPU's;
- the demo model's quantized GGUF files: top-1 agreement with the CPU backend on the same file
  >= 99% (CUDA quantizes activations bit for bit as the CPU does, so only summation order differs);
- sessions: rewind, fork, snapshots saved on the CPU restored on CUDA and back; generate_batch
  and the Scheduler equal to the CPU's; sessions used from several threads.

The kernels themselves are checked op by op against cpu:scalar by the C++ harness
(``lfmrt_backend_ops_test cuda:0``), which .ci/run also runs on the CPU emulator.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import lfmrt
from lfmrt.loaders import load_checkpoint
from lfmrt.quantization.gguf_writer import write_gguf

from conftest import golden_model_names
from device_checks import (
    check_generate_batch_and_scheduler,
    check_golden_model,
    check_rewind_and_fork,
    check_sessions_from_several_threads,
    check_snapshots_move_to_and_from_the_cpu,
    check_the_cli_runs,
    model_cache,
)

CUDA = [d for d in lfmrt.devices() if d["kind"] == "cuda"]
REQUIRED = os.environ.get("LFMRT_REQUIRE_CUDA", "0") not in ("", "0")
DEMO = Path(lfmrt.demo_model_path())
NO_CUDA = "no CUDA device (needs an NVIDIA GPU, its driver, and lfmrt built with -DLFMRT_CUDA=ON)"


# --- without a device (every machine) ----------------------------------------------------------


def test_without_a_cuda_device_the_error_is_clear_and_the_cpu_runs():
    if CUDA:
        pytest.skip("a CUDA device is present")
    for device in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(ValueError, match=f"device '{device}': ") as error:
            lfmrt.Model.load(DEMO, device=device)
        message = str(error.value)
        # A build without the backend says how to get one; a build with it says what the CUDA
        # runtime found (no driver, no device) and what the backend needs.
        assert ("no CUDA backend" in message and "-DLFMRT_CUDA=ON" in message) or (
            "no CUDA device is usable" in message and "libcuda.so.1" in message), message
    assert len(lfmrt.Model.load(DEMO).generate([1, 2], max_tokens=3).tokens) == 3


def test_the_module_loads_without_the_cuda_libraries():
    """cudart is linked statically and opens the driver at run time: the module's ELF needs
    neither libcuda nor libcudart, so it imports on machines without them."""
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf is not installed")
    dynamic = subprocess.run([readelf, "-d", lfmrt._core.__file__], capture_output=True, text=True, check=True).stdout
    needed = [line for line in dynamic.splitlines() if "(NEEDED)" in line]
    assert needed and not any("libcuda" in line for line in needed), needed


def test_lfmrt_info_lists_every_device_but_the_cpu(capsys):
    import json

    from lfmrt.cli.main import main as cli_main

    assert cli_main(["info", "demo", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["devices"]
    assert listed == [d for d in lfmrt.devices() if d["kind"] != "cpu"]
    assert [d["id"] for d in listed if d["kind"] == "cuda"] == [d["id"] for d in CUDA]
    assert cli_main(["info", "demo"]) == 0
    text = capsys.readouterr().out
    assert all(f"{d['id']:<11} {d['name']}" in text for d in listed), text


# --- on a device (pytest -m cuda) --------------------------------------------------------------

if CUDA:
    @pytest.fixture(scope="module", params=[d["id"] for d in CUDA])
    def device(request) -> str:
        return request.param
else:
    @pytest.fixture(scope="module")
    def device() -> str:
        if REQUIRED:
            pytest.fail(f"LFMRT_REQUIRE_CUDA is set: {NO_CUDA}")
        pytest.skip(NO_CUDA)


@pytest.fixture(scope="module")
def models():
    return model_cache()


@pytest.mark.cuda
def test_devices_describe_each_cuda_device(device):
    info = next(d for d in lfmrt.devices() if d["id"] == device)
    assert info["name"] and info["memory_bytes"] > 0 and "compute capability " in info["details"]
    ids = [d["id"] for d in CUDA]
    assert ids == [f"cuda:{i}" for i in range(len(ids))]
    assert lfmrt.Model.load(DEMO, device="cuda").device == "cuda:0"


@pytest.mark.cuda
def test_an_absent_device_index_is_a_value_error(device):
    for bad in (f"cuda:{len(CUDA)}", "cuda:-1", "cuda:x"):
        with pytest.raises(ValueError, match=f"device '{bad}'"):
            lfmrt.Model.load(DEMO, device=bad)
    assert lfmrt.Model.load(DEMO).generate([1, 2], max_tokens=2)  # the CPU is fine


@pytest.mark.cuda
@pytest.mark.parametrize("name", golden_model_names())
def test_golden_logits_and_greedy_match_the_cpu(name, device, models, check_logits):
    check_golden_model(name, device, models, check_logits)


@pytest.fixture(scope="module")
def demo_ggufs(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("demo-gguf")
    checkpoint = load_checkpoint(str(DEMO))
    files = {}
    for scheme in ("q8_0", "q4_0", "q4_k_m", "q6_k"):
        files[scheme] = out / f"demo-{scheme}.gguf"
        write_gguf(checkpoint, files[scheme], scheme)
    return files


@pytest.mark.cuda
@pytest.mark.parametrize("scheme", ["q8_0", "q4_0", "q4_k_m", "q6_k"])
def test_quantized_demo_agrees_with_the_cpu(scheme, device, demo_ggufs, models):
    path = demo_ggufs[scheme]
    model, cpu = models(path, device), models(path, "cpu")
    text = (DEMO / "heldout.txt").read_text(encoding="utf-8")
    tokens = cpu.tokenize(text)[:400]
    got, want = model.logits(tokens), cpu.logits(tokens)
    agreement = float((got.argmax(-1) == want.argmax(-1)).mean())
    assert agreement >= 0.99, f"{scheme} on {device}: top-1 agreement with the CPU {agreement:.4f}"


@pytest.mark.cuda
def test_rewind_and_fork_equal_fresh_sessions(device, models):
    check_rewind_and_fork(device, models)


@pytest.mark.cuda
def test_snapshots_move_between_the_cpu_and_cuda(device, models):
    check_snapshots_move_to_and_from_the_cpu(device, models)


@pytest.mark.cuda
def test_generate_batch_and_scheduler_equal_the_cpu(device, models):
    check_generate_batch_and_scheduler(device, models)


@pytest.mark.cuda
def test_sessions_from_several_threads_equal_their_runs_alone(device, models):
    check_sessions_from_several_threads(device, models)


@pytest.mark.cuda
def test_the_cli_runs_on_cuda(device, capsys):
    check_the_cli_runs(device, capsys, "dp4a")
