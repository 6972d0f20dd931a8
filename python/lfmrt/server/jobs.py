"""OpenAI request bodies turned into engine :class:`~lfmrt.server.engine.Job` objects.

Everything a client can get wrong is checked here, before the request queues, and answered
as a 400 naming the field: the model name, an ``n`` beyond the queue, messages the template
cannot render, a prompt longer than the limit, a ``max_tokens`` the context cannot hold, stop
strings, logit bias token ids, and schemas or tool choices the grammar engine refuses.
Rendering the chat template and tokenizing run here too, off the engine thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..model import Model
from .config import ServerConfig
from .engine import Job
from .errors import APIError
from .protocol import (
    MAX_STOP_STRINGS,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    NamedToolChoice,
    ResponseFormatText,
    UNSUPPORTED_CHAT_FIELDS,
    TextPart,
    _Sampling,
)

# Template variables the server sets itself, which chat_template_kwargs may not override.
_RESERVED_TEMPLATE_VARIABLES = ("messages", "tools", "add_generation_prompt")

_SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "frequency_penalty",
                    "presence_penalty", "seed")


@dataclass(frozen=True)
class ChatJob:
    """A chat request ready to run (one job per choice), with what formatting its answer needs."""

    jobs: List[Job]
    parse_tools: bool
    parallel_tool_calls: bool


@dataclass(frozen=True)
class CompletionJob:
    """A completions request ready to run (one job per choice)."""

    jobs: List[Job]
    echo: str


def _choice_jobs(job: Job, n: int) -> List[Job]:
    """``job`` once per choice. With a seed, choice i samples with seed + i (modulo 2**64), so the
    choices differ, choice 0 is the answer of n=1 and a seeded request repeats; without one, each
    choice draws its own."""
    seed = job.sampling.get("seed")
    if seed is None:
        return [job] * n
    return [replace(job, sampling={**job.sampling, "seed": (seed + index) % 2**64}) for index in range(n)]


def check_model(config: ServerConfig, name: Optional[str]) -> None:
    """404 unless ``name`` (when given) is the served model."""
    if name is not None and name != config.model_name:
        raise APIError(404, f"The model {name!r} does not exist; this server serves {config.model_name!r}",
                       param="model", code="model_not_found")


def _check_common(config: ServerConfig, body: _Sampling) -> None:
    check_model(config, body.model)
    if body.n is not None and body.n > config.max_queue:
        raise APIError(400, f"n: at most {config.max_queue} choices on this server (its queue), got {body.n}",
                       param="n", code="invalid_value")
    if body.stream_options is not None and not body.stream:
        raise APIError(400, "stream_options: only allowed with stream=true", param="stream_options")


def _stop(stop: Any) -> List[str]:
    stops = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > MAX_STOP_STRINGS:
        raise APIError(400, f"stop: at most {MAX_STOP_STRINGS} stop strings, got {len(stops)}", param="stop")
    if not all(stops):
        raise APIError(400, "stop: stop strings must not be empty", param="stop")
    return stops


def _sampling(model: Model, body: _Sampling) -> Dict[str, Any]:
    """The sampling keywords the request sets; unset ones stay the model's defaults."""
    sampling: Dict[str, Any] = {name: getattr(body, name) for name in _SAMPLING_FIELDS if getattr(body, name) is not None}
    if body.logit_bias:
        vocab = model.config.vocab_size
        bias: Dict[int, float] = {}
        for key, value in body.logit_bias.items():
            try:
                token = int(key)
            except ValueError:
                raise APIError(400, f"logit_bias: keys are token ids, got {key!r}", param="logit_bias") from None
            if not 0 <= token < vocab:
                raise APIError(400, f"logit_bias: token id {token} is outside the vocabulary [0, {vocab})",
                               param="logit_bias")
            if not -100 <= value <= 100:
                raise APIError(400, f"logit_bias: the bias of token {token} must be in [-100, 100], got {value}",
                               param="logit_bias")
            bias[token] = float(value)
        sampling["logit_bias"] = bias
    return sampling


def _max_tokens(model: Model, config: ServerConfig, n_prompt: int, asked: Optional[int], param: str) -> int:
    """The request's max_tokens, checked against the context and the server's limit; unset, all
    the room the context leaves (within the server's limit)."""
    room = model.max_context - n_prompt
    limit = config.max_tokens_limit
    if asked is None:
        return min(room, limit) if limit is not None else room
    if limit is not None and asked > limit:
        raise APIError(400, f"{param}: at most {limit} on this server, got {asked}", param=param,
                       code="invalid_value")
    if asked > room:
        raise APIError(400, f"{param}: this model's context holds {model.max_context} tokens; the prompt has "
                       f"{n_prompt}, which leaves {room} for the answer, but {asked} were asked for",
                       param=param, code="context_length_exceeded")
    return asked


def _check_prompt_length(model: Model, config: ServerConfig, n_prompt: int, param: str) -> None:
    limit = min(model.max_context - 1, config.max_prompt_tokens or model.max_context)
    if n_prompt > limit:
        raise APIError(400, f"{param}: the prompt has {n_prompt} tokens; at most {limit} are accepted",
                       param=param, code="context_length_exceeded")
    if n_prompt == 0:
        raise APIError(400, f"{param}: the prompt is empty", param=param)


def _content(message: ChatMessage, index: int) -> Optional[str]:
    content = message.content
    if content is None or isinstance(content, str):
        return content
    texts = []
    for number, part in enumerate(content):
        if not isinstance(part, TextPart):
            raise APIError(400, f"messages.{index}.content.{number}: only text parts are read, got {part.type!r}",
                           param=f"messages.{index}.content.{number}.type")
        texts.append(part.text)
    return "".join(texts)


def _template_messages(messages: Sequence[ChatMessage]) -> List[Dict[str, Any]]:
    """OpenAI messages as LFM2's template reads them (``developer`` is a system turn; text parts
    joined; calls' arguments parsed back from their JSON strings)."""
    result = []
    for index, message in enumerate(messages):
        out: Dict[str, Any] = {"role": "system" if message.role == "developer" else message.role,
                               "content": _content(message, index)}
        if message.tool_calls:
            calls = []
            for number, call in enumerate(message.tool_calls):
                try:
                    arguments = json.loads(call.function.arguments) if call.function.arguments.strip() else {}
                except ValueError as error:
                    arguments = None
                    problem = f"not JSON ({error})"
                else:
                    problem = "" if isinstance(arguments, dict) else "not a JSON object"
                if problem:
                    raise APIError(400, f"messages.{index}.tool_calls.{number}.function.arguments: {problem}",
                                   param=f"messages.{index}.tool_calls.{number}.function.arguments")
                calls.append({"id": call.id, "type": "function",
                              "function": {"name": call.function.name, "arguments": arguments}})
            out["tool_calls"] = calls
        if message.reasoning_content is not None:
            out["reasoning_content"] = message.reasoning_content
        if out["content"] is None and not message.tool_calls:
            raise APIError(400, f"messages.{index}: a {message.role} message needs content",
                           param=f"messages.{index}.content")
        result.append(out)
    return result


def _check_chat_fields(body: ChatCompletionRequest) -> None:
    """400 for the OpenAI fields this server knows but cannot serve."""
    for name, why in UNSUPPORTED_CHAT_FIELDS.items():
        if getattr(body, name) is not None:
            raise APIError(400, f"{name}: {why}", param=name, code="unsupported_parameter")
    if body.modalities is not None and any(modality != "text" for modality in body.modalities):
        raise APIError(400, f"modalities: only text is supported, got {body.modalities}", param="modalities",
                       code="unsupported_value")


def _template_variables(body: ChatCompletionRequest) -> Dict[str, Any]:
    """The chat template variables the request adds: ``chat_template_kwargs``, and
    ``reasoning_effort`` as vLLM passes it."""
    variables = dict(body.chat_template_kwargs or {})
    clashes = [name for name in _RESERVED_TEMPLATE_VARIABLES if name in variables]
    if clashes:
        raise APIError(400, f"chat_template_kwargs: {', '.join(clashes)} is set from the request itself",
                       param="chat_template_kwargs")
    if body.reasoning_effort is not None:
        variables["reasoning_effort"] = body.reasoning_effort
    return variables


def _tool_choice(body: ChatCompletionRequest) -> Any:
    choice = body.tool_choice
    if choice is None:
        return None
    if not body.tools and choice != "none":
        raise APIError(400, "tool_choice: needs tools", param="tool_choice")
    if isinstance(choice, NamedToolChoice):
        names = [tool.function.name for tool in body.tools or []]
        if choice.function.name not in names:
            raise APIError(400, f"tool_choice: no tool is named {choice.function.name!r} (tools: {', '.join(names)})",
                           param="tool_choice.function.name")
        return {"type": "function", "function": {"name": choice.function.name}}
    return choice


def _constraint(model: Model, body: ChatCompletionRequest, tools: Optional[List[Dict[str, Any]]], choice: Any) -> Any:
    """The decoding constraint of the request's response_format and tools (None when neither
    constrains anything)."""
    arguments: Dict[str, Any] = {}
    response_format = body.response_format
    if response_format is not None and not isinstance(response_format, ResponseFormatText):
        arguments["response_format"] = response_format.model_dump(by_alias=True, exclude_none=True)
    if tools and choice not in (None, "auto"):
        arguments["tools"] = tools
        arguments["tool_choice"] = choice
        arguments["parallel_tool_calls"] = body.parallel_tool_calls is not False
    if not arguments:
        return None
    try:
        return model.constraint(**arguments)
    except (ValueError, TypeError) as error:
        param = "response_format" if "response_format" in arguments else "tool_choice"
        raise APIError(400, f"{param}: {error}", param=param, code="invalid_schema") from None


def chat_job(model: Model, config: ServerConfig, body: ChatCompletionRequest, arrived: float) -> ChatJob:
    """The chat request checked, rendered with the model's template and tokenized.

    Raises:
        APIError: a 4xx naming the field at fault.
    """
    _check_common(config, body)
    _check_chat_fields(body)
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs: needs logprobs=true", param="top_logprobs")
    messages = _template_messages(body.messages)
    tools = [tool.function.model_dump(exclude_none=True) for tool in body.tools] if body.tools else None
    choice = _tool_choice(body)
    variables = _template_variables(body)
    try:
        text = model.apply_chat_template(messages, tools=tools, **variables)
    except (ValueError, TypeError) as error:
        raise APIError(400, f"messages: {error}", param="messages") from None
    prompt = model.tokenize(text, add_special_tokens=False)
    _check_prompt_length(model, config, len(prompt), "messages")
    asked = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    job = Job(
        prompt=prompt,
        max_tokens=_max_tokens(model, config, len(prompt), asked, param),
        stop=_stop(body.stop),
        sampling=_sampling(model, body),
        constraint=_constraint(model, body, tools, choice),
        top_logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        arrived=arrived,
    )
    return ChatJob(jobs=_choice_jobs(job, body.n or 1), parse_tools=bool(tools) and choice != "none",
                   parallel_tool_calls=body.parallel_tool_calls is not False)


def _completion_prompt(model: Model, prompt: Any) -> Tuple[List[int], str]:
    """The prompt's token ids and its text (for ``echo``)."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        if len(prompt) != 1:
            raise APIError(400, f"prompt: one prompt per request, got {len(prompt)}", param="prompt",
                           code="unsupported_value")
        prompt = prompt[0]
    if isinstance(prompt, str):
        return model.tokenize(prompt), prompt
    ids = list(prompt)
    vocab = model.config.vocab_size
    for index, token in enumerate(ids):
        if not 0 <= token < vocab:
            raise APIError(400, f"prompt.{index}: token id {token} is outside the vocabulary [0, {vocab})",
                           param="prompt")
    return ids, model.detokenize(ids, skip_special_tokens=True) if ids else ""


def completion_job(model: Model, config: ServerConfig, body: CompletionRequest, arrived: float) -> CompletionJob:
    """The completions request checked and tokenized.

    Raises:
        APIError: a 4xx naming the field at fault.
    """
    _check_common(config, body)
    if body.best_of not in (None, body.n or 1):
        raise APIError(400, f"best_of: only best_of=n is supported (no ranking of extra choices), got "
                       f"{body.best_of}", param="best_of", code="unsupported_value")
    if body.suffix:
        raise APIError(400, "suffix: insertion after a suffix is not supported", param="suffix",
                       code="unsupported_value")
    if body.echo and body.logprobs is not None:
        raise APIError(400, "echo: prompt logprobs (echo with logprobs) are not supported", param="echo",
                       code="unsupported_value")
    prompt, prompt_text = _completion_prompt(model, body.prompt)
    _check_prompt_length(model, config, len(prompt), "prompt")
    job = Job(
        prompt=prompt,
        max_tokens=_max_tokens(model, config, len(prompt), body.max_tokens, "max_tokens"),
        stop=_stop(body.stop),
        sampling=_sampling(model, body),
        top_logprobs=body.logprobs,
        arrived=arrived,
    )
    return CompletionJob(jobs=_choice_jobs(job, body.n or 1), echo=prompt_text if body.echo else "")
