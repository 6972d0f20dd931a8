"""``lfmrt serve MODEL``: an OpenAI-compatible HTTP server for MODEL.

Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health and
GET /metrics (Prometheus). Concurrent requests are batched into shared forward steps, and
finished conversations' sessions are kept so the next turn runs only its new tokens.

It listens on 127.0.0.1 unless --host says otherwise (with no key, it warns about any other
address). With --api-key (or $LFMRT_API_KEY) every
/v1 route and /metrics needs `Authorization: Bearer <key>`. SIGTERM or Ctrl-C shuts down
gracefully: requests in flight get --shutdown-timeout seconds to finish. Needs the server
extra: pip install "lfmrt[server]".
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import Optional

from ..errors import LoadError
from . import common

NAME = "serve"


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Adds ``lfmrt serve``."""
    parser = subparsers.add_parser(NAME, help="serve a model over the OpenAI API", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_model_arguments(parser, optional=True)
    parser.add_argument("--demo", action="store_true", help="serve the bundled demo model")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", "-p", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--api-key", default=os.environ.get("LFMRT_API_KEY") or None,
                        help="require 'Authorization: Bearer KEY' (default: $LFMRT_API_KEY, else none)")
    parser.add_argument("--model-name", help="the id clients send as 'model' (default: from MODEL)")
    parser.add_argument("--max-sequences", type=int, default=16, metavar="N",
                        help="requests generating at once, batched together (default: 16)")
    parser.add_argument("--max-queue", type=int, default=256, metavar="N",
                        help="requests waiting for a slot before new ones get 503 (default: 256)")
    parser.add_argument("--max-sessions", type=int, default=64, metavar="N",
                        help="finished conversations kept for prefix reuse (default: 64)")
    parser.add_argument("--session-memory", default="2GiB", metavar="SIZE",
                        help="memory those kept sessions may hold together (default: 2GiB)")
    parser.add_argument("--max-body", default="4MiB", metavar="SIZE", help="largest request body (default: 4MiB)")
    parser.add_argument("--max-prompt-tokens", type=int, metavar="N", help="longest prompt (default: the context)")
    parser.add_argument("--max-tokens-limit", type=int, metavar="N",
                        help="largest max_tokens a request may ask for (default: the context)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="S",
                        help="seconds in-flight requests get to finish on SIGTERM (default: 30)")
    parser.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN", dest="allowed_origins",
                        help="a web origin (https://app.example.com, or '*') whose pages may call the server from "
                             "a browser (CORS); repeat for more (default: none)")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(func=run)


def _model_name(args: argparse.Namespace) -> str:
    if args.model_name:
        return args.model_name
    if args.model == "demo":
        return "lfmrt-demo"
    path = Path(args.model)
    if path.exists():
        return path.stem if path.is_file() else path.resolve().name
    return args.model  # a Hub repo id


def _ready_message(url: str, name: str, api_key: bool) -> str:
    auth = ' -H "Authorization: Bearer $LFMRT_API_KEY"' if api_key else ""
    return (
        f"lfmrt serve: {name} on {url}/v1 (OpenAI API; /health, /metrics)\n"
        f"  curl {url}/v1/chat/completions -H 'Content-Type: application/json'{auth} \\\n"
        f"    -d '{{\"model\": \"{name}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'"
    )


def exposure_warning(host: str, api_key: bool) -> Optional[str]:
    """The warning for a server other machines can reach with no key (None when it is not)."""
    if api_key or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:  # a host name: it may resolve to any address
        pass
    return (f"warning: listening on {host} with no --api-key (or $LFMRT_API_KEY): anyone who can reach this "
            "port can use the model")


def run(args: argparse.Namespace) -> int:
    """Serves until SIGTERM or Ctrl-C; returns the exit status."""
    prog = f"lfmrt {NAME}"
    if args.demo:
        if args.model not in (None, "demo"):
            return common.fail(prog, ValueError("give MODEL or --demo, not both"))
        args.model = "demo"
    if args.model is None:
        return common.fail(prog, ValueError("give MODEL (a path, a Hub repo id, or 'demo'), or --demo"))
    try:
        from ..server import ServerConfig, serve
        from ..server.config import parse_size
    except ImportError as error:
        return common.fail(prog, ImportError(f"{error.name or error} is missing: pip install \"lfmrt[server]\""))
    try:
        config = ServerConfig(
            model_name=_model_name(args),
            api_key=args.api_key,
            max_sequences=args.max_sequences,
            max_queue=args.max_queue,
            max_sessions=args.max_sessions,
            session_memory_bytes=parse_size(args.session_memory),
            max_body_bytes=parse_size(args.max_body),
            max_prompt_tokens=args.max_prompt_tokens,
            max_tokens_limit=args.max_tokens_limit,
            shutdown_timeout=args.shutdown_timeout,
            allowed_origins=tuple(args.allowed_origins),
        )
        model = common.load_model(args)
    except (LoadError, ValueError) as error:
        return common.fail(prog, error)

    def ready(url: str) -> None:
        print(_ready_message(url, config.model_name, config.api_key is not None), flush=True)
        warning = exposure_warning(args.host, config.api_key is not None)
        if warning is not None:
            print(warning, file=sys.stderr, flush=True)

    try:
        serve(model, config, host=args.host, port=args.port, log_level=args.log_level, on_ready=ready)
    except OSError as error:
        return common.fail(prog, OSError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}"))
    return 0
