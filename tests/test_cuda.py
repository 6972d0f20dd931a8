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
import threading
from pathlib import Path

import numpy as np
import pytest

import lfmrt
from lfmrt.loaders import load_checkpoint
from lfmrt.quantization.gguf_writer import write_gguf

from conftest import MODELS_DIR, golden_model_names, load_golden

CUDA = [d for d in lfmrt.devices() if d["kind"] == "cuda"]
REQUIRED = os.environ.get("LFMRT_REQUIRE_CUDA", "0") not in ("", "0")
DEMO = Path(lfmrt.demo_model_path())
BF16_MODEL = MODELS_DIR / "lfm2_350m_pattern_bf16"  # 6 conv + 2 attention layers, GQA 2
GREEDY_TOKENS = 40
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
    """load(path, device, **options) -> Model, cached for the module."""
    cache: dict = {}

    def load(path, device: str, **options) -> lfmrt.Model:
        key = (str(path), device, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = lfmrt.Model.load(str(path), device=device, n_threads=2, **options)
        return cache[key]

    return load


def tokens_of(n: int, seed: int = 0, vocab: int = 700) -> list:
    return np.random.default_rng(seed).integers(14, vocab, n).tolist()


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


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
    golden = load_golden(name)
    model = models(golden.path, device, kv_cache="f32")
    cpu = models(golden.path, "cpu", kv_cache="f32")
    for i, (prompt, reference) in enumerate(zip(golden.prompts, golden.logits)):
        check_logits(model.logits(prompt), reference, golden.atol, f"{name} prompt {i} on {device}")
        got = model.generate(list(prompt), max_tokens=GREEDY_TOKENS, temperature=0.0, ignore_eos=True).tokens
        want = cpu.generate(list(prompt), max_tokens=GREEDY_TOKENS, temperature=0.0, ignore_eos=True).tokens
        assert list(got) == list(want), f"{name} prompt {i}: greedy differs from the CPU's on {device}"


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


TOLERANCE = 2e-4  # between runs on one device (test_sessions.py's)
CPU_TOLERANCE = 1e-3  # between the CPU and CUDA on bf16 weights (the golden tolerance)


@pytest.mark.cuda
def test_rewind_and_fork_equal_fresh_sessions(device, models):
    model, cpu = models(BF16_MODEL, device, kv_cache="f32"), models(BF16_MODEL, "cpu", kv_cache="f32")
    tokens = tokens_of(100)
    session = model.session(checkpoint_interval=16, chunk_size=16)
    session.append(tokens)
    session.rewind(37)
    continued = session.append(tokens_of(5, seed=1))
    expected = tokens[:37] + tokens_of(5, seed=1)
    assert max_diff(continued, model.session().append(expected)) < TOLERANCE
    assert max_diff(continued, cpu.session().append(expected)) < CPU_TOLERANCE

    prompt = tokens_of(300, seed=2)  # two KV pages
    session = model.session()
    session.append(prompt)
    fork = session.fork()
    a, b = session.append([10, 11]), fork.append([12])
    assert max_diff(a, model.session().append(prompt + [10, 11])) < TOLERANCE
    assert max_diff(b, model.session().append(prompt + [12])) < TOLERANCE


@pytest.mark.cuda
def test_snapshots_move_between_the_cpu_and_cuda(device, models):
    tokens = tokens_of(80, seed=3)
    for kv in ("f32", "f16", "q8_0"):
        model, cpu = models(BF16_MODEL, device, kv_cache=kv), models(BF16_MODEL, "cpu", kv_cache=kv)
        on_cpu = cpu.session(checkpoint_interval=16)
        on_cpu.append(tokens)
        snapshot = on_cpu.save()
        restored = model.load_session(snapshot)
        assert restored.tokens == tokens
        assert restored.save() == snapshot, kv
        back = cpu.load_session(restored.save())
        on_cpu_next = on_cpu.append([5])
        assert max_diff(back.append([5]), on_cpu_next) == 0.0
        assert max_diff(restored.append([5]), on_cpu_next) < CPU_TOLERANCE
        restored.rewind(20)  # through the restored conv checkpoints
        assert max_diff(restored.append([7]), cpu.session().append(tokens[:20] + [7])) < CPU_TOLERANCE


@pytest.mark.cuda
def test_generate_batch_and_scheduler_equal_the_cpu(device, models):
    model, cpu = models(BF16_MODEL, device, kv_cache="f32"), models(BF16_MODEL, "cpu", kv_cache="f32")
    prompts = [tokens_of(n, seed=n) for n in (5, 40, 17, 90)]
    options = dict(max_tokens=20, temperature=0.0, ignore_eos=True)
    got = [list(c.tokens) for c in model.generate_batch(prompts, **options)]
    want = [list(c.tokens) for c in cpu.generate_batch(prompts, **options)]
    assert got == want
    scheduler = lfmrt.Scheduler(model, max_batch=3, prefill_chunk=24)
    requests = [scheduler.submit(p, **options) for p in prompts]
    scheduler.run()
    assert [list(r.completion.tokens) for r in requests] == want


@pytest.mark.cuda
def test_sessions_from_several_threads_equal_their_runs_alone(device, models):
    """Forks, rewinds and saves from other threads while forwards run: the pools hold their
    memory while they queue work on it (and it may be replaced as they grow)."""
    model = models(BF16_MODEL, device, kv_cache="f16")
    prompts = [tokens_of(120 + 40 * i, seed=10 + i) for i in range(4)]
    expected = [model.session().append(p + [3, 4]) for p in prompts]
    results: list = [None] * len(prompts)
    errors: list = []

    def work(i: int) -> None:
        try:
            session = model.session(checkpoint_interval=32)
            session.append(prompts[i])
            fork = session.fork()
            snapshot = fork.save()
            fork.rewind(len(prompts[i]) // 2)
            restored = model.load_session(snapshot)
            results[i] = restored.append([3, 4])
        except Exception as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for got, want in zip(results, expected):
        assert max_diff(got, want) < TOLERANCE


@pytest.mark.cuda
def test_the_cli_runs_on_cuda(device, capsys):
    import json

    from lfmrt.cli.main import main as cli_main

    assert cli_main(["bench", "demo", "-p", "16", "-n", "4", "-r", "1", "--device", device, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["device"] == device and "dp4a" in results["kernels"]
    assert results["decode_tokens_per_s"] > 0
