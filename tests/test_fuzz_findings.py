"""Inputs the fuzzers (fuzz/, fuzz/run.sh) found breaking a contract, kept as regression tests.

Some of them broke only a rule of C++ that an ordinary build survives silently (undefined
behaviour that UBSan reports); those fail before their fix only under tools/sanitize.sh, which
runs this file, and each says so.
"""
import lfmrt


def test_empty_session_snapshot_round_trips(tiny_model_dir):
    # fuzz_snapshot.py, seed "empty": restoring a snapshot with no tokens called memcpy with the
    # null data() of an empty vector (UBSan: "null pointer passed as argument 1"). Fails before
    # the fix under tools/sanitize.sh only.
    model = lfmrt.Model.load(tiny_model_dir, n_threads=1)
    restored = model.load_session(model.session().save())
    assert restored.tokens == []
    assert restored.append([1, 2]).shape == (model.config.vocab_size,)


def test_snapshot_of_another_model_with_undecodable_summary_is_a_load_error(tiny_model_dir):
    # fuzz_snapshot.py: a snapshot whose fingerprint differs has its architecture summary
    # compared field by field, and the message quoted the snapshot's bytes as they were, so a byte
    # that is not UTF-8 made pybind11 raise UnicodeDecodeError instead of LoadError.
    import struct

    header = struct.Struct("<8sIQQQ")  # magic, version, fingerprint, payload length, FNV-1a

    def fnv1a(data: bytes) -> int:
        value = 1469598103934665603
        for byte in data:
            value = ((value ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        return value

    model = lfmrt.Model.load(tiny_model_dir, n_threads=1)
    session = model.session()
    session.append([1, 2, 3])
    snapshot = session.save()
    magic, version, fingerprint, _, _ = header.unpack_from(snapshot)
    payload = bytearray(snapshot[header.size :])
    at = payload.index(b"hidden_size=") + len(b"hidden_size=")
    payload[at] = 0xFF
    mangled = header.pack(magic, version, fingerprint ^ 1, len(payload), fnv1a(bytes(payload))) + bytes(payload)
    try:
        model.load_session(mangled)
    except lfmrt.LoadError as error:
        assert "hidden_size \\xff" in str(error), str(error)
    else:
        raise AssertionError("a snapshot of another model loaded")
