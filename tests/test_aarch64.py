"""The aarch64 build, tested on this machine: cross-compiled with Debian's aarch64 toolchain and
run under user-mode QEMU; plus the same C++ forward test natively.

- The kernel tests (cpp/tests/test_kernels.cpp) run through CTest, which prefixes them with
  the toolchain file's emulator (``qemu-aarch64 -cpu max``, a CPU with the dot-product and int8
  matrix-multiply instructions): every NEON kernel of the three tables (``neon``,
  ``neon_dotprod``, ``neon_i8mm``) against its scalar twin.
- A golden model's forward pass (cpp/tests/test_forward.cpp, the C++ Model/Session API alone)
  must match transformers' logits: under ``-cpu max`` with each aarch64 kernel set, under
  ``-cpu cortex-a76`` (dot product, no i8mm: dispatch must pick ``neon_dotprod``) and
  ``-cpu cortex-a53`` (neither: ``neon``), and natively
  with each x86 kernel set this CPU runs.

Nothing is installed here: without ``aarch64-linux-gnu-g++`` or ``qemu-aarch64`` the aarch64
tests skip, saying what to install (``.ci/run`` installs both).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import lfmrt
from lfmrt.loaders import load_hf_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "tests" / "fixtures" / "models"
TOOLCHAIN = ROOT / "cmake" / "aarch64-linux-gnu.cmake"
SYSROOT = "/usr/aarch64-linux-gnu"

# One fp32 model (atol 1e-4) and one bf16 model in the released 350M's layer pattern (1e-3).
FORWARD_MODELS = ["mixed_mha_hd64_f32_dialectA", "lfm2_350m_pattern_bf16"]

BUILD_TIMEOUT_S = 1200  # the cross build of the runtime takes a few minutes on 2 cores
RUN_TIMEOUT_S = 600


def _missing_cross_tools() -> list[str]:
    tools = {"aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu", "qemu-aarch64": "qemu-user", "cmake": "cmake"}
    return [f"{tool} (Debian package {package})" for tool, package in tools.items() if shutil.which(tool) is None]


def write_forward_case(model_name: str, out_dir: Path) -> Path:
    """Writes what lfmrt_forward_test reads (see cpp/tests/test_forward.cpp) for one fixture
    model: its config and tensors as the Python loader gives them to the runtime, its golden
    prompts and logits, and its tolerance."""
    model_dir = MODELS_DIR / model_name
    checkpoint = load_hf_checkpoint(model_dir)
    config = checkpoint.config
    kinds = {"conv": "conv", "full_attention": "attention"}
    lines = [
        f"config vocab_size {config.vocab_size}",
        f"config hidden_size {config.hidden_size}",
        f"config ff_dim {config.ff_dim}",
        "config layers " + " ".join(kinds[kind] for kind in config.layer_types),
        f"config n_heads {config.n_heads}",
        f"config n_kv_heads {config.n_kv_heads}",
        f"config head_dim {config.head_dim}",
        f"config conv_kernel {config.conv_kernel}",
        f"config conv_bias {int(config.conv_bias)}",
        f"config norm_eps {config.norm_eps!r}",
        f"config rope_theta {config.rope_theta!r}",
        f"config max_context {config.max_context}",
        f"config tie_embeddings {int(config.tie_embeddings)}",
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "weights.bin", "wb") as weights:
        for name, ref in sorted(checkpoint.tensors.items()):
            weights.write(b"\0" * (-weights.tell() % 64))  # every tensor aligned for any element type
            offset = weights.tell()
            weights.write(ref.data.tobytes())
            lines.append(f"tensor {name} {ref.dtype} {offset} {ref.data.nbytes} {' '.join(map(str, ref.shape))}")
    with np.load(model_dir / "golden.npz") as golden, open(out_dir / "golden.bin", "wb") as logits_file:
        n_prompts = sum(1 for key in golden.files if key.startswith("prompt_"))
        for i in range(n_prompts):
            offset = logits_file.tell() // 4
            logits_file.write(np.ascontiguousarray(golden[f"logits_{i}"], dtype="<f4").tobytes())
            tokens = [int(t) for t in golden[f"prompt_{i}"]]
            lines.append(f"prompt {offset} {len(tokens)} {' '.join(map(str, tokens))}")
    manifest = json.loads((MODELS_DIR / "MANIFEST.json").read_text(encoding="utf-8"))
    entry = next(m for m in manifest["models"] if m["name"] == model_name)
    lines.append(f"atol {float(entry['logits_atol'])!r}")
    (out_dir / "case.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_dir


@pytest.fixture(scope="module")
def forward_cases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("forward-cases")
    return {name: write_forward_case(name, root / name) for name in FORWARD_MODELS}


def run_forward(command: list[str], case: Path, isa: str) -> str:
    """Runs lfmrt_forward_test on one case with one kernel set; returns its output, failing the
    test unless every check passed with that kernel set."""
    result = subprocess.run([*command, str(case), isa], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{case.name} with kernels {isa or '(best)'}:\n{output[-4000:]}"
    assert output.rstrip().endswith("0 failed"), output[-4000:]
    return output


def kernels_used(output: str) -> str:
    return next(line.split()[1] for line in output.splitlines() if line.startswith("kernels "))


# --------------------------------------------------------------------------------------------
# Natively (x86-64 here): every kernel set this CPU runs.


@pytest.mark.parametrize("model_name", FORWARD_MODELS)
def test_native_forward_matches_golden(cpp_test_build, forward_cases, model_name):
    binary = cpp_test_build("lfmrt_forward_test")
    for isa in lfmrt.cpu_info()["kernel_sets"]:
        assert kernels_used(run_forward([str(binary)], forward_cases[model_name], isa)) == isa


# --------------------------------------------------------------------------------------------
# aarch64 under QEMU.


@pytest.fixture(scope="module")
def aarch64_build() -> Path:
    missing = _missing_cross_tools()
    if missing:
        pytest.skip("cross-testing aarch64 needs " + ", ".join(missing))
    # A fixed folder under build/ (ignored by git), so that reruns rebuild only what changed.
    build_dir = ROOT / "build" / "tests-aarch64"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build_dir), *generator, "-DCMAKE_BUILD_TYPE=Release",
         f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}", "-DLFMRT_BUILD_PYTHON=OFF", "-DLFMRT_BUILD_TESTS=ON"],
        check=True, capture_output=True, timeout=BUILD_TIMEOUT_S,
    )
    result = subprocess.run(
        ["cmake", "--build", str(build_dir), "--target", "lfmrt_kernel_tests", "lfmrt_forward_test",
         "-j", str(os.cpu_count() or 2)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return build_dir


def qemu(cpu: str, build_dir: Path) -> list[str]:
    return ["qemu-aarch64", "-cpu", cpu, "-L", SYSROOT, str(build_dir / "lfmrt_forward_test")]


def test_aarch64_neon_kernels_match_scalar_twins(aarch64_build):
    result = subprocess.run(["ctest", "--test-dir", str(aarch64_build), "-R", "^kernels$", "--output-on-failure"],
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # CTest shows the binary's output only on failure: check that both tables ran.
    log = (aarch64_build / "Testing" / "Temporary" / "LastTest.log").read_text(errors="replace")
    assert "SKIP" not in log, "qemu -cpu max should offer the dot-product instructions:\n" + log[-3000:]
    for check in ("neon gemm Q4_K", "neon_dotprod gemm Q4_K", "neon_dotprod gemv Q6_K", "neon kv scores Q8_0",
                  "neon panel gemv/gemm Q4_0 vs scalar row kernels",
                  "neon_dotprod panel gemv/gemm Q4_K vs scalar row kernels",
                  "neon_i8mm panel gemv/gemm Q8_0 vs scalar row kernels",
                  "neon_i8mm panel gemv/gemm Q6_K gemm bit-identical to gemv per token"):
        assert f"PASS {check}:" in log, log[-3000:]


@pytest.mark.parametrize("model_name", FORWARD_MODELS)
def test_aarch64_forward_matches_golden(aarch64_build, forward_cases, model_name):
    case = forward_cases[model_name]
    # A CPU with the dot-product and i8mm instructions: the best set is neon_i8mm; each lower one
    # is forced.
    assert kernels_used(run_forward(qemu("max", aarch64_build), case, "")) == "neon_i8mm"
    for isa in ("neon_dotprod", "neon", "scalar"):
        assert kernels_used(run_forward(qemu("max", aarch64_build), case, isa)) == isa
    # Cortex-A76 (ARMv8.2) has the dot product but not i8mm; an ARMv8.0 core (Cortex-A53) neither:
    # dispatch falls back to the best table each runs.
    assert kernels_used(run_forward(qemu("cortex-a76", aarch64_build), case, "")) == "neon_dotprod"
    assert kernels_used(run_forward(qemu("cortex-a53", aarch64_build), case, "")) == "neon"


def test_aarch64_dispatch_refuses_what_the_cpu_lacks(aarch64_build, forward_cases):
    case = forward_cases[FORWARD_MODELS[0]]
    for isa, message in [("neon_dotprod", "needs the dot-product instructions, which this CPU lacks"),
                         ("neon_i8mm", "needs the int8 matrix-multiply and dot-product instructions, which this CPU lacks"),
                         ("avx2", "unknown CPU kernel set 'avx2' (device cpu:avx2 or LFMRT_ISA): this build has "
                                  "'scalar', 'neon', 'neon_dotprod' or 'neon_i8mm'")]:
        result = subprocess.run([*qemu("cortex-a53", aarch64_build), str(case), isa],
                                capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        assert result.returncode == 1 and message in result.stderr, result.stdout + result.stderr
