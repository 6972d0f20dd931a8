"""The C++ sampler against the rules it implements, computed here with numpy."""

import numpy as np
import pytest

import lfmrt
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


# --- constraint masks -------------------------------------------------------------------------
# A mask is 32-bit words over the vocabulary (bit t % 32 of word t // 32 allows token t), as the
# grammar engine writes it. The numpy reference below reads the bits independently of the C++
# code: it unpacks the words' bytes, least significant bit first.


def allowed_tokens(mask: np.ndarray, vocab: int) -> np.ndarray:
    return np.unpackbits(mask.view(np.uint8), bitorder="little")[:vocab].astype(bool)


def random_mask(rng: np.random.Generator, vocab: int, p_allowed: float) -> np.ndarray:
    """A mask allowing each token with probability p_allowed (at least one), with random junk in
    the bits past the vocabulary, which the sampler must ignore."""
    bits = rng.random((vocab + 31) // 32 * 32) < p_allowed
    bits[vocab:] = rng.random(len(bits) - vocab) < 0.5
    if not bits[:vocab].any():
        bits[rng.integers(vocab)] = True
    return np.packbits(bits, bitorder="little").view(np.int32).copy()


def masked_sampler(vocab: int, **options) -> "_core.Sampler":
    return _core.Sampler(SamplingOptions(**{"min_p": 0.0, "repetition_penalty": 1.0, **options}).to_core(vocab))


ODD_VOCABS = [1, 31, 33, 50, 97, 4097]


@pytest.mark.parametrize("vocab", ODD_VOCABS)
def test_masked_greedy_is_the_argmax_over_allowed_tokens(vocab):
    rng = np.random.default_rng(vocab)
    for trial in range(20):
        x = rng.normal(0, 3, vocab).astype(np.float32)
        mask = random_mask(rng, vocab, p_allowed=0.3)
        allowed = allowed_tokens(mask, vocab)
        expected = int(np.argmax(np.where(allowed, x, -np.inf)))
        assert masked_sampler(vocab, temperature=0).sample_logits(x, [], mask) == expected
        # With bias and penalties too: the mask comes first, then they apply to what it allows.
        history = rng.integers(0, vocab, 5).tolist()
        bias = {int(rng.integers(vocab)): 5.0}
        adjusted = np.where(allowed, x, -np.inf)
        for token, value in bias.items():
            adjusted[token] += value
        for token in set(history):
            adjusted[token] -= 0.5 + 0.25 * history.count(token)
        sampler = masked_sampler(vocab, temperature=0, logit_bias=bias, presence_penalty=0.5, frequency_penalty=0.25)
        assert sampler.sample_logits(x, history, mask) == int(np.argmax(adjusted))


@pytest.mark.parametrize("vocab", ODD_VOCABS)
@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 1.0},
        {"temperature": 0.7, "top_k": 3},
        {"temperature": 1.0, "top_p": 0.5},
        {"temperature": 1.0, "min_p": 0.3},
        {"temperature": 1.2, "repetition_penalty": 1.3, "logit_bias": {0: 2.0}},
    ],
    ids=["temperature", "top_k", "top_p", "min_p", "penalty_bias"],
)
def test_masked_sampling_draws_only_allowed_tokens(vocab, options):
    """Every sampling mode draws only tokens the mask allows, and (top-k, top-p, min-p) exactly
    the set numpy's rules give over the masked logits."""
    rng = np.random.default_rng(vocab + 1000)
    x = rng.normal(0, 2, vocab).astype(np.float32)
    mask = random_mask(rng, vocab, p_allowed=0.4)
    allowed = allowed_tokens(mask, vocab)
    sampler = masked_sampler(vocab, seed=1, **options)
    drawn = {sampler.sample_logits(x, [1 % vocab], mask) for _ in range(600)}
    assert drawn <= set(np.flatnonzero(allowed).tolist())
    probs = softmax(np.where(allowed, x, -np.inf) / options["temperature"])
    order = np.argsort(-probs, kind="stable")
    if "top_k" in options:
        assert drawn == set(order[: min(options["top_k"], int(allowed.sum()))].tolist())
    if "top_p" in options:
        nucleus = int(np.searchsorted(np.cumsum(probs[order]), options["top_p"]) + 1)
        assert drawn == set(order[:nucleus].tolist())
    if "min_p" in options:
        assert drawn == set(np.flatnonzero(probs >= options["min_p"] * probs.max()).tolist())


def test_masked_frequencies_follow_the_renormalised_softmax():
    vocab = 37  # two words, the second holding 5 tokens
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, vocab).astype(np.float32)
    mask = random_mask(rng, vocab, p_allowed=0.5)
    allowed = allowed_tokens(mask, vocab)
    sampler = masked_sampler(vocab, temperature=1.3, seed=2)
    drawn = np.array([sampler.sample_logits(x, [], mask) for _ in range(20000)])
    expected = softmax(np.where(allowed, x, -np.inf) / 1.3)
    assert np.abs(np.bincount(drawn, minlength=vocab) / len(drawn) - expected).max() < 0.015


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_fully_masked_vocabulary_raises_constraint_error(temperature):
    vocab = 33
    sampler = masked_sampler(vocab, temperature=temperature)
    x = np.zeros(vocab, np.float32)
    with pytest.raises(lfmrt.ConstraintError, match="allows no next token"):
        sampler.sample_logits(x, [], np.zeros(2, np.int32))
    past_the_end = np.array([0, ~((1 << 1) - 1)], np.int32)  # only bits of tokens 33..63 set
    with pytest.raises(lfmrt.ConstraintError, match="allows no next token"):
        sampler.sample_logits(x, [], past_the_end)
    only_token_5 = np.array([1 << 5, 0], np.int32)
    banned_by_bias = masked_sampler(vocab, temperature=temperature, logit_bias={5: float("-inf")})
    with pytest.raises(lfmrt.ConstraintError, match="probability 0"):
        banned_by_bias.sample_logits(x, [], only_token_5)
    assert sampler.sample_logits(x, [], only_token_5) == 5


def test_bad_masks_raise_value_error():
    sampler = masked_sampler(33, temperature=0)
    x = np.zeros(33, np.float32)
    with pytest.raises(ValueError, match="needs 2"):
        sampler.sample_logits(x, [], np.full(1, -1, np.int32))
    with pytest.raises(ValueError, match="32-bit integers"):
        sampler.sample_logits(x, [], np.full(2, -1, np.int64))


def log_softmax(x: np.ndarray) -> np.ndarray:
    finite = x[np.isfinite(x)]
    return x - (finite.max() + np.log(np.exp(finite - finite.max()).sum()))


@pytest.mark.parametrize("temperature", [0.0, 0.8])
@pytest.mark.parametrize("masked", [False, True])
def test_logprobs_are_the_log_softmax_of_the_adjusted_logits(temperature, masked):
    """The sampled token's logprob and the top-k alternatives: log-softmax of the logits after
    the mask, bias and penalties, before temperature and truncation (numpy computes it here)."""
    vocab = 97
    rng = np.random.default_rng(11)
    x = rng.normal(0, 2, vocab).astype(np.float32)
    mask = random_mask(rng, vocab, 0.5) if masked else None
    history = [3, 3, 8]
    options = dict(temperature=temperature, top_k=10, logit_bias={4: 1.5}, frequency_penalty=0.7, logprobs=True, top_logprobs=5)
    sampler = masked_sampler(vocab, seed=4, **options)
    adjusted = x.astype(np.float64)
    if masked:
        adjusted = np.where(allowed_tokens(mask, vocab), adjusted, -np.inf)
    adjusted[4] += 1.5
    adjusted[3] -= 1.4
    adjusted[8] -= 0.7
    expected = log_softmax(adjusted)
    for _ in range(20):
        token = sampler.sample_logits(x, history, mask)
        logprob, top = sampler.last_logprobs
        assert logprob == pytest.approx(expected[token], abs=1e-5)
        order = np.argsort(-expected, kind="stable")[:5]
        assert [t for t, _ in top] == order.tolist()
        assert np.allclose([lp for _, lp in top], expected[order], atol=1e-5)


def test_top_logprobs_zero_reports_only_the_sampled_token_and_off_reports_nothing(logits):
    sampler = make_sampler(temperature=0, logprobs=True, top_logprobs=0)
    token = sampler.sample_logits(logits)
    logprob, top = sampler.last_logprobs
    assert top == [] and logprob == pytest.approx(log_softmax(logits.astype(np.float64))[token], abs=1e-5)
    plain = make_sampler(temperature=0)
    plain.sample_logits(logits)
    assert plain.last_logprobs is None
    with pytest.raises(ValueError, match="top_logprobs"):
        SamplingOptions(logprobs=True, top_logprobs=21).to_core(VOCAB)
    with pytest.raises(ValueError, match="top_logprobs"):
        SamplingOptions(top_logprobs=2).to_core(VOCAB)
