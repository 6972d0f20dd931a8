"""Tool calling: tool definitions in, structured calls out.

LFM2 reads its tools as a JSON list in the system turn (the template puts them between
``<|tool_list_start|>`` and ``<|tool_list_end|>``, or after ``List of tools:`` in LFM2.5) and
answers a call in Pythonic form between two special tokens::

    <|tool_call_start|>[get_weather(city="Paris", days=3), other(x={"a": 1})]<|tool_call_end|>

:func:`tool_schemas` turns what a user passes (OpenAI-style definitions, bare
``{"name", "description", "parameters"}`` dicts, or plain Python functions) into the bare
JSON-schema dicts LFM2's model cards show. :func:`parse_tool_calls` reads the model's calls with
:mod:`ast`, never ``eval``: only keyword arguments whose values are JSON-like literals
(strings in either quote, finite numbers, lists, dicts, ``True``/``true``, ``False``/``false``,
``None``/``null``) are accepted. It is as lenient as vLLM's and SGLang's LFM2 parsers where
LFM2's real output needs it (raw newlines in strings, leading zeros, keyword-named arguments,
a block left open, the echo of a call after its block) and strict per call: a malformed call is
left out with its reason, its well-formed siblings are kept.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import inspect
import json
import keyword
import math
import re
import secrets
import sys
import typing
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..generation.completion import Completion

TOOL_CALL_START = "<|tool_call_start|>"
TOOL_CALL_END = "<|tool_call_end|>"

ToolDefinition = Union[Mapping[str, Any], Callable[..., Any]]

_JSON_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_SIMPLE_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


class ToolCallError(ValueError):
    """The model's tool-call text is not a list of keyword calls with literal arguments."""


# --------------------------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------------------------


def tool_schemas(tools: Sequence[ToolDefinition]) -> List[Dict[str, Any]]:
    """The tools as LFM2's template expects them: ``{"name", "description", "parameters"}``.

    Args:
        tools: each one of
            - an OpenAI-style definition ``{"type": "function", "function": {...}}`` (unwrapped),
            - a bare definition with at least a ``"name"`` (passed through),
            - a Python function (see :func:`function_schema`).

    Raises:
        TypeError: a tool is none of these.
        ValueError: a definition has no name or its ``parameters`` is not a JSON-schema object,
            or a function cannot be described.
    """
    schemas = []
    for tool in tools:
        if callable(tool) and not isinstance(tool, Mapping):
            schemas.append(function_schema(tool))
            continue
        if not isinstance(tool, Mapping):
            raise TypeError(f"a tool must be a JSON-schema dict or a Python function, got {tool!r}")
        if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
            tool = tool["function"]
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise ValueError(f"tool definition without a name: {dict(tool)!r}")
        parameters = tool.get("parameters")
        if parameters is not None and not (
            isinstance(parameters, Mapping) and parameters.get("type", "object") == "object"
        ):
            raise ValueError(
                f"tool {tool['name']!r}: 'parameters' must be a JSON-schema object "
                f"({{\"type\": \"object\", \"properties\": {{...}}}}), got {parameters!r}"
            )
        schemas.append(dict(tool))
    return schemas


def _type_schema(hint: Any, where: str) -> Dict[str, Any]:
    """The JSON schema of a type hint (str, int, float, bool, None, list/List[X],
    dict/Dict[str, X], tuple, Optional/Union, Literal)."""
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    if hint in _SIMPLE_TYPES:
        return {"type": _SIMPLE_TYPES[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (list, tuple, set) or origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        schema: Dict[str, Any] = {"type": "array"}
        if args and origin is not tuple:
            schema["items"] = _type_schema(args[0], where)
        return schema
    if hint is dict or origin in (dict, collections.abc.Mapping):
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = _type_schema(args[1], where)
        return schema
    if origin is Union or type(hint).__name__ == "UnionType":  # Optional[X], X | None
        options = [_type_schema(a, where) for a in args if a is not type(None)]
        if len(options) == 1:
            return options[0]
        if all(set(o) == {"type"} and isinstance(o["type"], str) for o in options):
            return {"type": [o["type"] for o in options]}
        return {"anyOf": options}
    if origin is typing.Literal:
        return {"enum": list(args)}
    raise ValueError(f"{where}: cannot describe type {hint!r} in JSON schema")


def _docstring_parts(doc: str) -> Tuple[str, Dict[str, str]]:
    """(description, {argument: description}) from a Google-style docstring: the text before the
    first ``Section:`` line, and the ``Args:`` section's ``name (type): text`` or ``name: text``
    entries (lines indented deeper than an entry continue it)."""
    description: List[str] = []
    arguments: Dict[str, str] = {}
    section: Optional[str] = None
    current: Optional[str] = None
    entry_indent = 0
    for line in inspect.cleandoc(doc).splitlines():
        indent = len(line) - len(line.lstrip())
        header = re.fullmatch(r"(\w[\w ]*):\s*", line)
        if header and indent == 0:
            section, current = header.group(1).lower(), None
        elif section is None:
            description.append(line)
        elif section in ("args", "arguments", "parameters") and line.strip():
            entry = re.fullmatch(r"\s+\*{0,2}(\w+)(?:\s*\([^)]*\))?\s*:\s*(.*)", line)
            if entry and (current is None or indent <= entry_indent):
                current, entry_indent = entry.group(1), indent
                arguments[current] = entry.group(2).strip()
            elif current is not None:
                arguments[current] = f"{arguments[current]} {line.strip()}".strip()
    return " ".join(" ".join(description).split()), arguments


def function_schema(function: Callable[..., Any]) -> Dict[str, Any]:
    """A tool definition for a Python function, from its signature, type hints and docstring.

    The description is the docstring's text before its first section; each parameter's
    description comes from a Google-style ``Args:`` section. Parameters without a default are
    required; ``Optional[X]`` is described as ``X``.

    Example::

        def get_weather(city: str, days: int = 1) -> dict:
            '''Get the weather forecast for a city.

            Args:
                city: the city's name.
                days: how many days to forecast.
            '''

    Raises:
        ValueError: the function takes ``*args``/``**kwargs`` or positional-only parameters
            (a model's call names every argument), or has a hint JSON schema cannot express.
    """
    name = getattr(function, "__name__", None)
    if not name or name == "<lambda>":
        raise ValueError(f"{function!r}: a tool function needs a name")
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = {}
    description, argument_docs = _docstring_parts(inspect.getdoc(function) or "")
    properties: Dict[str, Any] = {}
    required: List[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            raise ValueError(f"{name}: tool functions take named parameters only ({parameter})")
        hint = hints.get(parameter.name, parameter.annotation)
        schema = _type_schema(hint, f"{name}({parameter.name})")
        if parameter.name in argument_docs:
            schema["description"] = argument_docs[parameter.name]
        properties[parameter.name] = schema
        if parameter.default is inspect.Parameter.empty:
            required.append(parameter.name)
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required},
    }


# --------------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------------

Call = Tuple[str, Dict[str, Any]]

# A tool's name and its arguments' names may be what Python cannot parse as a call, though a tool
# list allows them and LFM2 writes them as listed: a keyword (``import(path="a")``,
# ``memory_get(from=1)``), or a hyphen (``read-file(path="a")``, ``f(user-id=7)``, as OpenAI's
# ``^[a-zA-Z0-9_-]+$`` and MCP tool names have). Such a name is written as an identifier made of
# this prefix and its UTF-8 bytes in hex, so that ``ast`` reads the call, and read back from it.
_NAME_PREFIX = "__lfmrt_name_"
_ENCODED_NAME = re.compile(_NAME_PREFIX + r"((?:[0-9a-f]{2})+)")
# A call's name: dotted parts of letters, digits, ``_`` and ``-``, each starting with no ``-``,
# right before its ``(``.
CALL_NAME = re.compile(r"\w[\w-]*(?:\.\w[\w-]*)*")
_CALL_NAME_AT = re.compile(r"(?<![\w.-])(" + CALL_NAME.pattern + r")(?=\s*\()")
# An argument's name: no space, quote, bracket, comma, colon or ``=``, right after ``(`` or ``,``.
ARGUMENT_NAME = re.compile(r"[^\s=(),\[\]{}'\":]+")
_ARGUMENT_NAME_AT = re.compile(r"([(,]\s*)(" + ARGUMENT_NAME.pattern + r")(\s*=)(?!=)")
# A decimal integer with leading zeros (``month=07``), which Python refuses.
_LEADING_ZEROS = re.compile(r"(?<![\w.])0+(\d+)(?![\w.])")
_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x00": "\\x00"}


class BigNumber(str):
    """A number Python cannot hold as written, kept as the model wrote it: one too large for a
    float (``1e999``), or an integer longer than Python's int-string limit (4300 digits).

    JSON puts no bound on a number, and a constrained call's grammar lets such a number through,
    but a Python float would turn it into Infinity, which JSON cannot write, and ``ast`` and
    ``json`` refuse such an integer. A call's arguments hold it as this ``str`` subclass and its
    ``arguments`` JSON text writes it unquoted, as written (``{"factor": 1e999}``), so a call the
    grammar accepted is never dropped.
    """


def _json_number(text: str) -> Union[float, BigNumber]:
    """json.loads' ``parse_float``: the float, or the number's text when a float would overflow."""
    value = float(text)
    return value if math.isfinite(value) else BigNumber(text)


def _json_integer(text: str) -> Union[int, BigNumber]:
    """json.loads' ``parse_int``: the int, or the number's text when it is longer than Python's
    int-string limit."""
    try:
        return int(text)
    except ValueError:
        return BigNumber(text)


def _json_loads(text: str) -> Any:
    """``text`` as JSON, numbers Python cannot hold as written as :class:`BigNumber`; ``Infinity``
    and ``NaN`` come back as floats (:func:`_json_problem` finds them)."""
    return json.loads(text, parse_float=_json_number, parse_int=_json_integer)


def _huge_integers_quoted(code: str, mark: str) -> str:
    """``code`` (text outside strings) with each integer literal longer than Python's int-string
    limit, which ``ast`` refuses, written as a string of ``mark`` and its digits, which
    :func:`_with_big_numbers` turns back into a :class:`BigNumber`."""
    limit = sys.get_int_max_str_digits()
    if not limit:
        return code
    return re.sub(rf"(?<![\w.])\d{{{limit + 1},}}(?![\w.])", lambda match: f"'{mark}{match.group(0)}'", code)


def _with_big_numbers(tree: ast.expr, source: str, mark: str) -> ast.expr:
    """``tree`` with each number literal Python cannot hold as written as a :class:`BigNumber`:
    one that overflows a float (a ``Constant`` of infinity, as ``ast`` reads ``1e999``) holding
    its text from ``source``, and a huge integer that :func:`_huge_integers_quoted` wrote as a
    string of ``mark`` and its digits."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, float) and math.isinf(node.value):
            node.value = BigNumber(ast.get_source_segment(source, node) or repr(node.value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(mark):
            node.value = BigNumber(node.value[len(mark) :])
    return tree


def _arguments_json(arguments: Mapping[str, Any]) -> str:
    """A call's arguments as the JSON text of OpenAI's ``arguments``; a :class:`BigNumber` is
    written as the number it is, not as a string."""
    numbers: List[str] = []
    mark = f"lfmrt-number-{secrets.token_hex(8)}-"  # a model cannot have written it in a string

    def marked(value: Any) -> Any:
        if isinstance(value, BigNumber):
            numbers.append(value)
            return f"{mark}{len(numbers) - 1}"
        if isinstance(value, Mapping):
            return {k: marked(v) for k, v in value.items()}
        if isinstance(value, list):
            return [marked(v) for v in value]
        return value

    text = json.dumps(marked(arguments), ensure_ascii=False)
    if not numbers:
        return text
    return re.sub(f'"{re.escape(mark)}([0-9]+)"', lambda match: numbers[int(match.group(1))], text)


@dataclass(frozen=True)
class ParsedToolCalls:
    """What :func:`parse_tool_calls` found in an answer.

    Attributes:
        content: the text outside the tool-call blocks (stripped, stray end markers and the
            echo of a call after its block dropped); the whole text when no call could be parsed.
        tool_calls: OpenAI-style calls (``{"id", "type": "function", "function": {"name",
            "arguments"}}`` with ``arguments`` a JSON string), or ``None`` when there are none.
        error: why a call or a whole block could not be parsed (each reason naming the call),
            or ``None``; the calls that could be parsed are in ``tool_calls`` all the same.
    """

    content: str
    tool_calls: Optional[List[Dict[str, Any]]]
    error: Optional[str]


def _identifier(name: str) -> bool:
    """Whether Python's call syntax takes ``name`` as it is (ASCII: Python would read other
    letters NFKC-normalized)."""
    return name.isascii() and name.isidentifier() and not keyword.iskeyword(name)


def _name_encoded(name: str, dotted: bool) -> str:
    """``name`` (a call's, whose parts may be ``dotted``, or an argument's) if Python takes it,
    else the identifier :data:`_NAME_PREFIX` writes it as (also for a name holding the prefix, so
    that every encoded name the parser meets is one it wrote)."""
    if _NAME_PREFIX not in name and all(map(_identifier, name.split(".") if dotted else [name])):
        return name
    return _NAME_PREFIX + name.encode().hex()


def _names_decoded(text: str) -> str:
    """``text`` with each name :func:`_name_encoded` wrote back as it was (what only looks like
    one, not being UTF-8, stays)."""

    def decoded(match: "re.Match[str]") -> str:
        try:
            return bytes.fromhex(match.group(1)).decode()
        except UnicodeDecodeError:
            return match.group(0)

    return _ENCODED_NAME.sub(decoded, text)


def _source(node: ast.AST) -> str:
    """A node as the model wrote it, near enough for an error message."""
    return _names_decoded(ast.unparse(node))


def _names_encoded(text: str) -> str:
    """``text`` (outside strings) with each call's and argument's name that Python cannot take
    written as an identifier (see :data:`_NAME_PREFIX`)."""
    pieces = []
    for inside, piece in _string_spans(text):
        if not inside:
            piece = _CALL_NAME_AT.sub(lambda match: _name_encoded(match.group(1), dotted=True), piece)
            piece = _ARGUMENT_NAME_AT.sub(
                lambda match: match.group(1) + _name_encoded(match.group(2), dotted=False) + match.group(3), piece
            )
        pieces.append(piece)
    return "".join(pieces)


def _literal(node: ast.AST) -> Any:
    """A Python/JSON literal's value; raises ToolCallError for anything else (names other than
    true/false/null, calls, operators, f-strings, ...). A number too large for a float is a
    :class:`BigNumber` (see :func:`_with_big_numbers`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, BigNumber) and not value.startswith("-"):
            return BigNumber("-" + value) if isinstance(node.op, ast.USub) else value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(element) for element in node.elts]
    if isinstance(node, ast.Dict):
        result = {}
        for key, value in zip(node.keys, node.values):
            if key is None:
                raise ToolCallError("'**' inside a dict is not a literal")
            k = _literal(key)
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise ToolCallError(f"dict key {_source(key)!r} is not a literal")
            result[k] = _literal(value)
        return result
    raise ToolCallError(f"{_source(node)!r} is not a literal value")


def _call_name(node: ast.AST) -> str:
    """``f`` or a dotted ``a.b.f`` as text."""
    if isinstance(node, ast.Name):
        return _names_decoded(node.id)
    if isinstance(node, ast.Attribute):
        return f"{_call_name(node.value)}.{node.attr}"
    raise ToolCallError(f"{_source(node)!r} is not a function name")


def _call(node: ast.AST) -> Call:
    """(name, arguments) of one call node; ToolCallError says why it is not a tool call."""
    if not isinstance(node, ast.Call):
        raise ToolCallError(f"{_source(node)!r} is not a function call")
    name = _call_name(node.func)
    if node.args:
        raise ToolCallError(f"{name}: positional arguments are not supported (name each argument)")
    arguments: Dict[str, Any] = {}
    for argument in node.keywords:
        if argument.arg is None:
            raise ToolCallError(f"{name}: '**' arguments are not supported")
        key = _names_decoded(argument.arg)
        try:
            arguments[key] = _literal(argument.value)
        except ToolCallError as error:
            raise ToolCallError(f"{name}: argument {key!r}: {error}") from None
    return name, arguments


def _json_problem(value: Any) -> Optional[str]:
    """Why a value json.loads gave is no JSON value lfmrt passes on (``Infinity``, ``NaN``), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        written = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return f"{written} is not a JSON number"
    if isinstance(value, dict):
        return next((p for p in map(_json_problem, value.values()) if p), None)
    if isinstance(value, list):
        return next((p for p in map(_json_problem, value) if p), None)
    return None


def _calls_from_json(body: str) -> Optional[Tuple[List[Call], List[str]]]:
    """Calls written as JSON (``[{"name": ..., "arguments": {...}}]``), which LFM2 writes when a
    system prompt asks for JSON: (calls, reasons for the items that are not calls); ``None`` if
    the body is not JSON at all."""
    try:
        value = _json_loads(body)
    except (ValueError, RecursionError):
        return None
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    calls: List[Call] = []
    errors: List[str] = []
    for index, item in enumerate(items, start=1):
        prefix = f"call {index}: " if len(items) > 1 else ""
        arguments = item.get("arguments", item.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = _json_loads(arguments)
            except (ValueError, RecursionError):
                arguments = None
        if not isinstance(item.get("name"), str) or not isinstance(arguments, dict):
            errors.append(f"{prefix}not {{\"name\": ..., \"arguments\": {{...}}}}")
            continue
        problem = _json_problem(arguments)
        if problem:
            errors.append(f"{prefix}{item['name']}: {problem}")
            continue
        calls.append((item["name"], arguments))
    return calls, errors


def _string_spans(text: str) -> List[Tuple[bool, str]]:
    """``text`` cut into (inside a quoted string, piece) spans, quotes belonging to the string;
    an unterminated string runs to the end."""
    spans: List[Tuple[bool, str]] = []
    start, index, quote = 0, 0, None
    while index < len(text):
        char = text[index]
        if quote is None and char in "'\"":
            spans.append((False, text[start:index]))
            start, quote = index, char
        elif quote is not None and char == "\\":
            index += 1
        elif char == quote:
            spans.append((True, text[start : index + 1]))
            start, quote = index + 1, None
        index += 1
    spans.append((quote is not None, text[start:]))
    return [span for span in spans if span[1]]


def _repaired(text: str, mark: str) -> str:
    """``text`` with what LFM2 writes but Python refuses made valid, the values unchanged: raw
    newlines, tabs and NULs inside strings escaped (multi-line shell commands), leading zeros
    dropped from integers, and integers too long for Python quoted with ``mark`` (see
    :func:`_huge_integers_quoted`)."""
    pieces = []
    for inside, piece in _string_spans(text):
        if inside:
            pieces.append("".join(_CONTROL_ESCAPES.get(char, char) for char in piece))
        else:
            piece = _LEADING_ZEROS.sub(r"\1", piece)
            pieces.append(_huge_integers_quoted(piece, mark))
    return "".join(pieces)


def _parse(text: str) -> ast.expr:
    """The expression ``text`` holds, as written or else repaired; ToolCallError otherwise."""
    with warnings.catch_warnings():  # odd escapes in model output are not the user's concern
        warnings.simplefilter("ignore")
        mark = f"lfmrt-integer-{secrets.token_hex(8)}-"  # a model cannot have written it in a string
        text = _names_encoded(text)
        try:
            return _with_big_numbers(ast.parse(text, mode="eval").body, text, mark)
        except (SyntaxError, ValueError):
            pass
        repaired = _repaired(text, mark)
        try:
            return _with_big_numbers(ast.parse(repaired, mode="eval").body, repaired, mark)
        except SyntaxError as error:
            raise ToolCallError(f"not a Python call list: {error.msg} at column {error.offset}") from None
        except ValueError as error:
            raise ToolCallError(f"not a Python call list: {error}") from None


def _top_level_calls(body: str, respect_strings: bool) -> List[str]:
    """The comma-separated items of ``[a(...), b(...)]`` at bracket depth 0: the calls of a list
    that does not parse as a whole, to parse one by one. Respecting strings keeps commas and
    brackets inside them apart; counting brackets alone survives a broken quote (which would
    otherwise swallow the calls after it)."""
    body = body.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    items, current, depth = [], [], 0
    for inside, piece in _string_spans(body) if respect_strings else [(False, body)]:
        if inside:
            current.append(piece)
            continue
        for char in piece:
            if char == "," and depth == 0:
                items.append("".join(current))
                current = []
                continue
            depth += (char in "([{") - (char in ")]}")
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _parse_each(items: Sequence[str]) -> List[Any]:
    """Each item parsed alone: its expression, or the ToolCallError saying why it does not parse."""
    nodes: List[Any] = []
    for item in items:
        try:
            nodes.append(_parse(item))
        except (ToolCallError, RecursionError) as error:
            nodes.append(ToolCallError(str(error) or "nested too deeply"))
    return nodes


def _n_calls(nodes: Sequence[Any]) -> int:
    return sum(isinstance(node, ast.Call) for node in nodes)


def parse_call_list(body: str) -> Tuple[List[Call], List[str]]:
    """The calls in the text of one tool-call block, and why any other item is not one.

    Accepts ``[f(a=1), g(b="x")]``, a single call without brackets, and the JSON form
    ``[{"name": "f", "arguments": {"a": 1}}]``; strings may hold raw newlines, integers leading
    zeros, argument names may be Python keywords. A call that is not a list of keyword arguments
    with literal values is left out with its reason, and its well-formed siblings are kept, even
    when the list as a whole does not parse (each item is then parsed alone).

    Returns:
        ``([(name, arguments), ...], [reason, ...])``; each reason names its call. A number
        too large for a float is a :class:`BigNumber` in ``arguments``.
    """
    body = body.strip()
    if not body:
        return [], ["empty tool-call block"]
    from_json = _calls_from_json(body)
    if from_json is not None:
        return from_json
    try:
        tree = _parse(body)
        nodes: List[Any] = list(tree.elts) if isinstance(tree, (ast.List, ast.Tuple)) else [tree]
    except ToolCallError as whole:
        nodes = max((_parse_each(_top_level_calls(body, respect)) for respect in (True, False)), key=_n_calls)
        if len(nodes) < 2:
            return [], [str(whole)]
    except RecursionError:
        return [], ["the tool-call block is nested too deeply"]
    if not nodes:
        return [], ["no call in the tool-call block"]
    calls: List[Call] = []
    errors: List[str] = []
    for index, node in enumerate(nodes, start=1):
        prefix = f"call {index}: " if len(nodes) > 1 else ""
        try:
            if isinstance(node, ToolCallError):
                raise node
            calls.append(_call(node))
        except ToolCallError as error:
            errors.append(f"{prefix}{error}")
        except RecursionError:
            errors.append(f"{prefix}nested too deeply")
    return calls, errors


def _blocks(text: str) -> Tuple[List[str], List[Tuple[str, bool]]]:
    """(the text outside tool-call blocks, piece by piece; each block's body and whether it was
    closed). A block left open runs to the end of the text. The echo of a call that LFM2 may
    write after a block, up to a second end marker, is dropped, and so are stray end markers."""
    outside: List[str] = []
    bodies: List[Tuple[str, bool]] = []
    position = 0
    while True:
        start = text.find(TOOL_CALL_START, position)
        piece = text[position:] if start < 0 else text[position:start]
        if TOOL_CALL_END in piece:
            piece = piece[piece.rfind(TOOL_CALL_END) + len(TOOL_CALL_END) :] if bodies else piece.replace(TOOL_CALL_END, "")
        outside.append(piece)
        if start < 0:
            return outside, bodies
        end = text.find(TOOL_CALL_END, start)
        if end < 0:
            bodies.append((text[start + len(TOOL_CALL_START) :], False))
            return outside, bodies
        bodies.append((text[start + len(TOOL_CALL_START) : end], True))
        position = end + len(TOOL_CALL_END)


def parse_tool_calls(text: str) -> ParsedToolCalls:
    """Finds and parses the tool calls in a model's answer; never raises on bad model output.

    Every ``<|tool_call_start|>...<|tool_call_end|>`` block is parsed (one left open at the end
    too); the calls of all blocks are returned in order, with ids ``call_0``, ``call_1``, ...
    The text around the blocks is the content. A call that cannot be parsed is left out and its
    reason put in ``error``; when no call can be parsed, the content is the whole text.
    """
    if TOOL_CALL_START not in text and TOOL_CALL_END not in text:
        return ParsedToolCalls(content=text, tool_calls=None, error=None)
    outside, bodies = _blocks(text)
    calls: List[Call] = []
    errors: List[str] = []
    for number, (body, closed) in enumerate(bodies, start=1):
        found, problems = parse_call_list(body)
        if not closed and not found:
            problems = [f"{TOOL_CALL_START} without {TOOL_CALL_END}, and {'; '.join(problems)}"]
        prefix = f"block {number}, " if len(bodies) > 1 else ""
        calls += found
        errors += [prefix + problem for problem in problems]
    error = "; ".join(errors) or None
    if not calls:
        if bodies:
            return ParsedToolCalls(content=text, tool_calls=None, error=error)
        return ParsedToolCalls(content="".join(outside).strip(), tool_calls=None, error=None)  # stray end markers only
    tool_calls = [
        {
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": name, "arguments": _arguments_json(arguments)},
        }
        for index, (name, arguments) in enumerate(calls)
    ]
    content = " ".join(piece.strip() for piece in outside if piece.strip())
    return ParsedToolCalls(content=content, tool_calls=tool_calls, error=error)


def with_tool_calls(completion: Completion, *, parallel: bool = True) -> Completion:
    """``completion`` with its tool calls parsed into ``tool_calls`` (only the first unless
    ``parallel``), its ``content`` the text around them, and the reasons for any call that could
    not be parsed in ``tool_parse_error``; unchanged when its text holds no tool-call marker."""
    parsed = parse_tool_calls(completion.text)
    if parsed.tool_calls is None and parsed.error is None and parsed.content == completion.text:
        return completion
    return dataclasses.replace(
        completion,
        tool_calls=parsed.tool_calls if parallel or parsed.tool_calls is None else parsed.tool_calls[:1],
        tool_parse_error=parsed.error,
        content=parsed.content,
    )


def _python_literal(value: Any) -> str:
    """``value`` as Python source (strings in double quotes as JSON writes them, so the model
    sees the form it was trained on)."""
    if isinstance(value, BigNumber):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_python_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_python_literal(k)}: {_python_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"tool-call argument {value!r} is not JSON-like")


def format_tool_calls(tool_calls: Sequence[Mapping[str, Any]]) -> str:
    """OpenAI-style calls written back in LFM2's form:
    ``<|tool_call_start|>[name(arg=value, ...)]<|tool_call_end|>``."""
    calls = []
    for call in tool_calls:
        function = call.get("function", call)
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            arguments = _json_loads(arguments) if arguments.strip() else {}
        rendered = ", ".join(f"{key}={_python_literal(value)}" for key, value in arguments.items())
        calls.append(f"{function['name']}({rendered})")
    return f"{TOOL_CALL_START}[{', '.join(calls)}]{TOOL_CALL_END}"


def messages_for_template(messages: Sequence[Mapping[str, Any]], template_source: str) -> List[Mapping[str, Any]]:
    """Makes OpenAI-style assistant messages render with a template that ignores ``tool_calls``.

    LFM2's templates render an assistant turn's ``content`` only, so a message that carries its
    calls in ``tool_calls`` (as OpenAI clients build them) would lose them. For such templates the
    calls are written into the content in LFM2's own form, unless the content already holds a
    tool-call block. Templates that read ``tool_calls`` get the messages unchanged.
    """
    if "tool_calls" in template_source:
        return list(messages)
    result: List[Mapping[str, Any]] = []
    for message in messages:
        calls = message.get("tool_calls") if isinstance(message, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if calls and (not isinstance(content, str) or TOOL_CALL_START not in content):
            text = content if isinstance(content, str) else ""
            message = {**message, "content": text + format_tool_calls(calls)}
            message.pop("tool_calls")
        result.append(message)
    return result
