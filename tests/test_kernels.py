"""Every SIMD kernel against its scalar twin: builds and runs the C++ kernel test binary.

The binary (cpp/tests/test_kernels.cpp, CMake target lfmrt_kernel_tests) compares each kernel
of every kernel set this CPU runs with the scalar specification on odd sizes and tails.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kernel_test_binary(tmp_path_factory) -> Path:
    if shutil.which("cmake") is None:
        pytest.fail("cmake is needed to build the C++ kernel tests (pip install cmake)")
    build = tmp_path_factory.mktemp("kernel-tests")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), *generator, "-DCMAKE_BUILD_TYPE=Release",
         "-DLFMRT_BUILD_PYTHON=OFF", "-DLFMRT_BUILD_TESTS=ON"],
        check=True, capture_output=True,
    )
    jobs = str(os.cpu_count() or 2)
    subprocess.run(["cmake", "--build", str(build), "--target", "lfmrt_kernel_tests", "-j", jobs],
                   check=True, capture_output=True)
    return build / "lfmrt_kernel_tests"


def test_simd_kernels_match_scalar_twins(kernel_test_binary):
    result = subprocess.run([str(kernel_test_binary)], capture_output=True, text=True)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert summary.endswith("0 failed"), summary
    passed = int(summary.split()[0])
    assert passed > 0, summary
