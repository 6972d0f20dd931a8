"""Shared pytest fixtures: the committed golden models under tests/fixtures/.

`tests/fixtures/models/MANIFEST.json` lists the tiny random-weight LFM2 models (written by
`tests/fixtures/make_golden.py`) and what each one covers. A test that takes a `golden_name`
argument runs once per model, with the model's name as its test id:

    def test_something(golden):          # golden: GoldenCase for the current model
        ...
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
MODELS_DIR = FIXTURES_DIR / "models"
TOKENIZER_DIR = FIXTURES_DIR / "tokenizer"


@functools.lru_cache(maxsize=None)
def load_manifest() -> dict:
    with open(MODELS_DIR / "MANIFEST.json", encoding="utf-8") as f:
        return json.load(f)


def golden_model_names() -> list[str]:
    return [m["name"] for m in load_manifest()["models"]]


@dataclasses.dataclass(frozen=True)
class GoldenCase:
    """One fixture model and transformers' float32 reference outputs on it."""

    name: str
    path: Path                   # the HF model directory
    entry: dict                  # its MANIFEST.json entry (dtype, dialect, covers, ...)
    prompts: list[list[int]]     # token ids; prompts[1] starts with bos
    logits: list[np.ndarray]     # float32 (len(prompt), vocab) per prompt
    greedy: list[list[int]]      # 40-token greedy continuation per prompt (no eos inside)
    margins: list[np.ndarray]    # top-1 minus top-2 reference logit at each greedy step

    @property
    def atol(self) -> float:
        """Max-abs logit tolerance: 1e-4 for float32 weights, 1e-3 for bf16 / f16 weights."""
        return float(self.entry["logits_atol"])

    @property
    def dtype(self) -> str:
        return self.entry["dtype"]

    @property
    def vocab_size(self) -> int:
        return int(self.entry["vocab_size"])


@functools.lru_cache(maxsize=None)
def load_golden(name: str) -> GoldenCase:
    entry = next(m for m in load_manifest()["models"] if m["name"] == name)
    path = MODELS_DIR / entry["path"]
    with np.load(path / "golden.npz", allow_pickle=False) as z:
        n = sum(1 for k in z.files if k.startswith("prompt_"))
        return GoldenCase(
            name=name,
            path=path,
            entry=entry,
            prompts=[[int(t) for t in z[f"prompt_{i}"]] for i in range(n)],
            logits=[z[f"logits_{i}"].astype(np.float32) for i in range(n)],
            greedy=[[int(t) for t in z[f"greedy_{i}"]] for i in range(n)],
            margins=[z[f"greedy_margin_{i}"] for i in range(n)],
        )


def pytest_generate_tests(metafunc):
    if "golden_name" in metafunc.fixturenames:
        names = golden_model_names()
        metafunc.parametrize("golden_name", names, ids=names)


def run_in_threads(work: Callable[[int], None], count: int) -> None:
    """Runs ``work(0)``, ..., ``work(count - 1)`` each on a thread of its own, all at once, and
    waits for them all."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def kl_divergence(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean over positions of KL(softmax(reference) || softmax(other))."""
    def log_softmax(x):
        x = x.astype(np.float64) - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    lp, lq = log_softmax(reference), log_softmax(other)
    return float((np.exp(lp) * (lp - lq)).sum(-1).mean())


def assert_logits_close(actual, expected, atol: float, what: str) -> None:
    """Fail with a readable message unless `actual` is float32, has `expected`'s shape and
    is within `atol` (max-abs) of it."""
    __tracebackhide__ = True
    actual = np.asarray(actual)
    assert actual.dtype == np.float32, f"{what}: dtype {actual.dtype}, expected float32"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    assert np.isfinite(actual).all(), f"{what}: non-finite logits"
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    worst = float(diff.max()) if diff.size else 0.0
    if worst > atol:
        idx = np.unravel_index(int(diff.argmax()), diff.shape)
        where = f"position {idx[0]}, token {idx[1]}" if diff.ndim == 2 else f"token {idx[0]}"
        rows_bad = int((diff.reshape(-1, diff.shape[-1]).max(axis=1) > atol).sum())
        pytest.fail(
            f"{what}: max |diff| {worst:.3g} > atol {atol:g} at {where} "
            f"(got {float(actual[idx]):.6f}, expected {float(expected[idx]):.6f}; "
            f"{rows_bad} of {diff.reshape(-1, diff.shape[-1]).shape[0]} rows over tolerance)"
        )


@pytest.fixture(scope="session")
def check_logits():
    """assert_logits_close(actual, expected, atol, what) as a fixture."""
    return assert_logits_close


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def manifest() -> dict:
    return load_manifest()


@pytest.fixture(scope="session")
def golden_models() -> list[Path]:
    """Every fixture model directory, in MANIFEST order."""
    return [MODELS_DIR / m["path"] for m in load_manifest()["models"]]


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """The fixtures' tokenizer alone (tokenizer.json, tokenizer_config.json with the chat
    template, generation_config.json) plus golden_encodings.json."""
    return TOKENIZER_DIR


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """One small hybrid model in the released LFM2-350M layout and config spelling (bf16)."""
    return MODELS_DIR / "lfm2_350m_pattern_bf16"


@pytest.fixture
def golden(golden_name: str) -> GoldenCase:
    return load_golden(golden_name)


@pytest.fixture(scope="session")
def cpp_test_build(tmp_path_factory):
    """build(target) -> path of a C++ test program (CMake target of cpp/tests/) built natively.

    One CMake build folder serves every test that asks, so the runtime compiles once per session.
    """
    if shutil.which("cmake") is None:
        pytest.fail("cmake is needed to build the C++ tests (pip install cmake)")
    build_dir = tmp_path_factory.mktemp("cpp-tests")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build_dir), *generator, "-DCMAKE_BUILD_TYPE=Release",
         "-DLFMRT_BUILD_PYTHON=OFF", "-DLFMRT_BUILD_TESTS=ON"],
        check=True, capture_output=True,
    )

    def build(target: str) -> Path:
        subprocess.run(["cmake", "--build", str(build_dir), "--target", target, "-j", str(os.cpu_count() or 2)],
                       check=True, capture_output=True)
        return build_dir / target

    return build
