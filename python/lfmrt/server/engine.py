"""The engine under the server: one model, one :class:`~lfmrt.Scheduler` stepped by one
background thread, and a pool of sessions reused by longest prefix.

Every in-flight request is one sequence of the scheduler, so concurrent requests share each
forward step (continuous batching: a request joins between steps, its prompt is prefilled in
chunks while the others decode, and it leaves as soon as it finishes). Other threads (the HTTP
server's event loop) only queue commands, submit and cancel, under a lock; the engine thread
alone touches the scheduler, between steps, so it need not be thread-safe; the session pool is
the model's (``Model.session_pool``, thread-safe), shared with in-process calls.
Each request's output comes back as events passed to the callback it was submitted with, on
the engine thread: :class:`Started`, then :class:`Delta` pieces, then one of
:class:`Finished`, :class:`Failed` or :class:`Cancelled`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from ..generation.completion import Completion
from ..generation.scheduler import Request, Scheduler
from ..model import Model
from ..session import Session
from .config import ServerConfig
from .errors import APIError
from .metrics import Metrics

log = logging.getLogger("lfmrt.server")


@dataclass(frozen=True)
class Job:
    """One generation to run: the prompt's token ids and what ``Scheduler.submit`` takes.

    Attributes:
        prompt: the prompt's token ids.
        max_tokens: at most this many new tokens.
        stop: stop strings.
        sampling: sampling keywords (``temperature``, ``seed``, ...); unset ones are the model's.
        constraint: a ``lfmrt.text.structured.Constraint`` (response_format, tools), or None.
        top_logprobs: None for no logprobs; else how many alternatives to report per token.
        arrived: ``time.perf_counter()`` when the request arrived (for time to first token).
    """

    prompt: List[int]
    max_tokens: int
    stop: List[str] = field(default_factory=list)
    sampling: Dict[str, Any] = field(default_factory=dict)
    constraint: Any = None
    top_logprobs: Optional[int] = None
    arrived: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Started:
    """The request has a sequence in the scheduler: its prompt is being prefilled."""


@dataclass(frozen=True)
class Delta:
    """New text (possibly several tokens' worth when the client reads slower than the model),
    with the new tokens' ``TokenLogprob`` entries when the job asked for logprobs (else None)."""

    text: str
    logprobs: Optional[List[Any]] = None


@dataclass(frozen=True)
class Finished:
    """The generation ended (end of turn, stop string or max_tokens)."""

    completion: Completion


@dataclass(frozen=True)
class Failed:
    """The request could not run: ``error`` is a 4xx (bad input) or 5xx (a fault) APIError."""

    error: APIError


@dataclass(frozen=True)
class Cancelled:
    """The request was cancelled (its client went away, or the server is shutting down)."""

    reason: str


Event = Any  # Started | Delta | Finished | Failed | Cancelled
Sink = Callable[[Event], None]


class Ticket:
    """A submitted job: the handle to cancel it by, and its state on the engine thread."""

    def __init__(self, job: Job, sink: Sink, prefill_from: Optional["Ticket"] = None) -> None:
        self.job = job
        self._sink = sink
        self.prefill_from = prefill_from
        self.request: Optional[Request] = None
        self.holds_session = False  # the request's session is to go back to the pool
        self.sent = 0  # characters of request.text already sent as deltas
        self.sent_logprobs = 0  # entries of request.logprobs already sent
        self.last_piece_time: Optional[float] = None
        self.closed = False  # a final event (Finished, Failed, Cancelled) was sent

    def emit(self, event: Event) -> None:
        if self.closed:
            return
        self.closed = isinstance(event, (Finished, Failed, Cancelled))
        try:
            self._sink(event)
        except Exception:  # the receiver is gone (its event loop closed): nothing to tell
            log.debug("dropped %s for a request whose receiver is gone", type(event).__name__, exc_info=True)


class Engine:
    """Runs many generations on one model together (see the module docstring).

    Args:
        model: the model to serve.
        config: limits: ``max_sequences`` at once, ``max_queue`` waiting, the session pool's bounds.
        metrics: where to record tokens and latencies (optional).
    """

    def __init__(self, model: Model, config: ServerConfig, metrics: Optional[Metrics] = None) -> None:
        self.model = model
        self.config = config
        self._metrics = metrics
        self._scheduler = Scheduler(model, max_batch=config.max_sequences)
        # The model's own pool, so in-process calls and requests reuse each other's prefixes.
        self._pool = model.session_pool
        self._pool.set_bounds(max_sessions=config.max_sessions, max_bytes=config.session_memory_bytes)
        self._wake = threading.Condition()
        self._commands: Deque[Tuple[str, Ticket]] = deque()  # guarded by _wake
        self._accepting = True  # guarded by _wake
        self._stopping = False  # guarded by _wake
        self._drain_deadline: Optional[float] = None  # time.monotonic() to cancel at; guarded by _wake
        self._queued = 0  # submitted, not yet admitted; guarded by _wake
        self._pending: Deque[Ticket] = deque()  # engine thread only
        self._running: List[Ticket] = []  # engine thread only
        self._thread: Optional[threading.Thread] = None
        # Read by /metrics from other threads: plain ints, written by the engine thread only.
        self.running = 0
        self.pooled_sessions = 0
        self.pooled_bytes = 0

    # --- other threads ------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a sequence."""
        with self._wake:
            return self._queued

    def start(self) -> None:
        """Starts the engine thread."""
        if self._thread is not None:
            raise RuntimeError("the engine is already started")
        self._thread = threading.Thread(target=self._run, name="lfmrt-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job, sink: Sink, prefill_from: Optional[Ticket] = None) -> Ticket:
        """Queues ``job``; its events go to ``sink`` (called on the engine thread). With
        ``prefill_from``, a ticket submitted earlier for the same prompt (another choice of the
        request), the job continues a fork of that one's session once its prompt is prefilled
        instead of prefilling it again (``Scheduler.submit``'s ``prefill_from``).

        Raises:
            APIError: 503 when the queue is full or the server is shutting down.
        """
        ticket = Ticket(job, sink, prefill_from)
        with self._wake:
            if not self._accepting:
                raise APIError(503, "the server is shutting down", code="shutting_down")
            if self._queued >= self.config.max_queue:
                raise APIError(503, f"the server is busy: {self._queued} requests are waiting already",
                               code="queue_full")
            self._queued += 1
            self._commands.append(("submit", ticket))
            self._wake.notify()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Cancels ``ticket``'s generation (nothing happens if it has finished): its sequence
        leaves the batch at the next step and its session goes back to the pool."""
        with self._wake:
            self._commands.append(("cancel", ticket))
            self._wake.notify()

    def drain(self, timeout: float) -> None:
        """Starts a graceful shutdown: new submissions are refused (503) and what is queued or
        running gets ``timeout`` seconds to finish before it is cancelled."""
        with self._wake:
            self._accepting = False
            self._drain_deadline = time.monotonic() + timeout
            self._wake.notify()

    def stop(self) -> None:
        """Cancels every request still queued or running and stops the engine thread."""
        with self._wake:
            self._accepting = False
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # --- the engine thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if not self._iteration():
                    return
            except Exception as error:  # a fault here must not kill the engine: fail what it held
                log.exception("the engine failed; failing its %d requests", len(self._running) + len(self._pending))
                self._fail_everything(error)

    def _iteration(self) -> bool:
        """Takes the queued commands, admits what fits, runs one step; False once stopped."""
        with self._wake:
            while not (self._commands or self._stopping or self._pending or self._running):
                self._wake.wait()
            commands = list(self._commands)
            self._commands.clear()
            stopping = self._stopping
            deadline = self._drain_deadline
        for kind, ticket in commands:
            if kind == "submit":
                self._pending.append(ticket)
            else:
                self._cancel(ticket, "cancelled by the client")
        if deadline is not None and time.monotonic() >= deadline:
            for ticket in [*self._pending, *self._running]:
                self._cancel(ticket, "the server is shutting down")
        if stopping:
            for ticket in [*self._pending, *self._running]:
                self._cancel(ticket, "the server is shutting down")
            self._pool.clear()
            return False
        self._admit()
        if self._running:
            self._step()
        self._update_gauges()
        return True

    def _fail_everything(self, error: Exception) -> None:
        """Fails every queued and running request with a 500 and starts on a fresh scheduler
        (the failed requests' sessions are dropped, not pooled: their state is unknown)."""
        failure = APIError(500, f"generation failed: {type(error).__name__}: {error}", type="server_error")
        for ticket in [*self._pending, *self._running]:
            ticket.emit(Failed(failure))
        with self._wake:
            self._queued -= len(self._pending)
        self._pending.clear()
        self._running = []
        self._scheduler = Scheduler(self.model, max_batch=self.config.max_sequences)
        self._update_gauges()

    def _admit(self) -> None:
        """Gives waiting jobs a session and a place in the scheduler while it has room."""
        while self._pending and len(self._running) < self.config.max_sequences:
            ticket = self._pending.popleft()
            with self._wake:
                self._queued -= 1
            job = ticket.job
            extra: Dict[str, Any] = {}
            source = ticket.prefill_from
            session: Optional[Session] = None
            if source is not None and source.request is not None and not source.request.done:
                extra["prefill_from"] = source.request
            else:
                session, _ = self._pool.acquire(job.prompt)
            if job.constraint is not None:
                extra["constraint"] = job.constraint
            if job.top_logprobs is not None:
                extra["logprobs"] = True
                extra["top_logprobs"] = job.top_logprobs
            try:
                request = self._scheduler.submit(job.prompt, max_tokens=job.max_tokens, stop=job.stop,
                                                 session=session, **extra, **job.sampling)
            except (ValueError, TypeError) as error:
                if session is not None:
                    self._pool.release(session)
                ticket.emit(Failed(APIError(400, str(error))))
                continue
            ticket.request, ticket.holds_session = request, True
            self._running.append(ticket)
            ticket.emit(Started())

    def _step(self) -> None:
        if self._metrics is not None:
            self._metrics.step_sequences.observe(len(self._running))
        self._scheduler.step()
        now = time.perf_counter()
        still_running = []
        for ticket in self._running:
            request = ticket.request
            assert request is not None
            new_logprobs = request.logprobs[ticket.sent_logprobs :] if request.logprobs is not None else None
            if len(request.text) > ticket.sent or new_logprobs:
                if len(request.text) > ticket.sent:
                    self._note_piece(ticket, now)
                ticket.emit(Delta(request.text[ticket.sent :], new_logprobs))
                ticket.sent = len(request.text)
                ticket.sent_logprobs += len(new_logprobs or ())
            if request.done:
                assert request.completion is not None
                if ticket.last_piece_time is None:
                    self._note_piece(ticket, now)
                self._finish(ticket)
                if request.error is not None:  # the mask (with logit_bias) left no token
                    ticket.emit(Failed(APIError(400, f"the answer's constraint could not go on: {request.error}",
                                                code="constraint_failed")))
                else:
                    ticket.emit(Finished(request.completion))
            else:
                still_running.append(ticket)
        self._running = still_running

    def _note_piece(self, ticket: Ticket, now: float) -> None:
        if self._metrics is not None:
            if ticket.last_piece_time is None:
                self._metrics.time_to_first_token.observe(now - ticket.job.arrived)
            else:
                self._metrics.inter_token_latency.observe(now - ticket.last_piece_time)
        ticket.last_piece_time = now

    def _finish(self, ticket: Ticket) -> None:
        """Returns a finished request's session to the pool and counts its tokens."""
        request = ticket.request
        self._release(ticket)
        if self._metrics is not None and request is not None and request.completion is not None:
            self._metrics.count_completion(request.completion)

    def _cancel(self, ticket: Ticket, reason: str) -> None:
        if ticket.closed:
            return
        if ticket in self._pending:
            self._pending.remove(ticket)
            with self._wake:
                self._queued -= 1
        elif ticket in self._running:
            assert ticket.request is not None
            ticket.request.cancel()
            self._running.remove(ticket)
            self._release(ticket)
        if self._metrics is not None:
            self._metrics.cancelled.inc()
        ticket.emit(Cancelled(reason))

    def _release(self, ticket: Ticket) -> None:
        """Returns the session a ticket's request ran on (a fork, for one that shared another's
        prefill) to the pool, once."""
        if ticket.holds_session and ticket.request is not None:
            self._pool.release(ticket.request.session)
        ticket.holds_session = False

    def _update_gauges(self) -> None:
        self.running = len(self._running)
        self.pooled_sessions = len(self._pool)
        self.pooled_bytes = self._pool.memory_bytes
