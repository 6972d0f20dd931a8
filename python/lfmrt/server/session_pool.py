"""A bounded pool of sessions reused by longest token prefix, so a conversation's next turn
(or any prompt sharing a prefix with earlier work, such as a common system prompt) runs only
its new tokens.

Sessions are hybrid-safe to reuse: a session rewinds through its conv checkpoints to the point
where a new prompt diverges from what it holds (``Session.reuse_prefix``, which the generation
calls), so a template that re-renders history differently costs a few re-run tokens, not the
conversation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..session import Session


@dataclass
class _Idle:
    session: Session
    tokens: np.ndarray
    memory_bytes: int
    last_used: int = field(default=0)


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class SessionPool:
    """Idle sessions, at most ``max_sessions`` of them holding at most ``max_bytes`` together
    (least recently used dropped first). Not thread-safe: one thread (the engine's) owns it.

    :meth:`acquire` hands out the session sharing the longest prefix with a prompt. A session
    whose history the prompt mostly follows is taken as it is; one the prompt shares only a
    start with (another conversation with the same system prompt) is forked, copy-on-write,
    so its own conversation keeps it; with nothing shared, a new session is made.
    """

    def __init__(self, new_session: Callable[[], Session], *, max_sessions: int, max_bytes: int) -> None:
        self._new_session = new_session
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self._idle: List[_Idle] = []
        self._clock = itertools.count(1)

    def __len__(self) -> int:
        return len(self._idle)

    @property
    def memory_bytes(self) -> int:
        """Bytes of state the idle sessions hold."""
        return sum(entry.memory_bytes for entry in self._idle)

    def acquire(self, prompt: Sequence[int]) -> Tuple[Session, int]:
        """A session for ``prompt`` and how many of its tokens it already holds."""
        tokens = np.asarray(prompt, dtype=np.int64)
        best: Optional[_Idle] = None
        best_length = 0
        for entry in self._idle:
            length = common_prefix(entry.tokens, tokens)
            if length > best_length or (length == best_length and best is not None and entry.last_used > best.last_used):
                best, best_length = entry, length
        if best is None or best_length == 0:
            return self._new_session(), 0
        if 2 * best_length >= len(best.tokens):
            self._idle.remove(best)
            return best.session, best_length
        best.last_used = next(self._clock)  # still useful to its own conversation
        return best.session.fork(), best_length

    def release(self, session: Session) -> None:
        """Takes back a session no request uses any more, then trims the pool to its bounds."""
        if self.max_sessions == 0 or session.n_tokens == 0:
            return
        self._idle.append(_Idle(session, np.asarray(session.tokens, dtype=np.int64), session.memory_bytes,
                                next(self._clock)))
        self._idle.sort(key=lambda entry: entry.last_used)
        while self._idle and (len(self._idle) > self.max_sessions or self.memory_bytes > self.max_bytes):
            self._idle.pop(0)  # the least recently used; its memory goes with its last reference

    def clear(self) -> None:
        """Drops every idle session."""
        self._idle.clear()
