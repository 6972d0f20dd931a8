"""Session: one sequence's state (KV cache, conv state, position) on a shared Model."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from . import _core

DEFAULT_CHUNK_SIZE = 512


class Session:
    """One sequence's state on a model: append tokens, read logits, start over.

    Many sessions can share one model; each holds its own KV cache and conv state. Create one
    with ``Model.session()``.
    """

    def __init__(self, core_model: "_core.Model", chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self._core = _core.Session(core_model)
        self.chunk_size = chunk_size

    def append(
        self, tokens: Sequence[int], *, chunk_size: Optional[int] = None, all_logits: bool = False
    ) -> np.ndarray:
        """Runs ``tokens`` through the model after what the session already holds.

        The prompt is processed as matrix products in chunks of ``chunk_size`` tokens (default:
        the session's), which bounds the activation memory without changing the result.

        Returns:
            the logits after the last token, shape ``(vocab,)``; with ``all_logits=True`` the
            logits after every appended token, shape ``(len(tokens), vocab)``.

        Raises:
            ValueError: a token id outside the vocabulary, a context overflow or a bad chunk
                size; the session is left unchanged.
        """
        size = self.chunk_size if chunk_size is None else chunk_size
        if size < 1:
            raise ValueError("chunk_size must be at least 1")
        return self._core.append(list(tokens), size, all_logits)

    def reset(self) -> None:
        """Forgets every token: the session is as new."""
        self._core.reset()

    @property
    def tokens(self) -> List[int]:
        """The tokens the session holds, in order."""
        return list(self._core.tokens)

    @property
    def n_tokens(self) -> int:
        """How many tokens the session holds."""
        return self._core.n_tokens

    @property
    def memory_bytes(self) -> int:
        """Bytes of state this session holds (KV cache, conv state, tokens, logits)."""
        return self._core.memory_bytes

    @property
    def last_logits(self) -> np.ndarray:
        """The logits after the last appended token, shape ``(vocab,)``."""
        return self._core.last_logits

    def __repr__(self) -> str:
        return f"Session(n_tokens={self.n_tokens}, memory_bytes={self.memory_bytes})"
