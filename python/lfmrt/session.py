"""Session: one sequence's state (KV cache, conv state, position) on a shared Model."""

from __future__ import annotations

import numbers
import os
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

from . import _core

if TYPE_CHECKING:
    import numpy as np

# The first bytes of every Session.save snapshot (the C++ core's state/snapshot.h).
SNAPSHOT_MAGIC = b"LFMRTSES"

DEFAULT_CHUNK_SIZE = 512
DEFAULT_CHECKPOINT_INTERVAL = 256
DEFAULT_MAX_CHECKPOINTS = 32


def token_ids(tokens: Any) -> List[int]:
    """``tokens`` as a list of Python ints, checked before anything reaches the C++ core.

    Raises:
        TypeError: ``tokens`` is text or not a sequence, or an element is not an integer (a
            float, a string, a bool), naming its index.
        ValueError: an id too large or too small to be any token id, naming its index (ids
            inside that range are checked against the vocabulary by the core).
    """
    if isinstance(tokens, (str, bytes)) or not hasattr(tokens, "__iter__"):
        raise TypeError(f"token ids must be a sequence of ints, got {type(tokens).__name__}")
    ids = []
    for index, token in enumerate(tokens):
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            raise TypeError(f"token ids must be ints: the one at index {index} is {type(token).__name__} {token!r}")
        token = int(token)
        if not -(2**63) <= token < 2**63:
            raise ValueError(f"token id {token} at index {index} is outside the vocabulary")
        ids.append(token)
    return ids


def session_options(checkpoint_interval: int, max_checkpoints: int) -> "_core.SessionOptions":
    """The C++ session options; raises ValueError for values out of range."""
    if checkpoint_interval < 1:
        raise ValueError("checkpoint_interval must be at least 1")
    if max_checkpoints < 0:
        raise ValueError("max_checkpoints must be >= 0")
    options = _core.SessionOptions()
    options.checkpoint_interval = checkpoint_interval
    options.max_checkpoints = max_checkpoints
    return options


class Session:
    """One sequence's state on a model: append tokens, read logits, rewind, fork, save.

    Many sessions can share one model; each holds its own KV cache (in pages that grow with the
    sequence) and conv state. Conv states cannot be cut like a KV cache, so the session keeps
    small conv checkpoints (every ``checkpoint_interval`` positions and at the end of each
    multi-token append) and rewinds to the nearest one, re-running the few tokens after it.
    Create one with ``Model.session()``; a session is safe to use from several threads (its
    operations are serialised).
    """

    def __init__(self, core: "_core.Session", chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self._core = core
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.chunk_size = chunk_size

    def _chunk(self, chunk_size: Optional[int]) -> int:
        size = self.chunk_size if chunk_size is None else chunk_size
        if size < 1:
            raise ValueError("chunk_size must be at least 1")
        return size

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
            TypeError: ``tokens`` holds something other than integers.
            ValueError: no tokens, a token id outside the vocabulary, a context overflow or a
                bad chunk size; the session is left unchanged.
        """
        return self._core.append(token_ids(tokens), self._chunk(chunk_size), all_logits)

    def decode(self, token: int) -> np.ndarray:
        """One decode step: runs ``token`` at the next position.

        The same as ``append([token])``, named for the step a generation loop repeats.

        Returns:
            the logits after ``token``, shape ``(vocab,)`` (also kept as ``last_logits``).

        Raises:
            TypeError: ``token`` is not an integer.
            ValueError: ``token`` is outside the vocabulary or the context is full; the session
                is left unchanged.
        """
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            raise TypeError(f"decode takes one token id (an int), got {type(token).__name__}")
        return self.append([int(token)])

    def rewind(self, n_tokens: int, *, chunk_size: Optional[int] = None) -> None:
        """Goes back to holding only the first ``n_tokens`` tokens, exactly as if only they had
        been appended. ``last_logits`` is empty until the next append."""
        if n_tokens < 0:
            raise ValueError("n_tokens must be >= 0")
        self._core.rewind(n_tokens, self._chunk(chunk_size))

    def prefill(self, tokens: Sequence[int], *, chunk_size: Optional[int] = None) -> int:
        """Makes the session hold exactly ``tokens``, with the logits after the last one.

        Reuses the longest common prefix with what the session holds: only the tokens after
        the point where they differ are run (plus, when they differ in the middle, the few
        tokens between the nearest conv checkpoint and that point).

        Returns:
            how many tokens were run: the new ones, plus any re-run from a checkpoint (0 when
            the session already holds exactly ``tokens``).
        """
        tokens = token_ids(tokens)
        before = self._core.n_forwarded
        held = self.reuse_prefix(tokens, chunk_size=chunk_size)
        if held < len(tokens):
            self.append(tokens[held:], chunk_size=chunk_size)
        return self._core.n_forwarded - before

    def reuse_prefix(self, tokens: Sequence[int], *, chunk_size: Optional[int] = None) -> int:
        """The first half of :meth:`prefill`: rewinds to the longest prefix the session shares
        with ``tokens`` and returns its length; appending ``tokens[returned:]`` completes it.

        Returns ``len(tokens)`` only when the session already holds exactly ``tokens`` and the
        logits after them; otherwise at least the last token is left to run, for its logits.
        """
        tokens = token_ids(tokens)
        if not tokens:
            raise ValueError("prefill needs at least one token")
        held = self._core.tokens
        if held == tokens and len(self._core.last_logits) > 0:
            return len(tokens)  # already there, logits and all
        common = 0
        for a, b in zip(held, tokens):
            if a != b:
                break
            common += 1
        # The last token must be run to have its logits, so reuse at most all but one.
        common = min(common, len(tokens) - 1)
        if common < len(held):
            self.rewind(common, chunk_size=chunk_size)
        return common

    def checkpoint(self) -> None:
        """Records a conv checkpoint at the current position (the end of a chat turn, say)."""
        self._core.checkpoint()

    def fork(self) -> "Session":
        """An independent copy of this session. KV pages are shared copy-on-write, so forking
        costs little until the copies diverge."""
        return Session(self._core.fork(), self.chunk_size)

    def reset(self) -> None:
        """Forgets every token: the session is as new."""
        self._core.reset()

    def save(self, path: Union[str, "os.PathLike[str]", None] = None) -> Optional[bytes]:
        """A snapshot of the session (tokens, KV cache, conv states and checkpoints) tied to the
        model's fingerprint (its architecture and weights; not run-time options such as
        ``max_context``). Writes it to ``path`` if given (by convention ending in
        ``.lfmrt-session``), else returns the bytes. Restore with ``Model.load_session``."""
        snapshot = self._core.save()
        if path is None:
            return snapshot
        with open(path, "wb") as f:
            f.write(snapshot)
        return None

    @property
    def tokens(self) -> List[int]:
        """The tokens the session holds, in order."""
        return list(self._core.tokens)

    @property
    def n_tokens(self) -> int:
        """How many tokens the session holds."""
        return self._core.n_tokens

    @property
    def n_forwarded(self) -> int:
        """Tokens run through the model since the session was made (re-runs included): the
        work the session has cost."""
        return self._core.n_forwarded

    @property
    def n_checkpoints(self) -> int:
        """Conv checkpoints currently kept."""
        return self._core.n_checkpoints

    @property
    def memory_bytes(self) -> int:
        """Bytes of state this session holds (KV pages, conv states, checkpoints, tokens, logits)."""
        return self._core.memory_bytes

    @property
    def last_logits(self) -> np.ndarray:
        """The logits after the last appended token, shape ``(vocab,)`` (empty after a rewind)."""
        return self._core.last_logits

    def __repr__(self) -> str:
        return f"Session(n_tokens={self.n_tokens}, memory_bytes={self.memory_bytes})"


def append_batch(sessions: Sequence[Session], tokens: Sequence[Sequence[int]], chunk_size: int) -> None:
    """Appends ``tokens[i]`` to ``sessions[i]`` for every i in one batched forward pass (one item
    per session, at most ``chunk_size`` tokens in all per pass): a scheduler's joint prefill."""
    _core.Session.append_batch([session._core for session in sessions], [token_ids(t) for t in tokens], chunk_size)


def decode_batch(sessions: Sequence[Session], tokens: Sequence[int]) -> None:
    """One decode step for many sessions at once: ``tokens[i]`` runs at the next position of
    ``sessions[i]``, all in one forward pass that reads the weights once."""
    _core.Session.decode_batch([session._core for session in sessions], token_ids(tokens))
