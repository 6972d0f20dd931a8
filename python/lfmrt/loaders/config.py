"""Reads an LFM2 ``config.json`` in either dialect into one normalised :class:`Lfm2Config`.

Real checkpoints spell the same model two ways:

* dialect A (the original LFM2 files): ``block_ff_dim``, top-level ``rope_theta``,
  ``tie_embedding``, ``full_attn_idxs`` (and often ``block_dim``, ``block_norm_eps``,
  ``conv_dim``, which transformers ignores and so do we);
* dialect B (transformers >= 5): ``intermediate_size``, ``rope_parameters: {"rope_theta",
  "rope_type"}``, ``tie_word_embeddings``, ``layer_types`` (transformers 4.x wrote
  ``rope_theta`` at the top level).

Precedence and defaults follow ``transformers.Lfm2Config`` and ``Lfm2MLP`` exactly: when a file
has both spellings, ``block_ff_dim`` beats ``intermediate_size``, ``tie_embedding`` beats
``tie_word_embeddings``, ``layer_types`` beats ``full_attn_idxs``, and
``rope_parameters["rope_theta"]`` beats a top-level ``rope_theta``. Unlike transformers, the
fields that define the model's shape have no default: a missing one is an error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import LoadError

LAYER_TYPES = ("conv", "full_attention")


@dataclass(frozen=True)
class Lfm2Config:
    """The hyper-parameters of a dense LFM2 model, normalised from either dialect.

    Mirrors ``lfmrt::ModelConfig`` on the C++ side.

    Attributes:
        vocab_size: rows of ``embed_tokens`` (and of the LM head).
        hidden_size: the residual stream width.
        ff_dim: the SwiGLU width actually used by ``w1``/``w3``/``w2``, i.e. after
            ``block_auto_adjust_ff_dim`` / ``block_ffn_dim_multiplier`` / ``block_multiple_of``.
        layer_types: one entry per block, ``"conv"`` or ``"full_attention"``.
        n_heads: query heads of the attention layers.
        n_kv_heads: key/value heads (grouped-query attention).
        head_dim: width of one head.
        conv_kernel: the short convolution's kernel size (``conv_L_cache``).
        conv_bias: whether the conv layers' projections and convolution carry biases.
        norm_eps: RMSNorm epsilon.
        rope_theta: RoPE base frequency.
        max_context: ``max_position_embeddings``.
        tie_embeddings: whether the LM head reuses ``embed_tokens``.
        bos_token_id: beginning-of-sequence token, if any.
        eos_token_id: end-of-sequence tokens (possibly empty).
        pad_token_id: padding token, if any.
        raw: the parsed ``config.json`` as it was on disk.
    """

    vocab_size: int
    hidden_size: int
    ff_dim: int
    layer_types: Tuple[str, ...]
    n_heads: int
    n_kv_heads: int
    head_dim: int
    conv_kernel: int
    conv_bias: bool
    norm_eps: float
    rope_theta: float
    max_context: int
    tie_embeddings: bool
    bos_token_id: Optional[int]
    eos_token_id: List[int]
    pad_token_id: Optional[int]
    raw: Dict[str, Any]

    @property
    def n_layers(self) -> int:
        """The number of blocks."""
        return len(self.layer_types)


_MISSING = object()


class _Fields:
    """Typed access to the raw config that names the file and field in every error."""

    def __init__(self, raw: Dict[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    def error(self, field: str, problem: str) -> LoadError:
        """A LoadError naming the config file and ``field``."""
        return LoadError(f"{self.source}: field {field!r} {problem}")

    def get(self, *names: str) -> Tuple[str, Any]:
        """The first of ``names`` present in the config (``None`` values count as absent)."""
        for name in names:
            value = self.raw.get(name)
            if value is not None:
                return name, value
        return names[0], _MISSING

    def integer(self, *names: str, default: Any = _MISSING, minimum: int = 1) -> int:
        """An integer >= ``minimum``; required unless ``default`` is given."""
        name, value = self.get(*names)
        if value is _MISSING:
            if default is _MISSING:
                others = "".join(f" (and so is {other!r})" for other in names[1:])
                raise self.error(name, f"is missing{others}")
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(name, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self.error(name, f"must be >= {minimum}, got {value}")
        return value

    def number(self, *names: str, default: float) -> float:
        """A positive number, or ``default`` when absent."""
        name, value = self.get(*names)
        if value is _MISSING:
            return default
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.error(name, f"must be a number, got {value!r}")
        if not value > 0:
            raise self.error(name, f"must be positive, got {value}")
        return float(value)

    def flag(self, *names: str, default: bool) -> bool:
        """A JSON boolean, or ``default`` when absent."""
        name, value = self.get(*names)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {value!r}")
        return value

    def token_ids(self, name: str, default: Any) -> List[int]:
        """An int, a list of ints, or null (no token)."""
        value = self.raw.get(name, default)
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise self.error(name, f"must be a token id or a list of token ids, got {value!r}")
        return values


def _ff_dim(fields: _Fields) -> int:
    """The SwiGLU width ``transformers.Lfm2MLP`` builds (note: it rounds only when a multiplier
    is set)."""
    ff_dim = fields.integer("block_ff_dim", "intermediate_size")
    if fields.flag("block_auto_adjust_ff_dim", default=True):
        ff_dim = int(2 * ff_dim / 3)
        if fields.raw.get("block_ffn_dim_multiplier", 1.0) is not None:
            multiplier = fields.number("block_ffn_dim_multiplier", default=1.0)
            multiple_of = fields.integer("block_multiple_of", default=256)
            ff_dim = int(multiplier * ff_dim)
            ff_dim = multiple_of * ((ff_dim + multiple_of - 1) // multiple_of)
    if ff_dim < 1:
        raise fields.error("block_ff_dim", f"gives a feed-forward width of {ff_dim}")
    return ff_dim


def _layer_types(fields: _Fields, n_layers: int) -> Tuple[str, ...]:
    """``layer_types`` if given, else derived from ``full_attn_idxs`` (default: all attention)."""
    layer_types = fields.raw.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or not all(t in LAYER_TYPES for t in layer_types):
            raise fields.error(
                "layer_types", f"must be a list of {' / '.join(LAYER_TYPES)}, got {layer_types!r}"
            )
        if len(layer_types) != n_layers:
            raise fields.error(
                "layer_types", f"has {len(layer_types)} entries but num_hidden_layers is {n_layers}"
            )
        return tuple(layer_types)

    full_attn_idxs = fields.raw.get("full_attn_idxs")
    if full_attn_idxs is None:
        return ("full_attention",) * n_layers
    if not isinstance(full_attn_idxs, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_layers for i in full_attn_idxs
    ):
        raise fields.error(
            "full_attn_idxs",
            f"must list layer indices in [0, {n_layers}), got {full_attn_idxs!r}",
        )
    attention = set(full_attn_idxs)
    return tuple("full_attention" if i in attention else "conv" for i in range(n_layers))


def _rope_theta(fields: _Fields) -> float:
    """RoPE base from ``rope_parameters`` (or legacy ``rope_scaling``), else top-level
    ``rope_theta``, else 1e6. Only plain (``"default"``) RoPE exists in LFM2."""
    # transformers: `rope_parameters = rope_scaling or rope_parameters`
    name = "rope_scaling" if fields.raw.get("rope_scaling") else "rope_parameters"
    params = fields.raw.get(name) or {}
    if not isinstance(params, dict):
        raise fields.error(name, f"must be an object, got {params!r}")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise fields.error(f"{name}.rope_type", f"is {rope_type!r}; lfmrt supports only 'default'")
    theta = params.get("rope_theta")
    if theta is None:
        return fields.number("rope_theta", default=1e6)
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or not theta > 0:
        raise fields.error(f"{name}.rope_theta", f"must be a positive number, got {theta!r}")
    return float(theta)


def parse_config(raw: Dict[str, Any], source: str = "config.json") -> Lfm2Config:
    """Normalises a parsed ``config.json`` (either dialect).

    Args:
        raw: the JSON object.
        source: how to name the file in error messages (usually its path).

    Raises:
        LoadError: naming ``source`` and the field, when a required field (``hidden_size``,
            ``num_hidden_layers``, ``num_attention_heads``, ``num_key_value_heads``,
            ``vocab_size``, ``block_ff_dim``/``intermediate_size``) is missing, a field has the
            wrong type or a non-positive size, or the fields contradict each other.
    """
    if not isinstance(raw, dict):
        raise LoadError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    fields = _Fields(raw, source)

    vocab_size = fields.integer("vocab_size")
    hidden_size = fields.integer("hidden_size")
    n_layers = fields.integer("num_hidden_layers")
    n_heads = fields.integer("num_attention_heads")
    n_kv_heads = fields.integer("num_key_value_heads")
    if n_heads % n_kv_heads:
        raise fields.error(
            "num_key_value_heads",
            f"({n_kv_heads}) must divide num_attention_heads ({n_heads})",
        )
    if raw.get("head_dim") is not None:  # transformers honours an explicit head_dim
        head_dim = fields.integer("head_dim")
    elif hidden_size % n_heads:
        raise fields.error(
            "num_attention_heads", f"({n_heads}) must divide hidden_size ({hidden_size})"
        )
    else:
        head_dim = hidden_size // n_heads

    bos = fields.token_ids("bos_token_id", default=1)
    pad = fields.token_ids("pad_token_id", default=0)
    for name, ids in (("bos_token_id", bos), ("pad_token_id", pad)):
        if len(ids) > 1:
            raise fields.error(name, f"must be a single token id, got {ids!r}")

    return Lfm2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        ff_dim=_ff_dim(fields),
        layer_types=_layer_types(fields, n_layers),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        conv_kernel=fields.integer("conv_L_cache", default=3),
        conv_bias=fields.flag("conv_bias", default=False),
        norm_eps=fields.number("norm_eps", default=1e-5),
        rope_theta=_rope_theta(fields),
        max_context=fields.integer("max_position_embeddings", default=128_000),
        tie_embeddings=fields.flag("tie_embedding", "tie_word_embeddings", default=True),
        bos_token_id=bos[0] if bos else None,
        eos_token_id=fields.token_ids("eos_token_id", default=2),
        pad_token_id=pad[0] if pad else None,
        raw=raw,
    )


# What sets each quantity a weight's shape is made of, as each container names it.
HF_CONFIG_FIELDS = {
    "vocab": "vocab_size",
    "hidden": "hidden_size",
    "ff": "block_ff_dim / intermediate_size (after block_auto_adjust_ff_dim)",
    "heads": "num_attention_heads",
    "kv_heads": "num_key_value_heads",
    "head_dim": "head_dim (hidden_size / num_attention_heads unless set)",
    "conv": "conv_L_cache",
}
GGUF_CONFIG_FIELDS = {
    "vocab": "the token count (tokenizer.ggml.tokens)",
    "hidden": "lfm2.embedding_length",
    "ff": "lfm2.feed_forward_length",
    "heads": "lfm2.attention.head_count",
    "kv_heads": "lfm2.attention.head_count_kv",
    "head_dim": "lfm2.attention.key_length (embedding_length / head_count unless set)",
    "conv": "lfm2.shortconv.l_cache",
}

# One dimension of a weight: its size, and the quantities whose product (times a factor) it is.
_Dimension = Tuple[int, Tuple[str, ...], int]


def weight_dimensions(config: Lfm2Config) -> Dict[str, Tuple[_Dimension, ...]]:
    """Every weight the config implies, with each dimension's size and what sets it."""
    sizes = {"vocab": config.vocab_size, "hidden": config.hidden_size, "ff": config.ff_dim,
             "heads": config.n_heads, "kv_heads": config.n_kv_heads, "head_dim": config.head_dim,
             "conv": config.conv_kernel}

    def dim(*names: str, times: int = 1) -> _Dimension:
        size = times
        for name in names:
            size *= sizes[name]
        return size, names, times

    hidden = dim("hidden")
    shapes: Dict[str, Tuple[_Dimension, ...]] = {
        "embed_tokens.weight": (dim("vocab"), hidden),
        "lm_head.weight": (dim("vocab"), hidden),
        "embedding_norm.weight": (hidden,),
    }
    for i, kind in enumerate(config.layer_types):
        layer = f"layers.{i}."
        shapes[layer + "operator_norm.weight"] = (hidden,)
        shapes[layer + "ffn_norm.weight"] = (hidden,)
        shapes[layer + "feed_forward.w1.weight"] = (dim("ff"), hidden)
        shapes[layer + "feed_forward.w3.weight"] = (dim("ff"), hidden)
        shapes[layer + "feed_forward.w2.weight"] = (hidden, dim("ff"))
        if kind == "conv":
            shapes[layer + "conv.in_proj.weight"] = (dim("hidden", times=3), hidden)
            shapes[layer + "conv.in_proj.bias"] = (dim("hidden", times=3),)
            shapes[layer + "conv.out_proj.weight"] = (hidden, hidden)
            shapes[layer + "conv.out_proj.bias"] = (hidden,)
            shapes[layer + "conv.conv.weight"] = (hidden, dim(), dim("conv"))
            shapes[layer + "conv.conv.bias"] = (hidden,)
        else:
            attention = layer + "self_attn."
            shapes[attention + "q_proj.weight"] = (dim("heads", "head_dim"), hidden)
            shapes[attention + "k_proj.weight"] = (dim("kv_heads", "head_dim"), hidden)
            shapes[attention + "v_proj.weight"] = (dim("kv_heads", "head_dim"), hidden)
            shapes[attention + "out_proj.weight"] = (hidden, dim("heads", "head_dim"))
            shapes[attention + "q_layernorm.weight"] = (dim("head_dim"),)
            shapes[attention + "k_layernorm.weight"] = (dim("head_dim"),)
    return shapes


def check_weight_shapes(
    config: Lfm2Config, shapes: Mapping[str, Sequence[int]], source: str, fields: Mapping[str, str]
) -> None:
    """Raises LoadError naming ``source`` (the config's file) and the field behind the first
    weight dimension that disagrees with the config: the config is more often wrong (edited,
    from another model) than the weights. ``fields`` names the quantities as the file does
    (:data:`HF_CONFIG_FIELDS` or :data:`GGUF_CONFIG_FIELDS`). Weights of another rank, or
    unknown to the config, are left to the core's own checks."""
    expected_shapes = weight_dimensions(config)
    for name, shape in shapes.items():
        expected = expected_shapes.get(name)
        if expected is None or len(expected) != len(shape):
            continue
        for index, ((size, names, times), actual) in enumerate(zip(expected, shape)):
            if size == actual:
                continue
            quantity = " x ".join(([str(times)] if times != 1 else []) + [fields[n] for n in names])
            raise LoadError(
                f"{source}: gives tensor '{name}' the shape {[d[0] for d in expected]}, but the weights have "
                f"{list(shape)}: dimension {index} is {quantity} = {size} there, {actual} in the weights"
            )


def load_config(path: str | os.PathLike) -> Lfm2Config:
    """Reads and normalises a ``config.json`` file.

    Raises:
        LoadError: naming the file when it cannot be read or parsed, plus everything
            :func:`parse_config` raises.
    """
    path = os.fspath(path)
    return parse_config(read_json_file(path), source=path)


def read_json_file(path: str) -> Any:
    """Parses a JSON file; any failure (unreadable, not UTF-8, not JSON) is a LoadError naming it."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except OSError as exc:
        raise LoadError(f"{path}: cannot read: {exc}") from exc
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise LoadError(f"{path}: not valid JSON: {exc}") from exc
