"""Constrained decoding: answers that follow a JSON schema, a grammar, a regular expression or
LFM2's own tool-call syntax.

A :class:`Constraint` is built once per request (``Model.constraint(...)``, or implicitly by
the ``response_format=`` / ``grammar=`` / ``regex=`` / ``tool_choice=`` keywords of
``Model.generate``, ``chat`` and friends and of ``Scheduler.submit``). Every generation that
uses it starts its own :class:`ConstraintState`, which, before each token, writes the set of
allowed tokens as a bit mask (32-bit words over the vocabulary) that the C++ sampler applies
before any other sampling step. The generation ends when the constraint is complete (the
grammar can take nothing more); stop strings and ``max_tokens`` still apply, so a truncated
answer has ``finish_reason == "length"``.

The grammar engine is `llguidance <https://github.com/guidance-ai/llguidance>`_ (MIT; the
engine behind llama.cpp's ``%llguidance`` grammars and the guidance library), installed with
``pip install "lfmrt[structured]"``. It was chosen over xgrammar (Apache-2.0) because:

- it builds its token table straight from the Hugging Face ``tokenizers`` tokenizer lfmrt
  already holds (``Tokenizer.to_str()``), where xgrammar's package requires torch,
  transformers and triton at install time (gigabytes, for a CPU runtime that needs none);
- it ships one abi3 wheel per platform for every CPython from 3.10, with no dependencies;
- it writes the mask into memory the caller owns, with the GIL released, computing it lazily
  per step (about 1 us a token at the median, 3 us on average, on LFM2's 65k vocabulary for
  a JSON schema: bench/bench_structured.py --masks-only), and checks a
  schema or grammar up front, reporting unsatisfiable schemas (``minimum > maximum``) and
  grammar errors with their position;
- one engine covers JSON schema, Lark (with inline ``%json`` and special tokens by id, which
  LFM2's tool-call markers need), llama.cpp's GBNF and regular expressions.

JSON answers are written as Python's ``json.dumps`` writes them: one line, ``", "`` between
items and ``": "`` after keys (no free whitespace, so a small model cannot loop on blank
space). A tool call's arguments are JSON literals inside LFM2's Pythonic call
(``name(key="value", n=3)``), which :mod:`lfmrt.text.tool_calls` parses; their strings avoid the
two JSON escapes Python reads differently (``\\/`` and ``\\u``), so the parsed value is the
generated one.
"""

from __future__ import annotations

import json
import re
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConstraintError
from .tool_calls import ARGUMENT_NAME, CALL_NAME, TOOL_CALL_END, TOOL_CALL_START, ToolDefinition, tool_schemas

if TYPE_CHECKING:
    from tokenizers import Tokenizer

INSTALL_HINT = 'constrained decoding needs the grammar engine llguidance: pip install "lfmrt[structured]"'

ToolChoice = Union[str, Mapping[str, Any]]

# JSON as json.dumps writes it (see the module docstring).
_JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# Tool-call argument values: also no "\/" (Python keeps the backslash) and no "\u" escapes
# (Python would keep a surrogate pair as two lone surrogates, which UTF-8 cannot encode).
_ARGUMENT_STYLE = {**_JSON_STYLE, "json_allowed_escapes": '"\\bfnrt'}
_RESPONSE_FORMAT_KEYS = {"type", "json_schema"}
_JSON_SCHEMA_KEYS = {"name", "description", "schema", "strict"}
_SCHEMA_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# Object-level keywords of a tool's parameters that per-argument constraints still honour.
_PARAMETER_KEYWORDS = {"type", "properties", "required", "additionalProperties", "$defs", "definitions",
                       "description", "title", "$schema", "$id", "strict"}


def _engine() -> Any:
    try:
        import llguidance
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return llguidance


class Constraint:
    """What a generation's answer must follow: built once (by :meth:`ConstraintCompiler.compile`,
    usually through ``Model.constraint``), then used by any number of generations, from any
    thread; each calls :meth:`start` for its own state.

    Attributes:
        description: what it enforces, for messages and logs (``"json_schema 'person'"``,
            ``"tool call (required)"``, ``"no tool call"``, ...).
        vocab_size: the vocabulary the mask covers (the model's).
    """

    def __init__(self, description: str, vocab_size: int, matcher: Any = None, banned: Sequence[int] = ()) -> None:
        self.description = description
        self.vocab_size = vocab_size
        self._matcher = matcher  # a compiled llguidance.LLMatcher at its start, or None
        words = (vocab_size + 31) // 32
        self._allowed = None
        if banned:
            bits = np.ones(words * 32, dtype=bool)
            bits[list(banned)] = False
            self._allowed = np.packbits(bits, bitorder="little").view(np.int32)

    def start(self) -> "ConstraintState":
        """A fresh state for one generation, at the start of the answer."""
        matcher = self._matcher.deep_copy() if self._matcher is not None else None
        return ConstraintState(self, matcher)

    def __repr__(self) -> str:
        return f"Constraint({self.description})"


class ConstraintState:
    """One generation's progress through a :class:`Constraint`.

    Before each token, :meth:`compute_mask` fills :attr:`mask`; after it, :meth:`advance` takes
    the token sampled. :attr:`finished` says the answer is complete. Not thread-safe: one
    generation uses it, though :meth:`compute_mask` may run on another thread while that
    generation's forward step runs (the engine releases the GIL).
    """

    def __init__(self, constraint: Constraint, matcher: Any) -> None:
        self.constraint = constraint
        self._matcher = matcher
        self.mask = np.full((constraint.vocab_size + 31) // 32, -1, dtype=np.int32)
        if constraint._allowed is not None:
            self.mask &= constraint._allowed
        self.mask_ready = matcher is None  # a ban-only mask never changes
        self._mask_address = self.mask.ctypes.data  # looked up once: ndarray.ctypes is slow

    def compute_mask(self) -> None:
        """Writes the tokens allowed next into :attr:`mask`.

        Raises:
            ConstraintError: the engine cannot go on (it hit a resource limit, say).
        """
        if self.mask_ready:
            return
        self._matcher.unsafe_compute_mask_ptr(self._mask_address, self.mask.nbytes)
        if self._matcher.is_error():
            raise ConstraintError(f"{self.constraint.description}: {self._matcher.get_error()}")
        if self.constraint._allowed is not None:
            self.mask &= self.constraint._allowed
        self.mask_ready = True

    def advance(self, token: int) -> None:
        """Takes the token sampled after the last mask.

        Raises:
            ConstraintError: the engine rejects it (only a token the mask did not allow can be).
        """
        self.mask_ready = self._matcher is None
        if self._matcher is not None and not self._matcher.consume_token(token):
            raise ConstraintError(f"{self.constraint.description}: token {token} rejected: {self._matcher.get_error()}")

    @property
    def finished(self) -> bool:
        """Whether the answer is complete: the grammar accepts it and can take nothing more."""
        return self._matcher is not None and self._matcher.is_stopped()


class ConstraintCompiler:
    """Builds :class:`Constraint` objects for one model's tokenizer.

    The engine's token table is built from the tokenizer on first use (about a second for a
    65k vocabulary) and kept; building it and compiling constraints are safe from any thread.
    """

    def __init__(self, tokenizer: Callable[[], "Tokenizer"], vocab_size: int, eos_token_ids: Sequence[int]) -> None:
        """Args:
            tokenizer: returns the model's tokenizer (raising LoadError when it has none).
            vocab_size: the model's vocabulary (the mask's width).
            eos_token_ids: tokens that end an answer; the engine allows them where the grammar
                is complete.
        """
        self._tokenizer = tokenizer
        self.vocab_size = vocab_size
        self._eos_token_ids = list(eos_token_ids)
        self._lock = threading.Lock()
        self._engine_tokenizer: Any = None

    def engine_tokenizer(self) -> Any:
        """llguidance's token table for the model (built once)."""
        with self._lock:
            if self._engine_tokenizer is None:
                llguidance = _engine()
                tokenizer = self._tokenizer()
                n_vocab = max(self.vocab_size, tokenizer.get_vocab_size(with_added_tokens=True))
                self._engine_tokenizer = llguidance.LLTokenizer(
                    tokenizer.to_str(), n_vocab=n_vocab, eos_token=self._eos_token_ids or None
                )
            return self._engine_tokenizer

    def _special_token_id(self, text: str) -> Optional[int]:
        return self._tokenizer().token_to_id(text)

    def compile(
        self,
        *,
        response_format: Optional[Mapping[str, Any]] = None,
        grammar: Union[str, Mapping[str, Any], None] = None,
        regex: Optional[str] = None,
        tools: Optional[Sequence[ToolDefinition]] = None,
        tool_choice: Optional[ToolChoice] = None,
        parallel_tool_calls: bool = True,
    ) -> Optional[Constraint]:
        """The constraint these options ask for, checked and compiled; ``None`` when they ask
        for none (no options, ``response_format={"type": "text"}``, ``tool_choice="auto"``
        without an answer format).

        Args:
            response_format: OpenAI's: ``{"type": "json_object"}`` (any JSON object),
                ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...},
                "strict": ...}}`` (JSON valid against the schema, whether or not ``strict``),
                or ``{"type": "text"}``.
            grammar: a Lark grammar in llguidance's dialect (``start: ...``, ``%json {...}``,
                special tokens as ``<|name|>`` or ``<[id]>``), a llama.cpp GBNF grammar
                (``root ::= ...``), or an llguidance grammar object (a dict).
            regex: a regular expression (Rust ``regex`` syntax) the whole answer must match.
            tools: the tools of a chat (as ``Model.chat`` takes them), for ``tool_choice``.
            tool_choice: ``"auto"`` (the model may call tools or answer), ``"none"`` (it may
                not call any: the call-start token is banned), ``"required"`` (the answer is
                one or more calls), or ``{"type": "function", "function": {"name": ...}}``
                (exactly one call of that tool). Forced calls are written in LFM2's syntax,
                ``<|tool_call_start|>[name(arg=value, ...)]<|tool_call_end|>``, with argument
                values that satisfy each tool's parameter schema. With ``"auto"`` and an
                answer format, the answer is either a tool call or an answer in that format.
                With ``"required"`` or a named tool the answer is the call, and an answer
                format has nothing left to apply to.
            parallel_tool_calls: OpenAI's: whether a constrained call block may hold more than
                one call (``"required"``, or ``"auto"`` with an answer format); with ``False``
                the block ends after its first call.

        Raises:
            ValueError: a malformed option, an invalid or unsatisfiable schema, grammar or
                regex, or a ``tool_choice`` that names no given tool; the message names the
                field (``response_format.json_schema.schema: ...``).
            ImportError: a grammar is needed and llguidance is not installed.
        """
        formats = [name for name, value in (("response_format", response_format), ("grammar", grammar), ("regex", regex)) if value is not None]
        if len(formats) > 1:
            raise ValueError(f"give at most one of response_format, grammar and regex, not {' and '.join(formats)}")
        choice = _tool_choice(tool_choice)
        answer = None
        if response_format is not None:
            answer = _response_format_grammar(response_format)
        elif grammar is not None:
            answer = _grammar_grammar(grammar)
        elif regex is not None:
            answer = _regex_grammar(regex)
        forced = choice in ("required", "function")
        # Tools are checked for the call syntax only where calls are constrained.
        schemas = _checked_tools(tools, forced or (choice == "auto" and answer is not None), choice)

        if forced:
            name = tool_choice["function"]["name"] if choice == "function" else None  # type: ignore[index]
            if name is not None and name not in {schema["name"] for schema in schemas}:
                raise ValueError(f"tool_choice.function.name: no tool named {name!r} among the tools given")
            grammars = [{"lark_grammar": self._tool_call_lark(schemas, name, top_level=True, parallel=parallel_tool_calls)}]
            return self._compiled(grammars, f"tool call ({name or 'required'})", "tools")
        banned = []
        if choice == "none":
            start = self._special_token_id(TOOL_CALL_START)
            banned = [start] if start is not None and start < self.vocab_size else []
        if answer is None:
            return Constraint("no tool call", self.vocab_size, banned=banned) if banned else None
        grammars, description, field = answer
        if choice == "auto" and schemas:
            self._compiled([{"lark_grammar": self._tool_call_lark(schemas, None, top_level=True, parallel=parallel_tool_calls)}], "", "tools")
            # Either a tool call or an answer in the format: the format's grammars, renamed, are
            # referenced from a top-level rule (llguidance's "@name" grammar references).
            grammars[0] = {**grammars[0], "name": "lfmrt_answer"}
            top = self._tool_call_lark(schemas, None, top_level=False, parallel=parallel_tool_calls) + "\nstart: tool_call | @lfmrt_answer\n"
            grammars = [{"lark_grammar": top}, *grammars]
            description = f"tool call or {description}"
        return self._compiled(grammars, description, field, banned)

    def _compiled(self, grammars: List[Dict[str, Any]], description: str, field: str, banned: Sequence[int] = ()) -> Constraint:
        llguidance = _engine()
        matcher = llguidance.LLMatcher(self.engine_tokenizer(), json.dumps({"grammars": grammars}), log_level=0)
        if matcher.is_error():
            raise ValueError(f"{field}: {matcher.get_error()}")
        return Constraint(description, self.vocab_size, matcher, banned)

    def _tool_call_lark(self, schemas: List[Dict[str, Any]], only: Optional[str], *, top_level: bool, parallel: bool) -> str:
        """Lark rules for a tool-call block in LFM2's syntax: rule ``tool_call`` (and ``start``
        when ``top_level``): ``<|tool_call_start|>[call, ...]<|tool_call_end|>`` with one call of
        ``only``, or one call of any tool, or (``parallel``) one or more."""
        ids = [self._special_token_id(marker) for marker in (TOOL_CALL_START, TOOL_CALL_END)]
        if None in ids:
            raise ValueError(f"tool_choice: the tokenizer has no {TOOL_CALL_START} / {TOOL_CALL_END} tokens")
        rules = []
        alternatives = []
        for index, schema in enumerate(schemas):
            if only is not None and schema["name"] != only:
                continue
            alternatives.append(f"tool{index}")
            rules += _call_rules(index, schema)
        if only is not None:
            calls = alternatives[0]
        else:
            calls = f"tool_call_item ({json.dumps(', ')} tool_call_item)*" if parallel else "tool_call_item"
        lines = [f"tool_call: <[{ids[0]}]> \"[\" {calls} \"]\" <[{ids[1]}]>"]
        if only is None:
            lines.append(f"tool_call_item: {' | '.join(alternatives)}")
        if top_level:
            lines.append("start: tool_call")
        return "\n".join(lines + rules)


def _call_rules(index: int, schema: Mapping[str, Any]) -> List[str]:
    """Lark rules for one call of a tool: ``name(arg=value, ...)``, the required arguments always
    present and the others optional, in the schema's order, each value a JSON literal satisfying
    the argument's schema (an inline ``%json``)."""
    name = schema["name"]
    parameters = schema.get("parameters") or {}
    properties = dict(parameters.get("properties") or {})
    required = list(parameters.get("required") or [])
    for argument in required:
        properties.setdefault(argument, {})
    definitions = {key: parameters[key] for key in ("$defs", "definitions") if key in parameters}
    arguments = []
    for argument, argument_schema in properties.items():
        if argument_schema is False:
            if argument in required:
                raise ValueError(f"tools ({name}): required argument {argument!r} has the schema false: no value satisfies it")
            continue
        body = {} if argument_schema is True else dict(argument_schema)
        arguments.append((argument, {**body, **definitions, "x-guidance": _ARGUMENT_STYLE}, argument in required))
    prefix = f"tool{index}"
    head = json.dumps(f"{name}(")
    if not arguments:
        return [f"{prefix}: {json.dumps(name + '()')}"]
    rules = [f"{prefix}: {head} {prefix}_first0 \")\""]
    n = len(arguments)
    for j, (argument, value_schema, is_required) in enumerate(arguments):
        rules.append(f"{prefix}_arg{j}: {json.dumps(argument + '=')} {prefix}_value{j}")
        rules.append(f"{prefix}_value{j}: %json {json.dumps(value_schema)}")
        rest = f" {prefix}_rest{j + 1}" if j + 1 < n else ""
        # rest_j: the arguments from j on, each after ", "; first_j: the same with no ", " before
        # the first one written. An optional argument may be skipped in either.
        item = f"{json.dumps(', ')} {prefix}_arg{j}"
        rules.append(f"{prefix}_rest{j}: {item}{rest}" if is_required else f"{prefix}_rest{j}: ({item})?{rest}")
        first = f"{prefix}_arg{j}{rest}"
        if is_required:
            rules.append(f"{prefix}_first{j}: {first}")
        elif j + 1 < n:
            rules.append(f"{prefix}_first{j}: {first} | {prefix}_first{j + 1}")
        else:
            rules.append(f"{prefix}_first{j}: ({first})?")
    return rules


def _tool_choice(tool_choice: Optional[ToolChoice]) -> Optional[str]:
    """``tool_choice`` checked: ``None``, ``"auto"``, ``"none"``, ``"required"`` or ``"function"``."""
    if tool_choice is None or tool_choice in ("auto", "none", "required"):
        return tool_choice  # type: ignore[return-value]
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        if tool_choice.get("type") == "function" and isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return "function"
    raise ValueError(
        "tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}, "
        f"got {tool_choice!r}"
    )


def _checked_tools(tools: Optional[Sequence[ToolDefinition]], constrained: bool, choice: Optional[str]) -> List[Dict[str, Any]]:
    """The tools' schemas; where calls are ``constrained``, checked to be writable in LFM2's
    call syntax."""
    schemas = tool_schemas(tools) if tools else []
    if not constrained:
        return schemas
    if choice in ("required", "function") and not schemas:
        raise ValueError(f"tool_choice={choice!r} needs tools")
    for index, schema in enumerate(schemas):
        where = f"tools[{index}] ({schema['name']})"
        if not CALL_NAME.fullmatch(schema["name"]):
            raise ValueError(f"{where}: LFM2's call syntax cannot write this name (letters, digits, '_', '-' and dots)")
        parameters = schema.get("parameters") or {}
        unsupported = sorted(set(parameters) - _PARAMETER_KEYWORDS)
        if unsupported:
            raise ValueError(f"{where}: parameters keyword(s) {', '.join(unsupported)} cannot be enforced in a constrained call")
        for argument in list(parameters.get("properties") or {}) + list(parameters.get("required") or []):
            if not isinstance(argument, str) or not ARGUMENT_NAME.fullmatch(argument):
                raise ValueError(f"{where}: LFM2's call syntax cannot write argument name {argument!r} (no spaces, quotes, brackets, ',', ':' or '=')")
    return schemas


def _response_format_grammar(response_format: Mapping[str, Any]) -> Optional[Tuple[List[Dict[str, Any]], str, str]]:
    """(llguidance grammars, description, field) for OpenAI's ``response_format``, or ``None``
    for plain text."""
    if not isinstance(response_format, Mapping):
        raise ValueError(f"response_format must be a dict such as {{'type': 'json_object'}}, got {response_format!r}")
    unknown = sorted(set(response_format) - _RESPONSE_FORMAT_KEYS)
    if unknown:
        raise ValueError(f"response_format: unknown field(s) {', '.join(map(str, unknown))}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return _json_grammar({"type": "object"}, "response_format"), "json_object", "response_format"
    if kind != "json_schema":
        raise ValueError(f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}")
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise ValueError("response_format.json_schema must be a dict with 'name' and 'schema'")
    unknown = sorted(set(spec) - _JSON_SCHEMA_KEYS)
    if unknown:
        raise ValueError(f"response_format.json_schema: unknown field(s) {', '.join(map(str, unknown))}")
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise ValueError(f"response_format.json_schema.name must be 1-64 letters, digits, '_' or '-', got {name!r}")
    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
        raise ValueError(f"response_format.json_schema.strict must be true or false, got {spec['strict']!r}")
    field = "response_format.json_schema.schema"
    return _json_grammar(spec.get("schema", {}), field), f"json_schema {name!r}", field


def check_json_schema(schema: Any, field: str) -> None:
    """Checks that ``schema`` is a JSON schema the grammar engine can follow, before any
    generation asks for it (no tokenizer needed).

    Args:
        schema: the parsed schema (a dict, or ``True`` / ``False``).
        field: where it came from, for the message (a flag and its file, a field name).

    Raises:
        ValueError: not a schema object, or a schema the engine rejects; the message starts
            with ``field``.
        ImportError: llguidance is not installed.
    """
    # Translating the schema checks its JSON only; the engine finds bad types and unsatisfiable
    # bounds when it builds the grammar, which validate_grammar does without a tokenizer.
    error = _engine().LLMatcher.validate_grammar(json.dumps({"grammars": _json_grammar(schema, field)}), None)
    if error:
        raise ValueError(f"{field}: {error}")


def _json_grammar(schema: Any, field: str) -> List[Dict[str, Any]]:
    """The engine's grammar for a JSON schema; ValueError naming ``field`` for anything that is
    not one (not an object or true / false, or JSON the engine cannot translate)."""
    if not isinstance(schema, (Mapping, bool)):
        raise ValueError(f"{field}: a JSON schema is an object (or true / false), got {type(schema).__name__}")
    llguidance = _engine()
    try:
        text = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=_JSON_STYLE)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{field}: {error}") from None
    return list(json.loads(text)["grammars"])


def _grammar_grammar(grammar: Union[str, Mapping[str, Any]]) -> Tuple[List[Dict[str, Any]], str, str]:
    if isinstance(grammar, Mapping):
        grammars = grammar.get("grammars")
        if not isinstance(grammars, list) or not grammars or not all(isinstance(g, Mapping) for g in grammars):
            raise ValueError("grammar: an llguidance grammar object is {'grammars': [{...}, ...]}")
        return [dict(g) for g in grammars], "grammar", "grammar"
    if not isinstance(grammar, str) or not grammar.strip():
        raise ValueError(f"grammar must be Lark or GBNF text (or an llguidance grammar dict), got {grammar!r}")
    llguidance = _engine()
    try:
        lark = llguidance.grammar_from("grammar", grammar)  # GBNF becomes Lark; Lark stays as it is
    except ValueError as error:
        raise ValueError(f"grammar: {error}") from None
    return [{"lark_grammar": lark}], "grammar", "grammar"


def _regex_grammar(regex: str) -> Tuple[List[Dict[str, Any]], str, str]:
    if not isinstance(regex, str) or not regex:
        raise ValueError(f"regex must be a non-empty string, got {regex!r}")
    text = _engine().LLMatcher.grammar_from_regex(regex)
    return list(json.loads(text)["grammars"]), "regex", "regex"
