"""What the fuzz harnesses share: the contract they check, scratch files, the micro model.

The contract: whatever the input, the API under test returns, or raises one of the exceptions
its docstring documents. Anything else escaping it (an IndexError, a UnicodeDecodeError, a
pybind11 cast error, a RecursionError, ...) is a finding, and so are a crash (a signal, or an
ASan / UBSan report from the instrumented build fuzz/run.sh makes) and a hang (libFuzzer's
-timeout). A finding stops the run and leaves the input in the artifact folder; it becomes a
regression test under tests/ with its fix.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Tuple, Type

FUZZ_DIR = Path(__file__).resolve().parent
REPO = FUZZ_DIR.parent
# A two-block model of width 8 (config.json, model.safetensors), written by make_corpus.py.
MICRO_MODEL = FUZZ_DIR / "micro"
# fuzz_snapshot.py's first input byte: this bit set makes the harness rewrite the snapshot's
# payload length and checksum to match the (mutated) payload, so mutations reach the fields
# behind the checksum instead of all failing it.
FIX_SNAPSHOT_HEADER = 0x01


def scratch_dir() -> Path:
    """A private folder for the files a harness writes, in memory where /dev/shm exists."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return Path(tempfile.mkdtemp(prefix="lfmrt-fuzz-", dir=base))


def write_fresh(path: Path, data: bytes) -> None:
    """Writes ``data`` as a new file at ``path``. The old file is unlinked, not rewritten, so a
    memory map still open on it keeps its pages (truncating a mapped file would fault readers)."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    path.write_bytes(data)


def require_named(error: BaseException, path: Path) -> None:
    """A loader's error must name the file it is about."""
    if str(path) not in str(error):
        raise AssertionError(f"the error does not name {path}: {error}")


def fuzz(test_one_input: Callable[[bytes], None], documented: Tuple[Type[BaseException], ...]) -> None:
    """Runs libFuzzer over ``test_one_input`` (``sys.argv``: libFuzzer's flags and corpus
    folders). The exceptions in ``documented`` are the API's answer to bad input: they end an
    input quietly; any other escapes and is reported."""
    import atheris

    def checked(data: bytes) -> None:
        try:
            test_one_input(data)
        except documented:
            pass

    atheris.Setup(sys.argv, checked)
    atheris.Fuzz()
