"""Running the server: uvicorn on a socket bound first (so the URL printed is the real one,
port 0 included), with a graceful shutdown on SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import socket
import threading
from typing import Callable, List, Optional

import uvicorn

from ..model import Model
from .app import create_app
from .config import ServerConfig
from .engine import Engine


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6; port 0 picks a free one).

    Raises:
        OSError: the address cannot be bound (in use, not this machine's).
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, telling the engine first when it shuts down: requests still queued or
    running get the shutdown timeout to finish, then are cancelled (their streams end with an
    error event) before uvicorn closes the connections."""

    def __init__(self, config: uvicorn.Config, engine: Engine, timeout: float) -> None:
        super().__init__(config)
        self._engine = engine
        self._timeout = timeout

    async def shutdown(self, sockets: Optional[List[socket.socket]] = None) -> None:
        self._engine.drain(self._timeout)
        await super().shutdown(sockets)


def make_server(model: Model, config: ServerConfig, *, log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for ``model`` (run it with ``server.run(sockets=[bind(host, port)])``)."""
    app = create_app(model, config)
    uvicorn_config = uvicorn.Config(
        app, log_level=log_level, access_log=log_level == "debug",
        # uvicorn's own limit is a backstop: the engine cancels what is left at shutdown_timeout.
        timeout_graceful_shutdown=config.shutdown_timeout + 5,
    )
    return _GracefulServer(uvicorn_config, app.state.engine, config.shutdown_timeout)


def serve(model: Model, config: ServerConfig, *, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info", on_ready: Optional[Callable[[str], None]] = None) -> None:
    """Serves ``model`` until SIGTERM or Ctrl-C; ``on_ready(url)`` is called once the port is bound."""
    sock = bind(host, port)
    server = make_server(model, config, log_level=log_level)
    if on_ready is not None:
        on_ready(url_of(sock))
    if threading.current_thread() is not threading.main_thread():
        server.run(sockets=[sock])
        return
    # uvicorn handles SIGTERM and Ctrl-C itself, then raises the signal again once it has shut
    # down; with these handlers in place that second signal is a no-op, so a graceful shutdown
    # ends in a normal return (exit status 0), not in death by signal or a KeyboardInterrupt.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
