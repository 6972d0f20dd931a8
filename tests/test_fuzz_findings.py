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
