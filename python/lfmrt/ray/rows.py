"""The row schema of batch inference, shared with Ray Data's vLLM stage (``ray.data.llm``).

A row in holds ``messages`` (a conversation, rendered with the model's chat template), or
``tokenized_prompt`` (token ids), or ``prompt`` (text), and optionally ``sampling_params`` (a
dict); any other column is carried through. A row out adds :data:`OUTPUT_COLUMNS`. These are the
names Ray's vLLM stage reads and writes, so pre/postprocess code written for it runs unchanged.

A row that cannot run (a prompt longer than the context, a sampling value out of range, an
unknown sampling key, an invalid schema or regex, no prompt at all) raises one of :data:`ROW_ERRORS` naming the field; with
``should_continue_on_error`` the row comes out with the message in :data:`ERROR_COLUMN` instead
(Ray's convention: ``"ErrorType: message"``, and ``""`` on the rows that ran).

This module imports no Ray: ``lfmrt batch`` uses it in-process.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from ..errors import LoadError
from ..generation.options import SamplingOptions
from ..session import token_ids

if TYPE_CHECKING:
    from ..generation.completion import Completion
    from ..model import Model
    from ..text.structured import Constraint

#: Ray's per-row error column: the error's type and message, ``""`` on rows that ran.
ERROR_COLUMN = "__inference_error__"

#: What a finished row gains (vLLM stage names, plus ``finish_reason``: "stop" or "length").
OUTPUT_COLUMNS = (
    "prompt",
    "prompt_token_ids",
    "num_input_tokens",
    "generated_text",
    "generated_tokens",
    "num_generated_tokens",
    "finish_reason",
    "time_taken_llm",
    "params",
)

#: The exceptions that mean "this row cannot run"; anything else is the engine's failure.
ROW_ERRORS = (ValueError, TypeError, LoadError)

#: max_tokens when neither the row nor the processor's defaults set it (as Model.generate).
DEFAULT_MAX_TOKENS = 256

# Structured output as vLLM and OpenAI spell it in sampling_params: OpenAI's response_format, or
# vLLM's guided_* keys (one kind each), or those kinds grouped in one dict (structured_outputs in
# vLLM 0.10 on, guided_decoding in Ray's vLLM stage before).
GUIDED_KINDS = ("json", "json_object", "regex", "choice", "grammar")
GUIDED_GROUPS = frozenset({"structured_outputs", "guided_decoding"})
STRUCTURED_OUTPUT_KEYS = frozenset({"response_format", *GUIDED_GROUPS, *(f"guided_{kind}" for kind in GUIDED_KINDS)})
# Which grammar engine vLLM should use, and whether it may fall back to another: lfmrt has one
# (llguidance), so these choose nothing; they are accepted so vLLM configs run unchanged.
_ENGINE_CHOICES = frozenset({"guided_decoding_backend", "backend", "backend_was_auto", "disable_fallback"})

#: The key under which :func:`check_sampling_params` leaves a row's :class:`StructuredOutput`.
STRUCTURED = "structured_output"


class StructuredOutput(NamedTuple):
    """A row's structured output: the ``sampling_params`` key and value it was given as, and
    ``Model.constraint``'s keyword arguments for it."""

    key: str
    value: Any
    options: Dict[str, Any]

_FLOAT_KEYS = frozenset({"temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"})
_INT_KEYS = frozenset({"top_k", "seed", "max_tokens"})
_BOOL_KEYS = frozenset({"ignore_eos", "skip_special_tokens"})
SAMPLING_KEYS = frozenset(SamplingOptions.__dataclass_fields__) | {"max_tokens", "stop"} | _BOOL_KEYS


def _integer(name: str, value: Any) -> int:
    # Arrow and pandas turn integer columns with gaps into floats: 3.0 is 3, 3.5 is an error.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise TypeError(f"sampling_params.{name} must be an integer, got {value!r}")
    return int(value)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"sampling_params.{name} must be a number, got {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"sampling_params.{name} must be true or false, got {value!r}")
    return value


def _logit_bias(value: Any) -> Dict[int, float]:
    if not isinstance(value, Mapping):
        raise TypeError(f"sampling_params.logit_bias must map token ids to numbers, got {value!r}")
    bias: Dict[int, float] = {}
    for token, amount in value.items():
        if amount is None:  # a struct column holds every row's keys; absent ones read as None
            continue
        try:
            token_id = int(token)  # JSON and Arrow keys are strings
        except (TypeError, ValueError):
            raise TypeError(f"sampling_params.logit_bias has key {token!r}, not a token id") from None
        bias[token_id] = _number(f"logit_bias[{token}]", amount)
    return bias


def check_sampling_params(params: Any) -> Dict[str, Any]:
    """``params`` (a row's ``sampling_params``, vLLM's names) checked and in lfmrt's types.

    Keys whose value is ``None`` are left out (Arrow struct columns give every row every key).
    ``top_k=-1`` is vLLM's "off", lfmrt's 0; ``n`` may only be 1. A structured output
    (``response_format``, ``guided_json`` / ``guided_regex`` / ``guided_choice`` /
    ``guided_grammar`` / ``guided_json_object``, or one of those kinds in a
    ``structured_outputs`` / ``guided_decoding`` dict) is checked for shape and left under
    :data:`STRUCTURED` as ``Model.constraint``'s options; it is compiled per row, where a bad
    schema or regex becomes that row's error.

    Raises:
        TypeError: ``params`` is not a dict, or a value of the wrong type (naming the key).
        ValueError: a key lfmrt does not know, or more than one structured output.
    """
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(f"sampling_params must be a dict, got {type(params).__name__}")
    checked: Dict[str, Any] = {}
    structured: List[StructuredOutput] = []
    for name, value in params.items():
        if value is None:
            continue
        if name in STRUCTURED_OUTPUT_KEYS:
            structured.append(StructuredOutput(name, value, _constraint_options(name, value)))
            continue
        if name in _ENGINE_CHOICES:
            continue
        if name == "n":
            if _integer(name, value) != 1:
                raise ValueError("sampling_params.n: lfmrt returns one completion per row (n=1)")
            continue
        if name not in SAMPLING_KEYS:
            known = ", ".join(sorted(SAMPLING_KEYS | {"n"}))
            raise ValueError(f"sampling_params.{name} is not supported by lfmrt (supported: {known})")
        if name in _FLOAT_KEYS:
            checked[name] = _number(name, value)
        elif name in _INT_KEYS:
            checked[name] = _integer(name, value)
            if name == "top_k" and checked[name] == -1:
                checked[name] = 0
        elif name in _BOOL_KEYS:
            checked[name] = _flag(name, value)
        elif name == "logit_bias":
            checked[name] = _logit_bias(value)
        elif name == "stop":
            if isinstance(value, str):
                checked[name] = value
            elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
                checked[name] = list(value)
            else:
                raise TypeError(f"sampling_params.stop must be a string or a list of strings, got {value!r}")
    if len(structured) > 1:
        raise ValueError(f"sampling_params: give one structured output, not {' and '.join(given.key for given in structured)}")
    if structured:
        checked[STRUCTURED] = structured[0]
    return checked


def _guided_options(name: str, kind: str, value: Any) -> Dict[str, Any]:
    """``Model.constraint``'s options for one of vLLM's guided-decoding kinds (``name``: where
    in sampling_params it was given)."""
    field = f"sampling_params.{name}"
    if kind == "json":
        schema = value
        if isinstance(value, str):  # vLLM takes the schema as JSON text too
            try:
                schema = json.loads(value)
            except ValueError as error:
                raise ValueError(f"{field}: not a JSON schema ({error})") from None
        if not isinstance(schema, (Mapping, bool)):
            raise TypeError(f"{field} must be a JSON schema (an object or its JSON text), got {value!r}")
        schema = _present(schema)
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "guided_json", "schema": schema}}}
    if kind == "json_object":
        if _flag(name, value):
            return {"response_format": {"type": "json_object"}}
        return {}
    if kind == "choice":
        if (not isinstance(value, (list, tuple)) or not value
                or not all(isinstance(item, str) and item for item in value)):
            raise TypeError(f"{field} must be a non-empty list of non-empty strings, got {value!r}")
        # A Lark rule of string literals: JSON's escapes are Lark's, so any text is matched as is.
        return {"grammar": "start: " + " | ".join(json.dumps(item) for item in value)}
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, got {value!r}")
    return {kind: value}  # regex, grammar


def _constraint_options(name: str, value: Any) -> Dict[str, Any]:
    """``Model.constraint``'s options for the structured-output key ``name`` of sampling_params
    (see :data:`STRUCTURED_OUTPUT_KEYS`), checked for shape; compiled by :func:`row_request`."""
    field = f"sampling_params.{name}"
    if name == "response_format":
        if not isinstance(value, Mapping):
            raise TypeError(f"{field} must be a dict such as {{'type': 'json_object'}}, got {value!r}")
        return {"response_format": _present(value)}
    if name not in GUIDED_GROUPS:  # guided_<kind>
        return _guided_options(name, name[len("guided_"):], value)
    if not isinstance(value, Mapping):
        raise TypeError(f"{field} must be a dict of one of {', '.join(GUIDED_KINDS)}, got {value!r}")
    given = {kind: item for kind, item in value.items() if item is not None and kind not in _ENGINE_CHOICES}
    unknown = sorted(set(given) - set(GUIDED_KINDS))
    if unknown:
        raise ValueError(f"{field}: {', '.join(unknown)} is not supported by lfmrt (supported: {', '.join(GUIDED_KINDS)})")
    if given.get("json_object") is False:
        del given["json_object"]
    if len(given) != 1:
        raise ValueError(f"{field} must give exactly one of {', '.join(GUIDED_KINDS)}, got {sorted(given) or 'none'}")
    [(kind, item)] = given.items()
    return _guided_options(f"{name}.{kind}", kind, item)


def _present(value: Any) -> Any:
    """``value`` without the ``None`` entries of its dicts, at any depth: an Arrow struct column
    gives every row the keys of all rows, absent ones as None (lists keep theirs). A schema that
    needs a null value in a dict (``"const": None``) is given as JSON text."""
    if isinstance(value, Mapping):
        return {key: _present(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_present(item) for item in value]
    return value


@dataclass(frozen=True)
class RowRequest:
    """A row turned into what the Scheduler runs.

    Attributes:
        tokens: the prompt's token ids.
        prompt: the prompt's text (a conversation rendered with the chat template).
        max_tokens, stop, ignore_eos, skip_special_tokens: as for ``Scheduler.submit``.
        sampling: the remaining :class:`~lfmrt.SamplingOptions` fields the row or the defaults set.
        structured: the structured output asked for, or None.
        constraint: ``structured`` compiled, or None.
    """

    tokens: List[int]
    prompt: str
    max_tokens: int
    stop: Union[str, List[str], None]
    ignore_eos: bool
    skip_special_tokens: bool
    sampling: Dict[str, Any]
    structured: Optional[StructuredOutput] = None
    constraint: Optional["Constraint"] = None

    def submit_kwargs(self) -> Dict[str, Any]:
        """Keywords for ``Scheduler.submit`` (after the prompt)."""
        return dict(max_tokens=self.max_tokens, stop=self.stop, ignore_eos=self.ignore_eos,
                    skip_special_tokens=self.skip_special_tokens, constraint=self.constraint, **self.sampling)

    def params(self, seed: Optional[int]) -> str:
        """The settings the row ran with, as JSON (vLLM's ``params`` column; the seed repeats a sampled row)."""
        settings = {"max_tokens": self.max_tokens, "stop": self.stop, "ignore_eos": self.ignore_eos,
                    "skip_special_tokens": self.skip_special_tokens, **self.sampling, "seed": seed}
        if self.structured is not None:
            settings[self.structured.key] = self.structured.value
        return json.dumps(settings, sort_keys=True)


class Constraints:
    """The constraints of rows' structured outputs, compiled once per distinct output (rows of
    one job mostly share a schema) and kept while at most ``size`` distinct ones are in use.
    Safe to use from several threads."""

    def __init__(self, model: "Model", size: int = 64) -> None:
        self._model = model
        self._size = size
        self._compiled: "OrderedDict[str, Optional[Constraint]]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, structured: StructuredOutput) -> Optional["Constraint"]:
        """The compiled constraint of ``structured``.

        Raises:
            ValueError: an invalid or unsatisfiable schema, regex or grammar (naming the key).
            ImportError: the grammar engine is not installed (``pip install 'lfmrt[structured]'``).
        """
        key = json.dumps(structured.options, sort_keys=True)
        with self._lock:
            if key in self._compiled:
                self._compiled.move_to_end(key)
                return self._compiled[key]
        try:
            constraint = self._model.constraint(**structured.options)
        except ValueError as error:
            raise ValueError(f"sampling_params.{structured.key}: {error}") from None
        with self._lock:
            self._compiled[key] = constraint
            if len(self._compiled) > self._size:
                self._compiled.popitem(last=False)
        return constraint


def _messages(messages: Any) -> List[Dict[str, Any]]:
    if not isinstance(messages, (list, tuple)) and not hasattr(messages, "tolist"):
        raise TypeError(f"messages must be a list of {{'role', 'content'}} objects, got {type(messages).__name__}")
    items = messages.tolist() if hasattr(messages, "tolist") else messages
    checked = []
    for index, message in enumerate(items):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{index}] must be an object with 'role' and 'content', got {message!r}")
        # Keys absent from this message but present in others read as None from Arrow.
        checked.append({key: value for key, value in message.items() if value is not None})
    return checked


def row_prompt(model: "Model", row: Mapping[str, Any], apply_chat_template: bool) -> Tuple[List[int], str]:
    """The tokens and text of a row's prompt: its ``messages`` through the chat template (when
    ``apply_chat_template``), else its ``tokenized_prompt``, else its ``prompt`` text.

    Raises:
        ValueError, TypeError: no usable prompt, or one of the wrong type (naming the column).
        LoadError: the model has no chat template (for messages) or no tokenizer.
    """
    messages, tokenized, prompt = row.get("messages"), row.get("tokenized_prompt"), row.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    if messages is not None and apply_chat_template:
        text = model.apply_chat_template(_messages(messages))
        return model.tokenize(text, add_special_tokens=False), text
    if tokenized is not None:
        try:
            tokens = token_ids(tokenized)
        except TypeError as error:
            raise TypeError(f"tokenized_prompt must be a list of token ids: {error}") from None
        return tokens, prompt if prompt is not None else model.detokenize(tokens)
    if prompt is not None:
        return model.tokenize(prompt), prompt
    if messages is not None:
        raise ValueError("the row has messages but the chat template is off (apply_chat_template=False): "
                         "give it a prompt or tokenized_prompt")
    raise ValueError("the row has no prompt, messages or tokenized_prompt column")


def row_request(
    model: "Model",
    row: Mapping[str, Any],
    defaults: Mapping[str, Any],
    apply_chat_template: bool,
    constraints: Constraints,
) -> RowRequest:
    """The request a row runs: its prompt (see :func:`row_prompt`) with its ``sampling_params``
    over ``defaults`` (already checked with :func:`check_sampling_params`), and its structured
    output compiled through ``constraints`` (shared by the rows of one engine).

    Raises:
        ValueError, TypeError, LoadError: as :func:`row_prompt` and :func:`check_sampling_params`,
            and an invalid schema, regex or grammar.
        ImportError: a structured output without the grammar engine installed.
    """
    settings = {**defaults, **check_sampling_params(row.get("sampling_params"))}
    tokens, text = row_prompt(model, row, apply_chat_template)
    structured = settings.pop(STRUCTURED, None)
    return RowRequest(
        tokens=tokens,
        prompt=text,
        max_tokens=settings.pop("max_tokens", DEFAULT_MAX_TOKENS),
        stop=settings.pop("stop", None),
        ignore_eos=settings.pop("ignore_eos", False),
        skip_special_tokens=settings.pop("skip_special_tokens", True),
        sampling=settings,
        structured=structured,
        constraint=constraints.get(structured) if structured is not None else None,
    )


def output_columns(request: RowRequest, completion: "Completion", seconds: float) -> Dict[str, Any]:
    """The columns a finished row gains (:data:`OUTPUT_COLUMNS`); ``seconds`` from submission to
    the last token, queueing included (vLLM's ``time_taken_llm``)."""
    return {
        "prompt": request.prompt,
        "prompt_token_ids": list(request.tokens),
        "num_input_tokens": len(request.tokens),
        "generated_text": completion.text,
        "generated_tokens": list(completion.tokens),
        "num_generated_tokens": len(completion.tokens),
        "finish_reason": completion.finish_reason,
        "time_taken_llm": float(seconds),
        "params": request.params(completion.seed),
    }


def error_columns(row: Mapping[str, Any], error: BaseException) -> Dict[str, Any]:
    """The columns of a row that could not run: empty outputs (as Ray's vLLM stage writes them:
    no tokens, ``time_taken_llm`` -1) and the error in :data:`ERROR_COLUMN`."""
    prompt = row.get("prompt")
    return {
        "prompt": prompt if isinstance(prompt, str) else "",
        "prompt_token_ids": None,
        "num_input_tokens": 0,
        "generated_text": "",
        "generated_tokens": [],
        "num_generated_tokens": 0,
        "finish_reason": None,
        "time_taken_llm": -1.0,
        "params": "",
        ERROR_COLUMN: f"{type(error).__name__}: {error}",
    }


def finished_row(row: Mapping[str, Any], outcome: Union[Dict[str, Any], BaseException], continue_on_error: bool) -> Dict[str, Any]:
    """``row`` with its outcome's columns: the outputs, or with ``continue_on_error`` a row
    error as :func:`error_columns` (and ``ERROR_COLUMN`` ``""`` on rows that ran).

    Raises:
        the outcome, when it is an exception that is not a row error or errors do not continue.
    """
    if isinstance(outcome, BaseException):
        if continue_on_error and isinstance(outcome, ROW_ERRORS):
            return {**row, **error_columns(row, outcome)}
        raise outcome
    done = {**row, **outcome}
    if continue_on_error:
        done[ERROR_COLUMN] = ""
    return done

