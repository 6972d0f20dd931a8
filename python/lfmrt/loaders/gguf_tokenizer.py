"""LFM2's tokenizer to and from GGUF metadata (``tokenizer.ggml.*``).

LFM2 tokenizes with a byte-level BPE (GGUF ``tokenizer.ggml.model = "gpt2"``) whose pre-tokenizer
is the Llama-3 split regex followed by the byte-level mapping, with whole-word vocabulary hits
taking precedence over merges (``ignore_merges``); llama.cpp calls this pre-tokenizer ``"lfm2"``.
GGUF stores the vocabulary (``tokens`` in id order, each with a ``token_type``), the merges as
``"left right"`` strings, the special token ids and whether a bos token is prepended.

:func:`tokenizer_from_gguf` rebuilds a ``tokenizers.Tokenizer`` that tokenizes exactly as the
original ``tokenizer.json``; :func:`gguf_tokenizer_fields` goes the other way for the writer,
writing what llama.cpp's ``convert_hf_to_gguf.py`` writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from gguf import TokenType
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from ..errors import LoadError

# Pre-tokenizers (GGUF ``tokenizer.ggml.pre``) lfmrt rebuilds, with their split regex in the
# spelling of LFM2's tokenizer.json. llama.cpp maps each of these to its LLAMA3 pre-tokenizer
# with ``ignore_merges``.
LLAMA3_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS: Dict[str, str] = {"lfm2": LLAMA3_SPLIT_REGEX, "llama-bpe": LLAMA3_SPLIT_REGEX}

# The vocabulary's arrays: what the rebuilt tokenizer holds (and the reader need not keep).
TOKENIZER_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges")

# Special token roles: GGUF id key suffix -> transformers' special token name.
SPECIAL_ROLES = {"bos": "bos_token", "eos": "eos_token", "padding": "pad_token", "unknown": "unk_token"}


@dataclass(frozen=True)
class GGUFTokenizer:
    """A tokenizer rebuilt from GGUF metadata.

    Attributes:
        tokenizer: the ``tokenizers.Tokenizer``.
        special_tokens: ``bos_token``, ``eos_token``, ``pad_token``, ``unk_token`` -> token text,
            for those the file names.
        special_ids: the same roles -> token id.
    """

    tokenizer: Tokenizer
    special_tokens: Dict[str, str]
    special_ids: Dict[str, int]


def _pre_tokenizer(split_regex: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )


def _post_processor(bos: Optional[str], bos_id: Optional[int], eos: Optional[str], eos_id: Optional[int],
                    add_bos: bool, add_eos: bool) -> Optional[processors.PostProcessor]:
    """transformers' template: ``bos $A eos`` (each part as the file asks), pairs repeat it."""
    specials: List[Tuple[str, int]] = []
    head, tail = "", ""
    if add_bos and bos is not None and bos_id is not None:
        head = f"{bos} "
        specials.append((bos, bos_id))
    if add_eos and eos is not None and eos_id is not None:
        tail = f" {eos}"
        if (eos, eos_id) not in specials:
            specials.append((eos, eos_id))
    if not specials:
        return None
    return processors.TemplateProcessing(
        single=f"{head}$A{tail}", pair=f"{head}$A{tail} {head}$B{tail}", special_tokens=specials
    )


def tokenizer_from_gguf(fields: Mapping[str, Any], where: str) -> Optional[GGUFTokenizer]:
    """Rebuilds the tokenizer from GGUF metadata, or returns ``None`` when the file has none.

    Args:
        fields: metadata key -> value (``tokenizer.ggml.tokens`` as a list of str, ...).
        where: how to name the file in errors.

    Raises:
        LoadError: naming the key, for a tokenizer model or pre-tokenizer lfmrt cannot rebuild,
            or inconsistent token lists, merges or special token ids.
    """
    model = fields.get("tokenizer.ggml.model")
    if model is None:
        return None
    if model != "gpt2":
        raise LoadError(f"{where}: tokenizer.ggml.model is {model!r}; lfmrt rebuilds only 'gpt2' (byte-level BPE)")
    pre = fields.get("tokenizer.ggml.pre", "lfm2")
    if pre not in PRE_TOKENIZERS:
        raise LoadError(
            f"{where}: tokenizer.ggml.pre is {pre!r}; lfmrt rebuilds {', '.join(sorted(PRE_TOKENIZERS))}"
        )

    tokens = fields.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise LoadError(f"{where}: tokenizer.ggml.tokens is missing or not a list of strings")
    types = fields.get("tokenizer.ggml.token_type", [int(TokenType.NORMAL)] * len(tokens))
    if not isinstance(types, list) or len(types) != len(tokens):
        raise LoadError(f"{where}: tokenizer.ggml.token_type does not list one type per token ({len(tokens)})")
    merges = fields.get("tokenizer.ggml.merges", [])
    if not isinstance(merges, list):
        raise LoadError(f"{where}: tokenizer.ggml.merges is not a list")

    vocab: Dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token in vocab:
            raise LoadError(f"{where}: tokenizer.ggml.tokens lists {token!r} twice (ids {vocab[token]} and {i})")
        vocab[token] = i
    pairs: List[Tuple[str, str]] = []
    for merge in merges:
        parts = merge.split(" ") if isinstance(merge, str) else []
        if len(parts) != 2 or parts[0] not in vocab or parts[1] not in vocab:
            raise LoadError(f"{where}: tokenizer.ggml.merges entry {merge!r} is not two known tokens")
        pairs.append((parts[0], parts[1]))

    try:
        tokenizer = Tokenizer(
            models.BPE(vocab=vocab, merges=pairs, ignore_merges=True, byte_fallback=False, fuse_unk=False)
        )
    except Exception as exc:  # tokenizers raises its own Exception subclasses
        raise LoadError(f"{where}: cannot build the BPE tokenizer from its metadata: {exc}") from exc
    tokenizer.pre_tokenizer = _pre_tokenizer(PRE_TOKENIZERS[pre])
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    added = [
        AddedToken(tokens[i], special=kind == TokenType.CONTROL, normalized=False)
        for i, kind in enumerate(types)
        if kind in (TokenType.CONTROL, TokenType.USER_DEFINED)
    ]
    tokenizer.add_tokens(added)

    special_ids: Dict[str, int] = {}
    special_tokens: Dict[str, str] = {}
    for role, name in SPECIAL_ROLES.items():
        key = f"tokenizer.ggml.{role}_token_id"
        token_id = fields.get(key)
        if token_id is None:
            continue
        if not isinstance(token_id, int) or not 0 <= token_id < len(tokens):
            raise LoadError(f"{where}: {key} is {token_id!r}, not a token id below {len(tokens)}")
        special_ids[name] = token_id
        special_tokens[name] = tokens[token_id]
    try:  # the template names the tokens by their text, which tokenizers parses
        tokenizer.post_processor = _post_processor(
            special_tokens.get("bos_token"),
            special_ids.get("bos_token"),
            special_tokens.get("eos_token"),
            special_ids.get("eos_token"),
            bool(fields.get("tokenizer.ggml.add_bos_token", False)),
            bool(fields.get("tokenizer.ggml.add_eos_token", False)),
        )
    except Exception as exc:  # tokenizers raises its own Exception subclasses
        named = ", ".join(f"{name} {text!r}" for name, text in special_tokens.items())
        raise LoadError(
            f"{where}: tokenizer.ggml.tokens gives special tokens ({named}) that cannot begin or end "
            f"a sequence: {exc}"
        ) from exc
    return GGUFTokenizer(tokenizer=tokenizer, special_tokens=special_tokens, special_ids=special_ids)


def gguf_tokenizer_fields(
    tokenizer: Tokenizer, vocab_size: int, special_tokens: Mapping[str, str], add_bos: bool, add_eos: bool
) -> Dict[str, Any]:
    """The ``tokenizer.ggml.*`` metadata llama.cpp's converter writes for an LFM2 tokenizer.

    Tokens come in id order, ``[PAD<id>]`` (type UNUSED) filling ids the tokenizer lacks; added
    tokens are CONTROL when special, USER_DEFINED otherwise.

    Args:
        tokenizer: the model's ``tokenizers.Tokenizer`` (a byte-level BPE).
        vocab_size: the model's vocabulary size (rows of the embedding).
        special_tokens: ``bos_token``, ``eos_token``, ``pad_token``, ... -> token text.
        add_bos, add_eos: whether encoding adds them (``tokenizer_config.json``).

    Raises:
        LoadError: the tokenizer is not a BPE, or a token id is not below ``vocab_size``.
    """
    spec = json.loads(tokenizer.to_str())
    if spec.get("model", {}).get("type") != "BPE":
        raise LoadError("only byte-level BPE tokenizers can be written to GGUF")
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    if vocab and max(vocab.values()) >= vocab_size:
        raise LoadError(f"the tokenizer has token id {max(vocab.values())}, beyond the model's {vocab_size} rows")
    by_id = {i: t for t, i in vocab.items()}
    added = {t.content: t for t in tokenizer.get_added_tokens_decoder().values()}

    tokens: List[str] = []
    types: List[int] = []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(int(TokenType.UNUSED))
        elif token in added:
            tokens.append(token)
            types.append(int(TokenType.CONTROL if added[token].special else TokenType.USER_DEFINED))
        else:
            tokens.append(token)
            types.append(int(TokenType.NORMAL))
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]

    fields: Dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "lfm2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
    }
    for role, name in SPECIAL_ROLES.items():
        token = special_tokens.get(name)
        if token is not None and token in vocab:
            fields[f"tokenizer.ggml.{role}_token_id"] = vocab[token]
    fields["tokenizer.ggml.add_bos_token"] = add_bos
    fields["tokenizer.ggml.add_sep_token"] = False
    fields["tokenizer.ggml.add_eos_token"] = add_eos
    return fields


__all__ = [
    "GGUFTokenizer",
    "LLAMA3_SPLIT_REGEX",
    "PRE_TOKENIZERS",
    "TOKENIZER_ARRAYS",
    "gguf_tokenizer_fields",
    "tokenizer_from_gguf",
]
