"""Sessions driven from several C++ threads on one model: builds and runs the C++ test binary.

The binary (cpp/tests/test_session_threads.cpp, CMake target lfmrt_session_thread_test) runs
forks, rewinds, snapshots, batched appends and one shared session from several std::threads and
compares every result with the same work done on one thread. `.ci/run` also runs it under
ThreadSanitizer (-DLFMRT_SANITIZE=thread).
"""

import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def session_thread_test_binary(cpp_test_build) -> Path:
    return cpp_test_build("lfmrt_session_thread_test")


def test_sessions_from_cpp_threads_equal_their_runs_alone(session_thread_test_binary):
    result = subprocess.run([str(session_thread_test_binary)], capture_output=True, text=True, timeout=600)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert summary.endswith("0 failed"), summary
    assert int(summary.split()[0]) > 0, summary
