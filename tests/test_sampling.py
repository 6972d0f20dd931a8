"""The C++ sampler against the rules it implements, computed here with numpy."""

import numpy as np
import pytest

from lfmrt import SamplingOptions
from lfmrt import _core

VOCAB = 50


def make_sampler(**options) -> "_core.Sampler":
    return _core.Sampler(SamplingOptions(**{"min_p": 0.0, "repetition_penalty": 1.0, **options}).to_core(VOCAB))


@pytest.fixture
def logits() -> np.ndarray:
    return np.random.default_rng(7).normal(0, 2, VOCAB).astype(np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def samples(sampler_options: dict, logits: np.ndarray, n: int = 3000, history=()) -> np.ndarray:
    sampler = make_sampler(**sampler_options)
    return np.array([sampler.sample_logits(logits, list(history)) for _ in range(n)])


def test_temperature_zero_is_argmax(logits):
    assert make_sampler(temperature=0).sample_logits(logits) == int(np.argmax(logits))


@pytest.mark.parametrize("size", [1, 7, 8, 9, 65536, 65541])
def test_greedy_argmax_first_of_ties_ignores_nan(size):
    """Greedy takes numpy's argmax (the first of equal maxima) at vocabulary sizes around the
    sampler's 8-wide passes; a NaN logit is never taken, and a value past the last whole pass counts."""
    rng = np.random.default_rng(size)
    sampler = _core.Sampler(SamplingOptions(temperature=0, min_p=0.0, repetition_penalty=1.0).to_core(size))
    x = rng.integers(-50, 50, size).astype(np.float32)  # many exact ties
    assert sampler.sample_logits(x) == int(np.argmax(x))
    x[-1] = 1000.0  # the largest in the tail
    assert sampler.sample_logits(x) == size - 1
    if size > 1:
        x[0] = np.nan
        x[size // 2] = 2000.0
        assert sampler.sample_logits(x) == size // 2
    x[:] = -np.inf
    assert sampler.sample_logits(x) == 0


def test_top_k_one_is_argmax(logits):
    assert set(samples({"temperature": 1.0, "top_k": 1}, logits, n=50)) == {int(np.argmax(logits))}


def test_same_seed_same_tokens_different_seed_different(logits):
    a = samples({"temperature": 1.0, "seed": 3}, logits, n=200)
    b = samples({"temperature": 1.0, "seed": 3}, logits, n=200)
    c = samples({"temperature": 1.0, "seed": 4}, logits, n=200)
    assert (a == b).all()
    assert (a != c).any()


def test_frequencies_follow_softmax_at_temperature(logits):
    temperature = 1.5
    drawn = samples({"temperature": temperature}, logits, n=20000)
    expected = softmax(logits / temperature)
    observed = np.bincount(drawn, minlength=VOCAB) / len(drawn)
    # 20000 draws: the standard error of a frequency p is sqrt(p(1-p)/n) <= 0.0036.
    assert np.abs(observed - expected).max() < 0.015


def test_top_k_keeps_only_the_k_most_likely(logits):
    allowed = set(np.argsort(-logits)[:5].tolist())
    drawn = set(samples({"temperature": 1.0, "top_k": 5}, logits).tolist())
    assert drawn <= allowed and len(drawn) == 5


def test_top_p_keeps_the_smallest_nucleus(logits):
    probs = softmax(logits)
    order = np.argsort(-probs)
    cumulative = np.cumsum(probs[order])
    nucleus_size = int(np.searchsorted(cumulative, 0.6) + 1)
    allowed = set(order[:nucleus_size].tolist())
    drawn = set(samples({"temperature": 1.0, "top_p": 0.6}, logits).tolist())
    assert drawn <= allowed and len(drawn) == len(allowed)


def test_min_p_drops_tokens_below_the_fraction_of_the_best(logits):
    probs = softmax(logits)
    allowed = set(np.flatnonzero(probs >= 0.2 * probs.max()).tolist())
    drawn = set(samples({"temperature": 1.0, "min_p": 0.2}, logits).tolist())
    assert drawn <= allowed and len(drawn) == len(allowed)


def test_repetition_penalty_follows_transformers_rule(logits):
    top = int(np.argmax(logits))
    adjusted = logits.copy()
    adjusted[top] = adjusted[top] / 100.0 if adjusted[top] > 0 else adjusted[top] * 100.0
    sampler = make_sampler(temperature=0, repetition_penalty=100.0)
    assert sampler.sample_logits(logits, [top, top]) == int(np.argmax(adjusted))


def test_presence_and_frequency_penalties():
    logits = np.zeros(VOCAB, np.float32)
    logits[3] = 2.0
    logits[4] = 1.5
    # 3 appears twice: 2.0 - 0.1 - 2 * 0.5 = 0.9 < 1.5, so 4 wins.
    assert make_sampler(temperature=0, presence_penalty=0.1, frequency_penalty=0.5).sample_logits(logits, [3, 3]) == 4
    assert make_sampler(temperature=0).sample_logits(logits, [3, 3]) == 3


def test_logit_bias(logits):
    assert make_sampler(temperature=0, logit_bias={11: 1e4}).sample_logits(logits) == 11
    banned = int(np.argmax(logits))
    drawn = samples({"temperature": 1.0, "logit_bias": {banned: float("-inf")}}, logits, n=500)
    assert banned not in set(drawn.tolist())


@pytest.mark.parametrize(
    "options, field",
    [
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -2}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_p": 1.5}, "min_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"logit_bias": {VOCAB: 1.0}}, "logit_bias"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_values_raise_value_error_naming_the_field(options, field):
    with pytest.raises(ValueError, match=field):
        SamplingOptions(**options).to_core(VOCAB)
