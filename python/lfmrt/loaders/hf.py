"""Loads a Hugging Face checkpoint directory: config, weights, tokenizer, chat template.

The directory holds ``config.json``; the weights as ``model.safetensors``, a sharded set with
``model.safetensors.index.json``, or (rarely) other ``*.safetensors`` files; optionally
``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``,
``special_tokens_map.json`` and ``generation_config.json``.

Tensor names are canonicalised by stripping the ``model.`` prefix transformers puts on the base
model's weights (``model.layers.3.conv.in_proj.weight`` -> ``layers.3.conv.in_proj.weight``);
``lm_head.weight`` has no prefix. Only the container is checked here; the C++ core checks every
tensor's shape and dtype against the config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from tokenizers import Tokenizer

from ..errors import LoadError
from .config import Lfm2Config, load_config, read_json_file
from .safetensors import (
    SafetensorsFile,
    TensorRef,
    merge_tensors,
    read_safetensors,
    read_sharded_safetensors,
)

_PREFIX = "model."
_SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampling defaults a checkpoint ships in ``generation_config.json`` (``None``: not set).

    Attributes:
        eos_token_id: tokens that end generation (from ``generation_config.json``, else from
            ``config.json``).
        temperature, top_k, top_p, min_p, repetition_penalty, do_sample: the file's values.
    """

    eos_token_id: List[int]
    temperature: Optional[float] = None
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    min_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    do_sample: Optional[bool] = None


@dataclass(frozen=True, eq=False)
class HFCheckpoint:
    """Everything lfmrt reads from a Hugging Face checkpoint directory.

    Attributes:
        path: the directory.
        config: the normalised model config.
        tensors: canonical name (HF name without the leading ``model.``) -> tensor view.
        tokenizer: the ``tokenizers.Tokenizer`` from ``tokenizer.json``, or ``None`` if absent.
        chat_template: the Jinja chat template source, or ``None`` if the checkpoint has none.
        special_tokens: ``bos_token``, ``eos_token``, ``pad_token``, ... -> token text, as
            ``tokenizer_config.json`` (or ``special_tokens_map.json``) spells them.
        generation: sampling defaults and end-of-sequence ids.
        files: the memory-mapped weight files; the tensor views point into them.
    """

    path: str
    config: Lfm2Config
    tensors: Dict[str, TensorRef]
    tokenizer: Optional[Tokenizer]
    chat_template: Optional[str]
    special_tokens: Dict[str, str]
    generation: GenerationDefaults
    files: List[SafetensorsFile] = field(repr=False)

    @property
    def bos_token(self) -> Optional[str]:
        """The beginning-of-sequence token text, if the tokenizer config names one."""
        return self.special_tokens.get("bos_token")

    @property
    def eos_token(self) -> Optional[str]:
        """The end-of-sequence token text, if the tokenizer config names one."""
        return self.special_tokens.get("eos_token")


def _read_optional_json(path: str) -> Dict[str, Any]:
    """A JSON object file that may be absent (``{}``); anything but an object is an error."""
    if not os.path.isfile(path):
        return {}
    value = read_json_file(path)
    if not isinstance(value, dict):
        raise LoadError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _load_weights(directory: str) -> List[SafetensorsFile]:
    """Opens the directory's safetensors files and returns them (index first if present)."""
    index_path = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(index_path):
        files, _ = read_sharded_safetensors(index_path)
        return files
    single = os.path.join(directory, "model.safetensors")
    if os.path.isfile(single):
        return [read_safetensors(single)]
    names = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
    if not names:
        raise LoadError(f"{directory}: no model.safetensors, index or other .safetensors file")
    return [read_safetensors(os.path.join(directory, n)) for n in names]


def canonical_tensor_names(tensors: Dict[str, TensorRef], source: str) -> Dict[str, TensorRef]:
    """Strips the leading ``model.`` from each name.

    Raises:
        LoadError: naming ``source`` and the tensor when two names collide after stripping.
    """
    canonical: Dict[str, TensorRef] = {}
    for name, ref in tensors.items():
        short = name[len(_PREFIX) :] if name.startswith(_PREFIX) else name
        if short in canonical:
            raise LoadError(
                f"{source}: tensors {canonical[short].name!r} and {name!r} both map to {short!r}"
            )
        canonical[short] = ref
    return canonical


def _chat_template(directory: str, tokenizer_config: Dict[str, Any]) -> Optional[str]:
    """``chat_template.jinja`` if present, else ``tokenizer_config.json``'s ``chat_template``
    (a string, or a list of ``{name, template}`` of which ``"default"`` is used)."""
    jinja_path = os.path.join(directory, "chat_template.jinja")
    if os.path.isfile(jinja_path):
        try:
            with open(jinja_path, "rb") as f:
                return f.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LoadError(f"{jinja_path}: cannot read: {exc}") from exc

    template = tokenizer_config.get("chat_template")
    where = os.path.join(directory, "tokenizer_config.json")
    if template is None or isinstance(template, str):
        return template
    if isinstance(template, list):
        for entry in template:
            if not (isinstance(entry, dict) and isinstance(entry.get("template"), str)):
                raise LoadError(f"{where}: chat_template entry {entry!r} has no 'template' text")
            if entry.get("name") == "default":
                return entry["template"]
        return None
    raise LoadError(f"{where}: chat_template must be a string or a list of named templates")


def _special_tokens(directory: str, tokenizer_config: Dict[str, Any]) -> Dict[str, str]:
    """Special token texts from ``tokenizer_config.json``, completed by
    ``special_tokens_map.json``. Each may be a string or an ``{"content": ...}`` object."""
    map_path = os.path.join(directory, "special_tokens_map.json")
    sources = [
        (os.path.join(directory, "tokenizer_config.json"), tokenizer_config),
        (map_path, _read_optional_json(map_path)),
    ]
    tokens: Dict[str, str] = {}
    for where, values in sources:
        for key in _SPECIAL_TOKEN_KEYS:
            value = values.get(key)
            if key in tokens or value is None:
                continue
            if isinstance(value, dict):
                value = value.get("content")
            if not isinstance(value, str):
                raise LoadError(f"{where}: {key} must be a string or {{'content': str}}")
            tokens[key] = value
    return tokens


def _generation_defaults(directory: str, config: Lfm2Config) -> GenerationDefaults:
    """Reads ``generation_config.json`` (if any), checking each value's type."""
    where = os.path.join(directory, "generation_config.json")
    raw = _read_optional_json(where)

    def number(key: str, kind: type) -> Any:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LoadError(f"{where}: field {key!r} must be a number, got {value!r}")
        if kind is int and not float(value).is_integer():
            raise LoadError(f"{where}: field {key!r} must be an integer, got {value!r}")
        return kind(value)

    eos = raw.get("eos_token_id")
    if eos is None:
        eos_ids = list(config.eos_token_id)
    else:
        eos_ids = eos if isinstance(eos, list) else [eos]
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in eos_ids):
            raise LoadError(f"{where}: field 'eos_token_id' must be token ids, got {eos!r}")
    do_sample = raw.get("do_sample")
    if do_sample is not None and not isinstance(do_sample, bool):
        raise LoadError(f"{where}: field 'do_sample' must be true or false, got {do_sample!r}")
    return GenerationDefaults(
        eos_token_id=eos_ids,
        temperature=number("temperature", float),
        top_k=number("top_k", int),
        top_p=number("top_p", float),
        min_p=number("min_p", float),
        repetition_penalty=number("repetition_penalty", float),
        do_sample=do_sample,
    )


def _load_tokenizer(directory: str) -> Optional[Tokenizer]:
    """``tokenizers.Tokenizer`` from ``tokenizer.json``, or ``None`` when there is none."""
    path = os.path.join(directory, "tokenizer.json")
    if not os.path.isfile(path):
        return None
    try:
        return Tokenizer.from_file(path)
    except Exception as exc:  # tokenizers raises its own Exception subclasses
        raise LoadError(f"{path}: cannot load tokenizer: {exc}") from exc


def load_hf_checkpoint(path: str | os.PathLike) -> HFCheckpoint:
    """Loads a Hugging Face LFM2 checkpoint directory without copying any weight.

    Raises:
        LoadError: naming the path when the directory, its ``config.json`` or its weights are
            missing, and naming the file / tensor / field for anything malformed.
    """
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        raise LoadError(f"{directory}: not a directory (expected a Hugging Face checkpoint)")
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise LoadError(f"{config_path}: missing (every checkpoint directory needs config.json)")
    config = load_config(config_path)

    files = _load_weights(directory)
    tensors = canonical_tensor_names(merge_tensors(files), directory)

    tokenizer_config = _read_optional_json(os.path.join(directory, "tokenizer_config.json"))
    return HFCheckpoint(
        path=directory,
        config=config,
        tensors=tensors,
        tokenizer=_load_tokenizer(directory),
        chat_template=_chat_template(directory, tokenizer_config),
        special_tokens=_special_tokens(directory, tokenizer_config),
        generation=_generation_defaults(directory, config),
        files=files,
    )
