"""KV cache storage types: f16 (default) and q8_0 against f32 — memory and quality cost."""

from pathlib import Path

import numpy as np
import pytest

import lfmrt

MODELS = Path(__file__).parent / "fixtures" / "models"
ATTENTION_HEAVY = ["lfm2_350m_pattern_bf16", "gqa2_hd64_bf16_jinja", "all_attn_gqa4_f16_sharded"]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def tokens(n: int, vocab: int):
    return np.random.default_rng(0).integers(14, min(700, vocab), n).tolist()


def test_default_is_f16_for_low_precision_weights_and_f32_for_f32_weights():
    assert lfmrt.Model.load(MODELS / "lfm2_350m_pattern_bf16")._core.kv_dtype == "F16"
    assert lfmrt.Model.load(MODELS / "all_conv_bias_f32")._core.kv_dtype == "F32"


@pytest.mark.parametrize("name", ATTENTION_HEAVY)
@pytest.mark.parametrize("kv_cache, max_mean_kl, min_top1", [("f16", 1e-5, 0.99), ("q8_0", 2e-3, 0.98)])
def test_quality_cost_against_an_f32_cache(name, kv_cache, max_mean_kl, min_top1):
    # Bounds a few times above what was measured (f16: mean KL <= 3e-7, top-1 1.0;
    # q8_0: mean KL <= 2.1e-4, top-1 >= 0.997 over 300 positions).
    reference = lfmrt.Model.load(MODELS / name, kv_cache="f32")
    model = lfmrt.Model.load(MODELS / name, kv_cache=kv_cache)
    sequence = tokens(300, model.config.vocab_size)
    base = log_softmax(reference.logits(sequence))
    got = log_softmax(model.logits(sequence))
    kl = (np.exp(base) * (base - got)).sum(-1)
    assert kl.mean() < max_mean_kl
    assert (base.argmax(-1) == got.argmax(-1)).mean() >= min_top1


def test_f16_halves_and_q8_0_roughly_quarters_the_cache():
    sizes = {}
    for kv_cache in ("f32", "f16", "q8_0"):
        model = lfmrt.Model.load(MODELS / "all_attn_gqa4_f16_sharded", kv_cache=kv_cache)
        session = model.session(max_checkpoints=0)
        session.append(tokens(600, model.config.vocab_size))
        sizes[kv_cache] = session.memory_bytes - 600 * 4 - model.config.vocab_size * 4  # minus tokens, logits
    assert sizes["f16"] == pytest.approx(sizes["f32"] / 2, rel=0.01)
    assert sizes["q8_0"] == pytest.approx(sizes["f32"] * 34 / 128, rel=0.01)  # 34 bytes per 32 values


def test_cache_grows_in_pages_not_up_front():
    model = lfmrt.Model.load(MODELS / "all_attn_gqa4_f16_sharded")  # f16 cache, 3 attention layers
    config = model.config
    page_bytes = 256 * config.n_kv_heads * config.head_dim * 2 * 2 * len(config.layer_types)  # K and V, f16
    session = model.session(max_checkpoints=0)
    session.append([1])
    one_page = session.memory_bytes
    assert one_page < 2 * page_bytes  # one page per layer, not the whole context
    session.append(tokens(200, config.vocab_size))
    assert session.memory_bytes - one_page < page_bytes / 10  # still within the first page (tokens only)
    session.append(tokens(100, config.vocab_size))
    assert session.memory_bytes - one_page >= page_bytes  # crossing position 256 added a page


def test_q8_0_cache_snapshot_round_trip_and_restore_into_another_kv_type():
    model = lfmrt.Model.load(MODELS / "lfm2_350m_pattern_bf16", kv_cache="q8_0")
    prompt = tokens(300, model.config.vocab_size)  # past one KV page
    session = model.session()
    session.append(prompt)
    snapshot = session.save()
    restored = model.load_session(snapshot)
    assert np.array_equal(restored.append([9]), session.append([9]))
    # Another KV storage type converts the rows (through fp32), so the restored session continues
    # the q8_0 one: as close to it as the storage types allow, and closer than an f16 session
    # that computed its own keys and values (which differ by q8_0's rounding).
    session.append([11])
    q8_next = session.last_logits
    for kv_cache in ("f16", "f32"):
        other = lfmrt.Model.load(MODELS / "lfm2_350m_pattern_bf16", kv_cache=kv_cache)
        converted = other.load_session(snapshot)
        assert converted.tokens == prompt
        converted_next = converted.append([9, 11])
        native = other.session()
        native_next = native.append(prompt + [9, 11])
        assert np.abs(converted_next - q8_next).max() < 0.5 * np.abs(native_next - q8_next).max(), kv_cache


def test_bad_kv_cache_choices_are_clear_errors():
    with pytest.raises(ValueError, match="kv_cache"):
        lfmrt.Model.load(MODELS / "lfm2_350m_pattern_bf16", kv_cache="int4")
    with pytest.raises(ValueError, match="multiple of 32"):
        lfmrt.Model.load(MODELS / "attn_first_bias_bf16_sharded", kv_cache="q8_0")  # head_dim 16
