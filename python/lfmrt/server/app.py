"""The HTTP layer: FastAPI routes of the OpenAI API over the :class:`~lfmrt.server.engine.Engine`.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models`` (and
``/v1/models/{id}``), ``GET /health``, ``GET /metrics`` (Prometheus). With an API key every
``/v1/*`` route and ``/metrics`` need ``Authorization: Bearer <key>``; ``/health`` and the
OpenAPI document (``/openapi.json``) stay open.

A request is checked and tokenized in a worker thread, queued on the engine (one job per
choice, ``n``), and answered from its events: whole, or streamed as server-sent events (the
choices' chunks interleaved as they come). While it waits or runs, the handler watches the
connection: a client that goes away cancels its sequences at the next engine step, freeing
their slots and returning their sessions to the pool.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..generation.completion import Completion
from ..model import Model
from . import jobs
from .config import ServerConfig
from .engine import Cancelled, Delta, Engine, Failed, Finished, Job, Started, Ticket
from .errors import APIError, install_error_handlers, log
from .metrics import CONTENT_TYPE, Metrics
from .protocol import ChatCompletionRequest, CompletionRequest
from .responses import SSE_DONE, ChatAnswer, ResponseWriter, TextAnswer, sse_error

Answer = Union[ChatAnswer, TextAnswer]


def _cancelled(event: Cancelled) -> APIError:
    return APIError(503, f"the request was cancelled: {event.reason}", code="cancelled")


def _raise_if_failed(event: Any) -> None:
    """Raises the error of a Failed or Cancelled event."""
    if isinstance(event, Failed):
        raise event.error
    if isinstance(event, Cancelled):
        raise _cancelled(event)


def _runs(events: Sequence[Tuple[int, Any]]) -> Iterator[Tuple[int, Any, List[Delta]]]:
    """``(index, event, deltas)`` for a sequence of choices' events, consecutive deltas of one
    choice joined into one run (``event`` is then the run's last, ``deltas`` the run)."""
    run: List[Delta] = []
    for position, (index, event) in enumerate(events):
        if isinstance(event, Delta):
            run.append(event)
            following = events[position + 1] if position + 1 < len(events) else None
            if following is None or following[0] != index or not isinstance(following[1], Delta):
                yield index, event, run
                run = []
        else:
            yield index, event, []


def _include_usage(body: Union[ChatCompletionRequest, CompletionRequest]) -> bool:
    return bool(body.stream and body.stream_options and body.stream_options.include_usage)


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, by Content-Length before reading and
    by counting while reading (a chunked body has no length)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> StarletteHTTPException:
        return StarletteHTTPException(413, f"the request body is {size} bytes; at most {self.max_bytes} are accepted")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            error = APIError(413, str(self._too_large(length.decode()).detail), code="body_too_large")
            await error.response()(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(f"more than {self.max_bytes}")
            return message

        await self.app(scope, counting_receive, send)


class RequestCounter:
    """Counts answered requests by route and status (unknown paths count as ``other``, so a
    scan of random URLs cannot grow the metrics without bound)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Callable[[], Set[str]]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def noting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            path = scope.get("path", "")
            route = path if path in self.routes() else "other"
            self.metrics.requests.labels(route=route, status=str(status)).inc()


async def _watch_disconnect(request: Request, on_disconnect: Callable[[], None]) -> None:
    """Calls ``on_disconnect`` when the client goes away (the body has been read, so the next
    ASGI message is the disconnect; uvicorn also sends it once the response is complete)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            on_disconnect()
            return


def create_app(model: Model, config: ServerConfig) -> FastAPI:
    """The server's ASGI app for ``model``; its lifespan starts and stops the engine.

    The engine is ``app.state.engine``, the metrics ``app.state.metrics``.
    """
    metrics = Metrics()
    engine = Engine(model, config, metrics)
    metrics.gauge("lfmrt_queue_depth", "requests waiting for a sequence", lambda: engine.queue_depth)
    metrics.gauge("lfmrt_running_sequences", "requests generating", lambda: engine.running)
    metrics.gauge("lfmrt_pooled_sessions", "idle sessions kept for prefix reuse", lambda: engine.pooled_sessions)
    metrics.gauge("lfmrt_pooled_session_bytes", "memory the idle sessions hold", lambda: engine.pooled_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            await run_in_threadpool(engine.stop)

    app = FastAPI(title="lfmrt", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="An OpenAI-compatible server for LFM2 models, on lfmrt.")
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.config = config
    install_error_handlers(app)
    bearer = HTTPBearer(auto_error=False)

    def authorized(credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> None:
        if config.api_key is None:
            return
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise APIError(401, "You didn't provide an API key: send it as 'Authorization: Bearer <key>'",
                           code="invalid_api_key")
        if not hmac.compare_digest(credentials.credentials.encode(), config.api_key.encode()):
            raise APIError(401, "Incorrect API key provided", code="invalid_api_key")

    guarded = [Depends(authorized)]

    async def answer(request: Request, choices: Sequence[Job], response: ResponseWriter, writers: Sequence[Answer],
                     stream: bool) -> Response:
        """Runs the choices' jobs on the engine and answers from their events (see the module
        docstring): a whole body once every choice has finished, or a stream of every choice's
        chunks as they come."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()  # (choice index, event)
        tickets: List[Ticket] = []

        def cancel_all() -> None:
            for ticket in tickets:
                engine.cancel(ticket)

        def sink(index: int) -> Callable[[Any], None]:
            return lambda event: loop.call_soon_threadsafe(events.put_nowait, (index, event))

        try:
            for index, job in enumerate(choices):  # the choices share the first one's prefill
                tickets.append(engine.submit(job, sink(index), prefill_from=tickets[0] if tickets else None))
        except APIError:
            cancel_all()
            raise
        watcher = asyncio.ensure_future(_watch_disconnect(request, cancel_all))
        completions: List[Optional[Completion]] = [None] * len(choices)
        held: List[Tuple[int, Any]] = []  # events that came before the first choice started
        try:
            while True:  # until the first choice starts: one that cannot start is an HTTP error, not a stream's
                index, event = await events.get()
                _raise_if_failed(event)
                if isinstance(event, Started) and index == 0:
                    break
                held.append((index, event))
            if not stream:
                for index, event in held:
                    if isinstance(event, Finished):
                        completions[index] = event.completion
                while any(completion is None for completion in completions):
                    index, event = await events.get()
                    _raise_if_failed(event)
                    if isinstance(event, Finished):
                        completions[index] = event.completion
                done = [completion for completion in completions if completion is not None]
                body = response.body([writer.choice(completion) for writer, completion in zip(writers, done)], done)
                for writer in writers:
                    _note_parse_errors(writer)
                return JSONResponse(body)
        except BaseException:
            watcher.cancel()
            cancel_all()
            raise
        finally:
            if not stream:
                watcher.cancel()

        async def chunks() -> AsyncIterator[bytes]:
            try:
                for writer in writers:
                    first_chunk = writer.first_chunk()
                    if first_chunk is not None:
                        yield first_chunk
                pending = held
                while True:
                    if not pending:
                        pending = [await events.get()]
                    while not events.empty():  # catch up on a slow reader
                        pending.append(events.get_nowait())
                    for index, event, deltas in _runs(pending):
                        writer = writers[index]
                        if deltas:
                            logprobs = [entry for delta in deltas for entry in delta.logprobs or ()]
                            for chunk in writer.piece_chunks("".join(delta.text for delta in deltas), logprobs):
                                yield chunk
                        elif isinstance(event, Finished):
                            for chunk in writer.final_chunks(event.completion):
                                yield chunk
                            _note_parse_errors(writer)
                            completions[index] = event.completion
                        elif isinstance(event, (Failed, Cancelled)):
                            error = event.error if isinstance(event, Failed) else _cancelled(event)
                            yield sse_error(error)
                            return
                    pending = []
                    if all(completion is not None for completion in completions):
                        usage_chunk = response.usage_chunk([c for c in completions if c is not None])
                        if usage_chunk is not None:
                            yield usage_chunk
                        yield SSE_DONE
                        return
            finally:
                watcher.cancel()
                cancel_all()  # nothing happens to those that have finished

        return StreamingResponse(chunks(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _note_parse_errors(writer: Answer) -> None:
        for error in writer.parse_errors:
            metrics.tool_parse_failures.inc()
            log.warning("a tool-call block in an answer could not be parsed: %s", error)

    @app.post("/v1/chat/completions", dependencies=guarded, tags=["openai"])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        """Creates a model response for the given chat conversation (OpenAI's API)."""
        arrived = time.perf_counter()
        prepared = await run_in_threadpool(jobs.chat_job, model, config, body, arrived)
        response = ResponseWriter(config.model_name, "chat", include_usage=_include_usage(body))
        writers = [ChatAnswer(response, index, parse_tools=prepared.parse_tools,
                              parallel_tool_calls=prepared.parallel_tool_calls) for index in range(len(prepared.jobs))]
        return await answer(request, prepared.jobs, response, writers, bool(body.stream))

    @app.post("/v1/completions", dependencies=guarded, tags=["openai"])
    async def completions(body: CompletionRequest, request: Request) -> Response:
        """Continues a text prompt (OpenAI's legacy completions API)."""
        arrived = time.perf_counter()
        prepared = await run_in_threadpool(jobs.completion_job, model, config, body, arrived)
        response = ResponseWriter(config.model_name, "text", include_usage=_include_usage(body))
        writers = [TextAnswer(response, index, echo=prepared.echo) for index in range(len(prepared.jobs))]
        return await answer(request, prepared.jobs, response, writers, bool(body.stream))

    def model_card() -> dict:
        return {"id": config.model_name, "object": "model", "created": started, "owned_by": "lfmrt",
                "max_model_len": model.max_context}

    started = int(time.time())

    @app.get("/v1/models", dependencies=guarded, tags=["openai"])
    async def list_models() -> dict:
        """Lists the model this server serves."""
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}", dependencies=guarded, tags=["openai"])
    async def retrieve_model(model_id: str) -> dict:
        """Describes the served model (404 for any other id)."""
        jobs.check_model(config, model_id)
        return model_card()

    @app.get("/health", tags=["server"])
    async def health() -> dict:
        """Whether the server is up (no key needed)."""
        return {"status": "ok", "model": config.model_name}

    @app.get("/metrics", dependencies=guarded, tags=["server"])
    async def prometheus_metrics() -> Response:
        """Requests, tokens, queue depth, time to first token and token latency, in Prometheus' format."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    route_paths = {route.path for route in app.routes}
    if config.allowed_origins:  # answers preflight requests itself, before the key is checked
        app.add_middleware(CORSMiddleware, allow_origins=list(config.allowed_origins), allow_methods=["GET", "POST"],
                           allow_headers=["*"], max_age=600)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(RequestCounter, metrics=metrics, routes=lambda: route_paths)  # outermost: counts 413s too
    return app
