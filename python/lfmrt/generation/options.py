"""How to pick each next token: :class:`SamplingOptions`, checked and handed to the C++ sampler."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Dict, Optional

from .. import _core


@dataclass(frozen=True)
class SamplingOptions:
    """How to pick each next token. ``temperature=0`` is greedy; the same seed gives the same output.

    With no seed, every generation draws its own from the operating system, so repeated samples
    differ; the seed drawn is reported as ``Completion.seed``, and passing it back repeats the run.

    Attributes:
        temperature: softmax temperature (0 = greedy).
        top_k: keep the k most likely tokens (0 = off).
        top_p: keep the smallest set holding this probability mass (1 = off).
        min_p: drop tokens less likely than min_p times the most likely one (0 = off).
        repetition_penalty: transformers' rule over the whole context (1 = off).
        presence_penalty, frequency_penalty: OpenAI's rules (0 = off).
        seed: random seed in [0, 2**64); ``None`` (the default) draws one per generation.
        logit_bias: token id -> value added to its logit.
        logprobs: record each generated token's log-probability (``Completion.logprobs``, and
            on each streamed :class:`~lfmrt.generation.completion.Piece`).
        top_logprobs: with ``logprobs``, also the this many most likely tokens at each step
            (0 to 20, as OpenAI's API allows). Log-probabilities are the log-softmax of the
            logits the sampler draws from after a constraint's mask, ``logit_bias`` and the
            penalties, before temperature and top-k / top-p / min-p: the model's own
            log-softmax, as OpenAI reports it, when none of those three is in use.
    """

    temperature: float = 0.3
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.15
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: Optional[int] = None
    logit_bias: Dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0

    def seeded(self) -> "SamplingOptions":
        """These options with a seed: this one's, or one drawn from the operating system."""
        return self if self.seed is not None else dataclasses.replace(self, seed=secrets.randbits(64))

    def to_core(self, vocab_size: int) -> "_core.SamplingParams":
        """The C++ sampler's parameters; raises ValueError naming a field that is out of range.
        A ``None`` seed draws one (see :meth:`seeded`)."""
        params = _core.SamplingParams()
        params.temperature = float(self.temperature)
        params.top_k = int(self.top_k)
        params.top_p = float(self.top_p)
        params.min_p = float(self.min_p)
        params.repetition_penalty = float(self.repetition_penalty)
        params.presence_penalty = float(self.presence_penalty)
        params.frequency_penalty = float(self.frequency_penalty)
        seed = int(self.seeded().seed)  # type: ignore[arg-type]
        if not 0 <= seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        params.seed = seed
        params.logit_bias = [(int(token), float(bias)) for token, bias in self.logit_bias.items()]
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=True")
        params.logprobs = int(self.top_logprobs) if self.logprobs else -1
        params.validate(vocab_size)
        return params
