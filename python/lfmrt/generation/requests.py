"""A prompt and options turned into a generation, the same way for ``Model`` and ``Scheduler``.

Both take a prompt (text or token ids), ``max_tokens``, stop strings and sampling keywords;
this module checks them, merges the sampling keywords over the model's defaults, clamps
``max_tokens`` to the room the context leaves, and builds the :class:`GenerationState` that runs
it. It sees the model only through :class:`GenerationModel`, the few public members it needs,
so it depends on no ``Model`` code (and ``Model`` depends on it, not the reverse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Protocol, Sequence, Union

from ..session import Session, token_ids
from ..text.detokenizer import hidden_special_ids
from .options import SamplingOptions
from .state import GenerationState

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from ..loaders.config import Lfm2Config
    from ..text.structured import Constraint

Prompt = Union[str, Sequence[int]]


class GenerationModel(Protocol):
    """What building a generation needs from a model (``lfmrt.Model`` is one)."""

    config: "Lfm2Config"
    max_context: int
    n_threads: int
    eos_token_ids: List[int]
    default_sampling: SamplingOptions

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> List[int]:
        """Token ids of ``text``."""

    def require_tokenizer(self) -> "Tokenizer":
        """The tokenizer, or LoadError when the model has none."""

    def session(self) -> Session:
        """A new, empty session on the model."""

    def constraint(
        self,
        *,
        response_format: Optional[Mapping[str, Any]] = None,
        grammar: Union[str, Mapping[str, Any], None] = None,
        regex: Optional[str] = None,
        tools: Optional[Sequence[Any]] = None,
        tool_choice: Union[str, Mapping[str, Any], None] = None,
        parallel_tool_calls: bool = True,
    ) -> Optional["Constraint"]:
        """The constraint these options ask for (see ``lfmrt.text.structured``), or None."""


def prompt_tokens(model: GenerationModel, prompt: Prompt) -> List[int]:
    """The prompt's token ids: text is tokenized (with the tokenizer's special tokens), token
    ids are taken as they are.

    Raises:
        TypeError: the prompt is neither text nor a sequence of integer token ids.
    """
    if isinstance(prompt, str):
        return model.tokenize(prompt)
    try:
        return token_ids(prompt)
    except TypeError as error:
        raise TypeError(f"a prompt is text or a sequence of token ids: {error}") from None


def stop_strings(stop: Union[str, Sequence[str], None]) -> List[str]:
    """The stop strings: one string is one stop (as in OpenAI's API), never its characters.

    Raises:
        TypeError: ``stop`` is neither a string nor a list of strings.
        ValueError: an empty stop string.
    """
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, (list, tuple)) or not all(isinstance(item, str) for item in stops):
        raise TypeError(f"stop must be a string or a list of strings, got {stop!r}")
    if not all(stops):
        raise ValueError("stop strings must be non-empty")
    return list(stops)


def check_token_ids(tokens: Sequence[int], vocab_size: int) -> None:
    """Raises ValueError for a prompt token outside the vocabulary, before any of the prompt
    runs (a scheduler prefills prompts together: one bad prompt must not stall the others)."""
    for index, token in enumerate(tokens):
        if not 0 <= token < vocab_size:
            raise ValueError(
                f"token id {token} at index {index} of the prompt is outside the vocabulary [0, {vocab_size})"
            )


def sampling_options(defaults: SamplingOptions, overrides: Mapping[str, Any]) -> SamplingOptions:
    """``defaults`` with the fields ``overrides`` names replaced, and a seed drawn from the
    operating system when neither sets one (so unseeded samples differ run to run).

    Raises:
        TypeError: a key that is no field of :class:`SamplingOptions`.
    """
    unknown = set(overrides) - set(SamplingOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown sampling option(s): {', '.join(sorted(unknown))}")
    return SamplingOptions(**{**defaults.__dict__, **overrides}).seeded()


def request_constraint(
    model: GenerationModel,
    constraint: Optional["Constraint"],
    *,
    response_format: Optional[Mapping[str, Any]] = None,
    grammar: Union[str, Mapping[str, Any], None] = None,
    regex: Optional[str] = None,
    tools: Optional[Sequence[Any]] = None,
    tool_choice: Union[str, Mapping[str, Any], None] = None,
    parallel_tool_calls: bool = True,
) -> Optional["Constraint"]:
    """The constraint of one request: ``constraint`` as given (built earlier with
    ``Model.constraint``), or the one the other options ask for, compiled now.

    Raises:
        ValueError: ``constraint`` together with options that would build another, a
            constraint made for another vocabulary, or a bad option (see ``Model.constraint``).
        TypeError: ``constraint`` is not a Constraint.
    """
    if constraint is None:
        return model.constraint(
            response_format=response_format, grammar=grammar, regex=regex, tools=tools, tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
        )
    from ..text.structured import Constraint

    given = [name for name, value in (("response_format", response_format), ("grammar", grammar), ("regex", regex),
                                      ("tool_choice", tool_choice)) if value is not None]
    if not parallel_tool_calls:
        given.append("parallel_tool_calls")
    if given:
        raise ValueError(f"constraint= already says what the answer must follow: leave out {', '.join(given)}")
    if not isinstance(constraint, Constraint):
        raise TypeError(f"constraint must be a Constraint (Model.constraint(...)), got {type(constraint).__name__}")
    if constraint.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"constraint was built for a vocabulary of {constraint.vocab_size} tokens; this model has {model.config.vocab_size}"
        )
    return constraint


def generation_state(
    model: GenerationModel,
    tokens: Sequence[int],
    *,
    max_tokens: int,
    stop: Union[str, Sequence[str], None],
    ignore_eos: bool,
    sampling: Mapping[str, Any],
    session: Optional[Session],
    skip_special_tokens: bool = True,
    constraint: Optional["Constraint"] = None,
) -> GenerationState:
    """The generation of up to ``max_tokens`` tokens after the prompt ``tokens``.

    ``max_tokens`` is clamped to what the context leaves after the prompt; the generation
    continues ``session`` (reusing its longest common prefix with the prompt) or a new one.
    With ``skip_special_tokens`` its text leaves out special tokens other than the answer's
    own markup (tool-call markers, reasoning tags: see ``text.detokenizer.ANSWER_MARKUP``).
    With a ``constraint`` (see :func:`request_constraint`) every token follows it.

    Raises:
        ValueError: an empty prompt, a token outside the vocabulary, a prompt the context cannot
            hold with one more token, ``max_tokens`` below 1, a sampling value out of range, an
            empty stop string.
        TypeError: an unknown sampling option, a stop that is not a string.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if len(tokens) == 0:
        raise ValueError("the prompt is empty: give at least one token")
    check_token_ids(tokens, model.config.vocab_size)
    options = sampling_options(model.default_sampling, sampling)
    stops = stop_strings(stop)
    if len(tokens) + 1 > model.max_context:
        raise ValueError(f"the prompt has {len(tokens)} tokens; the context holds {model.max_context}")
    tokenizer = model.require_tokenizer()
    return GenerationState(
        session=session if session is not None else model.session(),
        tokenizer=tokenizer,
        prompt_tokens=tokens,
        sampling=options,
        max_tokens=min(max_tokens, model.max_context - len(tokens)),
        stop=stops,
        stop_token_ids=[] if ignore_eos else model.eos_token_ids,
        vocab_size=model.config.vocab_size,
        hidden_token_ids=hidden_special_ids(tokenizer) if skip_special_tokens else frozenset(),
        constraint=constraint,
    )
