"""The request bodies of the OpenAI API that the server accepts, as pydantic models.

They check types and ranges (a wrong one is a 400 naming the field) and are the server's
OpenAPI document. Unknown top-level fields are refused, as OpenAI refuses them, so a misspelt
option is an error rather than silently ignored; messages keep the extra keys OpenAI's own
response objects carry (``refusal``, ``annotations``, ...), since clients send those back.

OpenAI's own fields are all known. Those that ask nothing of the answer (``store``,
``metadata``, ``service_tier``, ...) are accepted and ignored, so apps that send them work; those
asking for what this server cannot do (``audio``, ``prediction``, the legacy ``functions``) are
a 400 that says so (:data:`UNSUPPORTED_CHAT_FIELDS`). Beyond OpenAI's fields, the ones vLLM also
takes are accepted: ``top_k``, ``min_p``, ``repetition_penalty`` and ``chat_template_kwargs``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

MAX_STOP_STRINGS = 4
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5


# strict=True: types are taken as JSON wrote them, as OpenAI takes them (``"max_tokens": true``
# or ``1.5`` and ``"stream": "yes"`` are a 400, not 1 and True); an integer is still a number.
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class OtherPart(_Lenient):
    """Any other content part (images, audio, files): named so the error can say it is not read."""

    type: str


class FunctionCall(_Lenient):
    name: str
    arguments: str = Field(description="the arguments as a JSON object, in a string")


class ToolCall(_Lenient):
    id: Optional[str] = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, List[Union[TextPart, OtherPart]], None] = None
    name: Optional[str] = None
    tool_calls: Optional[List[ToolCall]] = None
    tool_call_id: Optional[str] = None
    reasoning_content: Optional[str] = None


class FunctionDefinition(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: Optional[str] = None
    parameters: Optional[Dict[str, Any]] = None
    strict: Optional[bool] = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class ResponseFormatText(_Strict):
    type: Literal["text"]


class ResponseFormatJSONObject(_Strict):
    type: Literal["json_object"]


class JSONSchemaFormat(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: Optional[str] = None
    schema_: Optional[Dict[str, Any]] = Field(default=None, alias="schema")
    strict: Optional[bool] = None

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ResponseFormatJSONSchema(_Strict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


ResponseFormat = Union[ResponseFormatText, ResponseFormatJSONObject, ResponseFormatJSONSchema]


class StreamOptions(_Strict):
    include_usage: Optional[bool] = None
    include_obfuscation: Optional[bool] = Field(default=None, description="accepted, ignored: nothing is padded")


class _Sampling(_Strict):
    """The fields both endpoints share."""

    model: Optional[str] = Field(default=None, description="the served model's id (default: it)")
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None
    temperature: Optional[float] = Field(default=None, ge=0, le=2)
    top_p: Optional[float] = Field(default=None, gt=0, le=1)
    top_k: Optional[int] = Field(default=None, ge=0, description="lfmrt/vLLM extension; 0 is off")
    min_p: Optional[float] = Field(default=None, ge=0, le=1, description="lfmrt/vLLM extension")
    repetition_penalty: Optional[float] = Field(default=None, gt=0, le=10, description="lfmrt/vLLM extension")
    frequency_penalty: Optional[float] = Field(default=None, ge=-2, le=2)
    presence_penalty: Optional[float] = Field(default=None, ge=-2, le=2)
    logit_bias: Optional[Dict[str, float]] = Field(default=None, description="token id (as a string) -> bias in [-100, 100]")
    seed: Optional[int] = Field(default=None, ge=0, lt=2**64)
    stop: Union[str, List[str], None] = None
    n: Optional[int] = Field(default=1, ge=1, le=128, description="choices; with a seed, choice i samples with seed + i")
    user: Optional[str] = None


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: List[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(default=None, ge=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    tools: Optional[List[Tool]] = None
    tool_choice: Union[Literal["none", "auto", "required"], NamedToolChoice, None] = None
    parallel_tool_calls: Optional[bool] = None
    response_format: Optional[ResponseFormat] = Field(default=None, discriminator="type")
    logprobs: Optional[bool] = False
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    reasoning_effort: Optional[str] = Field(
        default=None, description="passed to the chat template as the variable reasoning_effort, as vLLM does "
        "(LFM2's template does not read it)")
    chat_template_kwargs: Optional[Dict[str, Any]] = Field(
        default=None, description="lfmrt/vLLM extension: further chat template variables (e.g. keep_past_thinking)")
    modalities: Optional[List[str]] = Field(default=None, description='only ["text"]')
    store: Optional[bool] = Field(default=None, description="accepted, ignored: nothing is stored")
    metadata: Optional[Dict[str, str]] = Field(default=None, description="accepted, ignored")
    service_tier: Optional[str] = Field(default=None, description="accepted, ignored")
    prompt_cache_key: Optional[str] = Field(
        default=None, description="accepted, ignored: every request reuses the longest prefix cached")
    safety_identifier: Optional[str] = Field(default=None, description="accepted, ignored")
    verbosity: Optional[Literal["low", "medium", "high"]] = Field(default=None, description="accepted, ignored")
    audio: Optional[Dict[str, Any]] = Field(default=None, description="not supported (text only)")
    prediction: Optional[Dict[str, Any]] = Field(default=None, description="not supported")
    web_search_options: Optional[Dict[str, Any]] = Field(default=None, description="not supported")
    functions: Optional[List[Dict[str, Any]]] = Field(default=None, description="deprecated by OpenAI: use tools")
    function_call: Union[str, Dict[str, Any], None] = Field(default=None, description="deprecated by OpenAI: use tool_choice")


# OpenAI chat fields this server knows but cannot serve, with what to do instead.
UNSUPPORTED_CHAT_FIELDS = {
    "audio": "audio output is not supported; this server answers in text",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "functions": "the legacy functions field is not supported; pass tools (OpenAI deprecated functions)",
    "function_call": "the legacy function_call field is not supported; pass tool_choice (OpenAI deprecated "
                     "function_call)",
}


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: Union[str, List[str], List[int], List[List[int]]]
    max_tokens: Optional[int] = Field(default=16, ge=1)
    echo: Optional[bool] = False
    logprobs: Optional[int] = Field(default=None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    best_of: Optional[int] = Field(default=None, ge=1)
    suffix: Optional[str] = None
