"""Renders a model's own Jinja chat template the way ``transformers`` does.

The environment matches ``tokenizer.apply_chat_template``: a sandboxed, immutable Jinja
environment with ``trim_blocks`` and ``lstrip_blocks``, the loop-controls extension, a
``{% generation %}...{% endgeneration %}`` block (transformers uses it to mark assistant text; it
renders its body unchanged), the globals ``raise_exception`` and ``strftime_now``, and a
``tojson`` filter that keeps non-ASCII text. Messages, tools and extra variables are reduced to
plain JSON-like data first, ``None``-valued message keys are dropped, and a message's reasoning is
visible under ``reasoning_content``, ``thinking`` and ``reasoning`` alike, as transformers does.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment

_LFM2_TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "data" / "lfm2_chat_template.jinja"

# Names under which a message's reasoning text may arrive; the first is the standard one.
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
# The roles LFM2's templates render (each as <|im_start|>role).
CHAT_ROLES = ("system", "user", "assistant", "tool")


class TemplateError(ValueError):
    """A chat template failed to compile or render, or called ``raise_exception``."""


class GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}``: renders its body unchanged.

    transformers records where these blocks fall to build assistant-token masks for training;
    inference only needs the text, so the body passes straight through.
    """

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        """Parses the block up to ``endgeneration`` into a call of :meth:`_render_body`."""
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(
            lineno
        )

    @staticmethod
    def _render_body(caller: Any) -> str:
        """Returns the block's rendered body."""
        return caller()


class _TemplateNamespace(jinja2.utils.Namespace):
    """``namespace()`` that refuses underscore-prefixed attributes (no path to internals)."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # same signature trick as jinja's Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        """``{% set ns.name = value %}``, refused for underscore-prefixed names."""
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        """Raises SecurityError for an underscore-prefixed attribute name."""
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates may not set underscore-prefixed namespace attributes ({name!r})"
            )


def _make_dict(*args: Any, **kwargs: Any) -> Dict[Any, Any]:
    """The template's ``dict(...)``: a plain constructor, not the ``dict`` type itself."""
    return dict(*args, **kwargs)


def _raise_exception(message: str) -> None:
    """Template global: aborts rendering with the template's own message."""
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    """Template global: the local time formatted with ``fmt``."""
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: Optional[int] = None,
    separators: Optional[Sequence[str]] = None,
    sort_keys: bool = False,
) -> str:
    """Template filter: ``json.dumps`` without HTML escaping, keeping non-ASCII characters."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _plain(value: Any) -> Any:
    """Rebuilds ``value`` from plain JSON-like types, as transformers does before rendering.

    Subclasses of str/int/float become the base type, numpy scalars their Python value,
    dataclasses and pydantic models dicts; anything else becomes a ``"<TypeName>"`` placeholder
    so no rich object (with methods the sandbox does not know about) reaches the template.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.generic):  # np.bool_(False) must not become a truthy placeholder
        return _plain(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


def _prepare_message(message: Any) -> Dict[str, Any]:
    """One message as the template sees it (see the module docstring)."""
    message = _plain(message)
    if not isinstance(message, dict):
        raise TypeError(f"chat messages must be dicts, got {message!r}")
    message = {k: v for k, v in message.items() if v is not None}
    reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
    if reasoning is not None:
        message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
    return message


def check_conversation(messages: Any) -> None:
    """Checks that ``messages`` is a conversation LFM2 can read, before any template sees it:
    a list of dicts, each with a known ``role`` and a ``content`` (an assistant turn may carry
    ``tool_calls`` instead). :class:`ChatTemplate` itself renders whatever it is given, as
    transformers does; this is the chat API's stricter check.

    Raises:
        TypeError: ``messages`` is a string or not a list, a message is not a dict, or a
            content is neither text nor a list of parts.
        ValueError: an unknown or missing role, or a message without content (naming its index).
    """
    if isinstance(messages, (str, bytes)):
        raise TypeError(
            "messages must be a list of {'role': ..., 'content': ...} dicts, not a string "
            "(for plain text, use generate())"
        )
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of message dicts, got {type(messages).__name__}")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"message {index} must be a dict with 'role' and 'content', got {type(message).__name__}")
        role = message.get("role")
        if role not in CHAT_ROLES:
            problem = "has no 'role'" if role is None else f"has role {role!r}"
            raise ValueError(f"message {index} {problem}; LFM2's roles are {', '.join(CHAT_ROLES)}")
        content = message.get("content")
        if content is None:
            if role == "assistant" and message.get("tool_calls"):
                continue
            raise ValueError(f"message {index} ({role}) has no 'content'")
        if not isinstance(content, (str, list, tuple)):
            raise TypeError(f"message {index} ({role}): 'content' must be text, got {type(content).__name__}")


def _environment() -> ImmutableSandboxedEnvironment:
    """A fresh environment configured like transformers' chat-template environment."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[GenerationBlock, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _make_dict
    env.globals["namespace"] = _TemplateNamespace
    return env


class ChatTemplate:
    """A compiled chat template plus the special-token texts it refers to.

    Args:
        source: the Jinja template text (from ``chat_template.jinja``, ``tokenizer_config.json``
            or GGUF ``tokenizer.chat_template``).
        bos_token: the text of the beginning-of-sequence token (``bos_token`` in the template).
        eos_token: the text of the end-of-sequence token (``eos_token`` in the template).

    Raises:
        TemplateError: the source is not valid Jinja (the message gives the line), nests too
            deeply for jinja2's parser, or fails to compile in any other way.
    """

    def __init__(self, source: str, bos_token: str, eos_token: str) -> None:
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = _environment().from_string(source)
        except jinja2.exceptions.TemplateSyntaxError as exc:
            raise TemplateError(f"chat template line {exc.lineno}: {exc.message}") from exc
        except RecursionError as exc:  # jinja2's parser recurses once per level of nesting
            raise TemplateError("chat template nests too deeply to compile (brackets, blocks or operators "
                                f"hundreds of levels deep): {exc}") from exc
        except Exception as exc:  # e.g. jinja2 writing Python that Python rejects (SyntaxError)
            raise TemplateError(f"chat template does not compile: {type(exc).__name__}: {exc}") from exc

    def render(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        **extra: Any,
    ) -> str:
        """Renders a conversation to the prompt text the model expects.

        Args:
            messages: ``{"role": ..., "content": ...}`` dicts (plus ``tool_calls``,
                ``reasoning_content``, ... where the template reads them).
            add_generation_prompt: end with the header that opens an assistant turn.
            tools: JSON-schema tool definitions, or ``None``.
            **extra: further template variables (e.g. ``keep_past_thinking``); they override
                ``bos_token``/``eos_token`` when they share a name.

        Raises:
            ValueError: the conversation is empty.
            TypeError: a message or tool is not a dict.
            TemplateError: the template called ``raise_exception`` or failed while rendering
                (e.g. it concatenates a string with list content it did not expect).
        """
        prepared: List[Dict[str, Any]] = [_prepare_message(m) for m in messages]
        if not prepared:
            raise ValueError("cannot render an empty conversation")
        tool_list = None
        if tools is not None:
            tool_list = [_plain(t) for t in tools]
            for tool in tool_list:
                if not isinstance(tool, dict):
                    raise TypeError(f"tools must be JSON-schema dicts, got {tool!r}")
        variables: Dict[str, Any] = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "documents": None,
            **_plain(extra),
        }
        try:
            return self._template.render(
                messages=prepared,
                tools=tool_list,
                add_generation_prompt=add_generation_prompt,
                **variables,
            )
        except TemplateError:
            raise
        except Exception as exc:  # a template is code: any failure in it is a template error
            raise TemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from exc


def lfm2_default_template() -> str:
    """The original LFM2 chat template (tools in ``<|tool_list_start|>[...]<|tool_list_end|>``,
    tool results in ``<|tool_response_start|>...<|tool_response_end|>``), for checkpoints that
    ship without one. A checkpoint's own template always takes precedence."""
    return _LFM2_TEMPLATE_PATH.read_text(encoding="utf-8")
