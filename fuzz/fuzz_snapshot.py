#!/usr/bin/env python3
"""Fuzzes session snapshots: ``Model.load_session`` on arbitrary bytes, then the restored session.

The first input byte is a mode (harness.FIX_SNAPSHOT_HEADER: rewrite the header's payload length
and checksum to fit the payload, so mutations get past the checksum to the fields behind it); the
rest is the snapshot. A snapshot that restores must behave as a session: saved again it restores
to the same tokens; it can rewind to any point and append. After every input a fresh session's
logits must still be the model's own (a failed restore must not have touched the model).

Contract: ``lfmrt.LoadError`` only; no crash, no hang.
Seeds: fuzz/corpus/snapshot (the micro model's sessions after appends, decodes, rewinds, forks).
"""
import struct

import atheris
import numpy as np

import harness

with atheris.instrument_imports(include=["lfmrt"]):
    import lfmrt

MODEL = lfmrt.Model.load(harness.MICRO_MODEL, n_threads=1)
PROBE = [1, 2, 3]
PROBE_LOGITS = MODEL.logits(PROBE)

# The header (cpp/src/state/snapshot.cpp): magic, version, model fingerprint, payload length,
# FNV-1a hash of the payload; then the payload.
HEADER = struct.Struct("<8sIQQQ")


def fnv1a(data: bytes) -> int:
    value = 1469598103934665603
    for byte in data:
        value = ((value ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return value


def with_fitted_header(snapshot: bytes) -> bytes:
    if len(snapshot) < HEADER.size:
        return snapshot
    magic, version, fingerprint, _, _ = HEADER.unpack_from(snapshot)
    payload = snapshot[HEADER.size :]
    return HEADER.pack(magic, version, fingerprint, len(payload), fnv1a(payload)) + payload


def exercise(session: lfmrt.Session) -> None:
    tokens = session.tokens
    again = MODEL.load_session(session.save())
    if again.tokens != tokens:
        raise AssertionError(f"a restored snapshot saves as another: {tokens} -> {again.tokens}")
    if tokens:
        session.rewind(len(tokens) // 2)
    if session.n_tokens < MODEL.max_context:
        session.append([4])
    session.rewind(0)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    snapshot = with_fitted_header(data[1:]) if data[0] & harness.FIX_SNAPSHOT_HEADER else data[1:]
    try:
        exercise(MODEL.load_session(snapshot))
    finally:
        logits = MODEL.logits(PROBE)
        if not np.array_equal(logits, PROBE_LOGITS):
            raise AssertionError("the model's logits changed after restoring a snapshot")


if __name__ == "__main__":
    harness.fuzz(test_one_input, (lfmrt.LoadError,))
