"""A bounded pool of idle sessions reused by longest token prefix, so a conversation's next turn
(or any prompt sharing a prefix with earlier work, such as a common system prompt) runs only
its new tokens. ``Model.generate`` / ``stream`` / ``chat`` / ``chat_stream`` called without
``session=`` take their session from the model's pool and give it back when they end; the
server's engine draws on the same pool.

Sessions are hybrid-safe to reuse: a session rewinds through its conv checkpoints to the point
where a new prompt diverges from what it holds (``Session.reuse_prefix``, which the generation
calls), so a template that re-renders history differently costs a few re-run tokens, not the
conversation.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # numpy loads with the first model, not with `import lfmrt`
    import numpy as np

from ..session import Session
from .state import Generation, GenerationState

DEFAULT_MAX_SESSIONS = 8
DEFAULT_MAX_BYTES = 2**30


@dataclass
class _Idle:
    session: Session
    tokens: np.ndarray
    memory_bytes: int
    last_used: int


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    import numpy as np

    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class SessionPool:
    """Idle sessions, at most ``max_sessions`` of them holding at most ``max_bytes`` together
    (least recently used dropped first). Thread-safe.

    :meth:`acquire` hands out the session sharing the longest prefix with a prompt. A session
    whose history the prompt mostly follows is taken out of the pool as it is (no other caller
    can get it until it is released); one the prompt shares only a start with (another
    conversation with the same system prompt) is forked, copy-on-write, so its own conversation
    keeps it; with nothing shared, a new session is made. ``max_sessions=0`` turns reuse off.

    Args:
        new_session: makes an empty session (``Model.session``).
        max_sessions: idle sessions kept at most.
        max_bytes: the most state (``Session.memory_bytes``) the idle sessions may hold together.
    """

    def __init__(self, new_session: Callable[[], Session], *, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._new_session = new_session
        self._lock = threading.Lock()
        self._idle: List[_Idle] = []  # oldest first; guarded by _lock
        self._clock = itertools.count(1)
        self.max_sessions = 0
        self.max_bytes = 0
        self.set_bounds(max_sessions=max_sessions, max_bytes=max_bytes)

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)

    @property
    def memory_bytes(self) -> int:
        """Bytes of state the idle sessions hold."""
        with self._lock:
            return self._held_bytes()

    def set_bounds(self, *, max_sessions: Optional[int] = None, max_bytes: Optional[int] = None) -> None:
        """Changes the pool's bounds (those given) and drops what no longer fits.

        Raises:
            ValueError: a negative bound.
        """
        for name, value in (("max_sessions", max_sessions), ("max_bytes", max_bytes)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        with self._lock:
            if max_sessions is not None:
                self.max_sessions = max_sessions
            if max_bytes is not None:
                self.max_bytes = max_bytes
            self._trim()

    def acquire(self, prompt: Sequence[int]) -> Tuple[Session, int]:
        """A session for ``prompt`` and how many of its tokens the session already holds."""
        import numpy as np

        tokens = np.asarray(prompt, dtype=np.int64)
        with self._lock:
            best: Optional[_Idle] = None
            best_length = 0
            for entry in self._idle:  # oldest first: on a tie the most recent wins
                length = common_prefix(entry.tokens, tokens)
                if length > 0 and length >= best_length:
                    best, best_length = entry, length
            if best is not None and 2 * best_length >= len(best.tokens):
                self._idle.remove(best)
                return best.session, best_length
            if best is not None:
                best.last_used = next(self._clock)  # still useful to its own conversation
                self._idle.remove(best)
                self._idle.append(best)
                return best.session.fork(), best_length
        return self._new_session(), 0

    def release(self, session: Session) -> None:
        """Takes back a session no caller uses any more, then trims the pool to its bounds."""
        if session.n_tokens == 0:
            return
        import numpy as np

        entry = _Idle(session, np.asarray(session.tokens, dtype=np.int64), session.memory_bytes, 0)
        with self._lock:
            if any(idle.session is session for idle in self._idle):
                return
            entry.last_used = next(self._clock)
            self._idle.append(entry)
            self._trim()

    def clear(self) -> None:
        """Drops every idle session."""
        with self._lock:
            self._idle.clear()

    def _held_bytes(self) -> int:
        return sum(entry.memory_bytes for entry in self._idle)

    def _trim(self) -> None:
        while self._idle and (len(self._idle) > self.max_sessions or self._held_bytes() > self.max_bytes):
            self._idle.pop(0)  # the least recently used; its memory goes with its last reference


class PooledGeneration(Generation):
    """A :class:`Generation` on a session from a pool, given back to it when the generation
    ends, fails or is abandoned (its iterator closed)."""

    def __init__(self, state: GenerationState, pool: SessionPool, compute_threads: int) -> None:
        super().__init__(state, compute_threads)
        self._pool = pool

    def __iter__(self) -> Iterator[str]:
        try:
            yield from super().__iter__()
        finally:
            self._pool.release(self._state.session)
