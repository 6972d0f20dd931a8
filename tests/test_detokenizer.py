"""Tests for lfmrt.text.detokenizer: streaming text that never splits a character or leaks a stop string."""

from __future__ import annotations

import random
from typing import List, Sequence

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from lfmrt.text.detokenizer import IncrementalDetokenizer, StopStringMatcher

CORPUS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "Café, naïve, résumé, Ångström, crème brûlée.",
    "日本語のテキストと中文文本，还有한국어 텍스트.",
    "Emoji: 😀🎉👍🏽 and family 👨‍👩‍👧 and flags 🇫🇷🇯🇵.",
    "Mixed: 東京 in Tōkyō costs ¥1000 ≈ €7 — ok?",
]

TEXTS = CORPUS + [
    "Unseen: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∀x∈ℝ, Ελληνικά, русский, עברית, हिन्दी 🦀🐍",
    "  leading spaces and\nnewlines\n\n  ",
]


@pytest.fixture(scope="module")
def byte_level() -> Tokenizer:
    """A tiny byte-level BPE (like LFM2's): rare characters stay split across byte tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|startoftext|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 3, trainer)
    return tokenizer


@pytest.fixture(scope="module")
def metaspace() -> Tokenizer:
    """A SentencePiece-style BPE whose decoder drops the first token's leading space."""
    tokenizer = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<unk>", "<|im_end|>"] + [f"<0x{b:02X}>" for b in range(256)],
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 3, trainer)
    return tokenizer


def stream(tokenizer: Tokenizer, ids: Sequence[int], skip_special_tokens: bool = True) -> List[str]:
    detok = IncrementalDetokenizer(tokenizer, skip_special_tokens=skip_special_tokens)
    pieces = [detok.push(i) for i in ids]
    pieces.append(detok.flush())
    return pieces


def test_test_tokenizer_really_splits_characters(byte_level: Tokenizer) -> None:
    ids = byte_level.encode("👨‍👩‍👧 日本").ids
    assert any("\ufffd" in byte_level.decode([i]) for i in ids)


@pytest.mark.parametrize("text", TEXTS)
def test_byte_level_stream_equals_full_decode(byte_level: Tokenizer, text: str) -> None:
    ids = byte_level.encode(text).ids
    pieces = stream(byte_level, ids)
    assert "".join(pieces) == byte_level.decode(ids) == text
    assert not any("\ufffd" in piece for piece in pieces)


@pytest.mark.parametrize("text", TEXTS)
def test_metaspace_stream_equals_full_decode(metaspace: Tokenizer, text: str) -> None:
    ids = metaspace.encode(text).ids
    pieces = stream(metaspace, ids)
    assert "".join(pieces) == metaspace.decode(ids)
    assert not any("\ufffd" in piece for piece in pieces)


def test_special_tokens(byte_level: Tokenizer) -> None:
    end = byte_level.token_to_id("<|im_end|>")
    ids = byte_level.encode("Café 😀").ids + [end] + byte_level.encode(" next").ids
    assert "".join(stream(byte_level, ids)) == "Café 😀 next"
    assert "".join(stream(byte_level, ids, skip_special_tokens=False)) == "Café 😀<|im_end|> next"


def test_flush_releases_an_incomplete_character(byte_level: Tokenizer) -> None:
    ids = byte_level.encode("ok 👍🏽").ids
    while "\ufffd" not in byte_level.decode(ids):
        ids = ids[:-1]  # cut the stream inside the emoji
    pieces = stream(byte_level, ids)
    assert "".join(pieces) == byte_level.decode(ids)
    assert pieces[-1].endswith("\ufffd") and not any("\ufffd" in p for p in pieces[:-1])


def test_nothing_pushed(byte_level: Tokenizer) -> None:
    assert IncrementalDetokenizer(byte_level).flush() == ""


# ----------------------------------------------------------------------------------------------
# Stop strings


def feed(matcher: StopStringMatcher, chunks: Sequence[str]) -> List[str]:
    out = [matcher.push(chunk) for chunk in chunks]
    out.append(matcher.flush())
    return out


def expected_output(text: str, stops: Sequence[str]) -> str:
    hits = [text.find(s) for s in stops if s in text]
    return text[: min(hits)] if hits else text


def test_stop_string_across_chunks() -> None:
    matcher = StopStringMatcher(["<|im_end|>"])
    out = feed(matcher, ["Hello <", "|im", "_e", "nd|> never", " shown"])
    assert "".join(out) == "Hello "
    assert matcher.stopped and matcher.stop_string == "<|im_end|>"
    assert out[0] == "Hello "  # "<" is held back; the text before it is not


def test_partial_match_is_released() -> None:
    matcher = StopStringMatcher(["STOP"])
    assert matcher.push("a ST") == "a "
    assert matcher.push("OR") == "STOR"
    assert matcher.push("S") == ""
    assert matcher.flush() == "S"
    assert not matcher.stopped and matcher.stop_string is None


def test_earliest_stop_string_wins() -> None:
    matcher = StopStringMatcher(["world", "o w"])
    assert "".join(feed(matcher, ["hello", " world"])) == "hell"
    assert matcher.stop_string == "o w"


def test_nothing_after_stop() -> None:
    matcher = StopStringMatcher(["\n\n"])
    assert matcher.push("line\n\nmore") == "line"
    assert matcher.push("even more") == ""
    assert matcher.flush() == ""


def test_empty_stop_string_rejected() -> None:
    with pytest.raises(ValueError):
        StopStringMatcher(["ok", ""])


def test_no_stop_strings_passes_everything() -> None:
    assert feed(StopStringMatcher([]), ["a", "b"]) == ["a", "b", ""]


@pytest.mark.parametrize("seed", range(20))
def test_random_chunking_matches_reference(seed: int) -> None:
    rng = random.Random(seed)
    stops = ["abab", "bba", "c😀d", "xyzzy"]
    alphabet = "abcxyz😀d "
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
    cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 10))))
    chunks = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
    out = feed(StopStringMatcher(stops), chunks)
    assert "".join(out) == expected_output(text, stops)


def test_stop_string_spanning_tokens(byte_level: Tokenizer) -> None:
    """Detokenizer + matcher: a stop string split over several tokens never reaches the user."""
    text = "Résumé: 日本語 END_OF_ANSWER trailing 😀"
    ids = byte_level.encode(text).ids
    detok, matcher = IncrementalDetokenizer(byte_level), StopStringMatcher(["END_OF_ANSWER"])
    pieces = [byte_level.decode([i]) for i in ids]
    assert not any("END_OF_ANSWER" in p for p in pieces)  # it really spans tokens
    out = "".join(matcher.push(detok.push(i)) for i in ids) + matcher.push(detok.flush()) + matcher.flush()
    assert out == "Résumé: 日本語 " and matcher.stopped
