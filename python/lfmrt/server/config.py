"""What a server is allowed to do: :class:`ServerConfig`, its limits and pool sizes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes in a size such as ``"4MiB"``, ``"2GB"`` or ``"1048576"``.

    Raises:
        ValueError: not a size.
    """
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write e.g. 4MiB, 2GB or a number of bytes)")
    return int(float(match.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class ServerConfig:
    """How an lfmrt server runs and what it accepts.

    Attributes:
        model_name: the id clients name in ``"model"`` (and ``GET /v1/models`` lists).
        api_key: when set, every ``/v1/*`` and ``/metrics`` request needs
            ``Authorization: Bearer <api_key>``.
        max_sequences: requests generating at once (the scheduler's batch); more wait in a queue.
        max_queue: requests waiting for a slot before new ones are refused (503).
        max_sessions: finished conversations' sessions kept for prefix reuse (least recently
            used dropped first).
        session_memory_bytes: the most memory those kept sessions may hold together.
        max_body_bytes: the largest request body accepted (413 beyond).
        max_prompt_tokens: the longest prompt accepted (default: the model's context less one).
        max_tokens_limit: the largest ``max_tokens`` a request may ask for (default: the context).
        shutdown_timeout: seconds in-flight requests get to finish on SIGTERM before they are
            cancelled.
        allowed_origins: web page origins (``"https://app.example.com"``, or ``"*"`` for any)
            whose scripts may call the server from a browser (CORS). None by default, so a page
            the user happens to visit cannot use a server on their machine.
    """

    model_name: str
    api_key: Optional[str] = None
    max_sequences: int = 16
    max_queue: int = 256
    max_sessions: int = 64
    session_memory_bytes: int = 2 * 2**30
    max_body_bytes: int = 4 * 2**20
    max_prompt_tokens: Optional[int] = None
    max_tokens_limit: Optional[int] = None
    shutdown_timeout: float = 30.0
    allowed_origins: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_sequences", "max_queue", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_sessions", "session_memory_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_prompt_tokens", "max_tokens_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must be >= 0, got {self.shutdown_timeout}")
        for origin in self.allowed_origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"allowed_origins: {origin!r} is not an origin (scheme://host[:port], no path) "
                                 "or '*'")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty (leave it unset for no key)")
