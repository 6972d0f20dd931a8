"""Every SIMD kernel against its scalar twin: builds and runs the C++ kernel test binary.

The binary (cpp/tests/test_kernels.cpp, CMake target lfmrt_kernel_tests) compares each kernel
of every kernel set this CPU runs with the scalar specification on odd sizes and tails.
"""

import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def kernel_test_binary(cpp_test_build) -> Path:
    return cpp_test_build("lfmrt_kernel_tests")


def test_simd_kernels_match_scalar_twins(kernel_test_binary):
    result = subprocess.run([str(kernel_test_binary)], capture_output=True, text=True)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert summary.endswith("0 failed"), summary
    passed = int(summary.split()[0])
    assert passed > 0, summary
