"""Continuous batching: many generations advance together, one token each per step."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, List, Mapping, Optional, Sequence, Union

from ..errors import ConstraintError
from ..session import DEFAULT_CHUNK_SIZE, Session, append_batch, decode_batch
from .completion import Completion, Piece, TokenLogprob
from .requests import GenerationModel, Prompt, generation_state, prompt_tokens, request_constraint
from .state import GenerationState, MaskWorker

if TYPE_CHECKING:
    from ..text.structured import Constraint


class Request:
    """A generation submitted to a :class:`Scheduler`.

    Attributes:
        text: the text produced so far.
        logprobs: with ``logprobs=True``, the :class:`TokenLogprob` of each token so far; else ``None``.
        completion: the result, once ``done`` (``finish_reason`` ``"cancelled"`` after
            :meth:`cancel`, ``"error"`` when the constraint could not go on).
        error: the :class:`~lfmrt.ConstraintError` that ended the request, or ``None``.
    """

    def __init__(self, scheduler: "Scheduler", state: GenerationState, logprobs: bool,
                 prefill_from: Optional["Request"] = None) -> None:
        self._scheduler = scheduler
        self._state = state
        self._prefill_from = prefill_from  # until it has prefilled this prompt for us (or ended)
        self.text = ""
        self.logprobs: Optional[List[TokenLogprob]] = [] if logprobs else None
        self.completion: Optional[Completion] = None
        self.error: Optional[ConstraintError] = None

    @property
    def done(self) -> bool:
        return self.completion is not None

    @property
    def session(self) -> Session:
        """The session the request runs on: the one it was submitted with, or a new one, or
        (with ``prefill_from``) a fork of that request's once its prompt is prefilled."""
        return self._state.session

    def cancel(self) -> None:
        """Ends the request now (from any thread; waits for a step under way to end): it is
        ``done`` with ``finish_reason == "cancelled"`` and the text so far, and the scheduler no
        longer touches its session, which may be reused at once. No-op once done."""
        self._scheduler._cancel(self)

    def _add(self, piece: Piece) -> None:
        self.text += piece
        if self.logprobs is not None and piece.logprobs:
            self.logprobs.extend(piece.logprobs)

    def _finish(self, reason: Optional[str] = None) -> None:
        """Records the completion; ``reason`` ends the generation early first."""
        if reason is not None:
            self._add(Piece(self._state.finish(reason)))
        else:
            self._state.session.checkpoint()  # a turn boundary: a later turn may diverge here
        self.completion = self._state.completion()


class Scheduler:
    """Steps many sequences together so each step reads the weights once for all of them.

    Requests join between steps and leave as soon as they finish, so the batch stays full while
    work is waiting: continuous batching. The prompts of requests admitted together are
    prefilled together too (one forward pass, one item per prompt), at most ``prefill_chunk``
    prompt tokens per step: a long prompt takes several steps while the other requests keep
    decoding.
    Greedy results equal those of running each request alone.

    Each request may have its own constraint (``constraint=``, ``response_format=``, ...);
    the constraint masks for the next tokens are computed on a worker thread while the batch's
    forward step runs. ``submit`` and ``Request.cancel`` may be called from any thread, also
    while another thread runs :meth:`step`; steps themselves run one at a time.

    Example::

        scheduler = lfmrt.Scheduler(model, max_batch=16)
        requests = [scheduler.submit(p, max_tokens=64) for p in prompts]
        scheduler.run()
        texts = [r.completion.text for r in requests]
    """

    def __init__(self, model: GenerationModel, *, max_batch: int = 64, prefill_chunk: int = DEFAULT_CHUNK_SIZE) -> None:
        """A scheduler with no requests yet.

        Args:
            model: the model every request runs on.
            max_batch: at most this many requests run (prefill or decode) at once.
            prefill_chunk: at most this many prompt tokens, over all requests, are prefilled in
                one step (bounds a step's time and activation memory).
        """
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if prefill_chunk < 1:
            raise ValueError("prefill_chunk must be at least 1")
        self._model = model
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self._waiting: Deque[Request] = deque()  # guarded by _queue_lock
        self._running: List[Request] = []  # replaced under both locks; read under either
        self._queue_lock = threading.Lock()
        self._step_lock = threading.RLock()
        self._masks = MaskWorker(model.n_threads)

    def submit(
        self,
        prompt: Prompt,
        *,
        max_tokens: int = 256,
        stop: Union[str, Sequence[str], None] = None,
        ignore_eos: bool = False,
        session: Optional[Session] = None,
        skip_special_tokens: bool = True,
        response_format: Optional[Mapping[str, Any]] = None,
        grammar: Union[str, Mapping[str, Any], None] = None,
        regex: Optional[str] = None,
        constraint: Optional["Constraint"] = None,
        prefill_from: Optional[Request] = None,
        **sampling: Any,
    ) -> Request:
        """Queues a generation (same options as ``Model.generate``, a constraint included); it
        starts at the next step. Safe to call from any thread.

        A ``session`` is continued as ``Model.generate`` does (only the prompt's tokens after
        the prefix it already holds are prefilled); no other active request may use it.

        ``prefill_from`` is an earlier request of this scheduler for the same prompt (another
        choice of one question, say): this one then waits until that one's prompt is prefilled
        and continues a fork of its session (KV pages shared copy-on-write), so n choices
        prefill their prompt once. If that request has moved past its prompt or ended first,
        this one prefills its own.

        Raises:
            ValueError: a bad option (prompt, sampling, constraint), a session in use, or
                ``prefill_from`` together with a session or from another scheduler.
        """
        if prefill_from is not None and session is not None:
            raise ValueError("give a session or prefill_from, not both: prefill_from's session is forked")
        if prefill_from is not None and prefill_from._scheduler is not self:
            raise ValueError("prefill_from must be a request of this scheduler")
        constraint = request_constraint(self._model, constraint, response_format=response_format, grammar=grammar, regex=regex)
        state = generation_state(
            self._model,
            prompt_tokens(self._model, prompt),
            max_tokens=max_tokens,
            stop=stop,
            ignore_eos=ignore_eos,
            sampling=sampling,
            session=session,
            skip_special_tokens=skip_special_tokens,
            constraint=constraint,
        )
        request = Request(self, state, logprobs=bool(sampling.get("logprobs")), prefill_from=prefill_from)
        with self._queue_lock:
            if session is not None and any(
                r._state.session is session and not r.done for r in (*self._running, *self._waiting)
            ):
                raise ValueError("the session is already in use by an unfinished request")
            self._waiting.append(request)
        return request

    @property
    def active(self) -> int:
        """Requests running or waiting."""
        with self._queue_lock:
            return len(self._running) + len(self._waiting)

    def _cancel(self, request: Request) -> None:
        with self._step_lock:
            if request.done:
                return
            with self._queue_lock:
                if request in self._waiting:
                    self._waiting.remove(request)
                else:
                    self._running = [r for r in self._running if r is not request]
            request._finish("cancelled")

    def step(self) -> List[Request]:
        """Admits waiting requests up to max_batch, prefills the next slice of the prompts not
        yet prefilled, samples one token for each request past its prompt, and runs those
        tokens through the model in one batched step. Returns the requests that finished in
        this step."""
        with self._step_lock:
            self._admit()
            self._masks.start([request._state for request in self._running])  # during the prefill
            try:
                self._prefill()
            finally:
                self._masks.wait()
            self._fork_prefilled()
            finished = self._decode()
            with self._queue_lock:
                self._running = [r for r in self._running if not r.done]
            return finished

    def run(self) -> None:
        """Steps until every submitted request has finished."""
        while self.active:
            self.step()

    def _admit(self) -> None:
        """Starts waiting requests, in order, while the batch has room; those waiting for their
        prefill_from's prompt stay in the queue, in their places."""
        with self._queue_lock:
            admitted, held = [], []
            while self._waiting and len(self._running) + len(admitted) < self.max_batch:
                request = self._waiting.popleft()
                (held if request._prefill_from is not None else admitted).append(request)
            self._waiting.extendleft(reversed(held))
            self._running = [*self._running, *admitted]
        for request in admitted:
            request._state.start_prefill()

    def _fork_prefilled(self) -> None:
        """Gives each waiting request whose prefill_from holds exactly its prompt now (prefilled,
        no token decoded yet) a fork of that session, before the decode moves it on; a request
        whose prefill_from has ended or moved on without it will prefill its own."""
        with self._queue_lock:
            followers = [request for request in self._waiting if request._prefill_from is not None]
        for request in followers:
            source = request._prefill_from
            assert source is not None
            if source.done or source not in self._running:
                if source.done:
                    request._prefill_from = None
                continue  # still waiting itself
            state = source._state
            if state.prefilling:
                continue
            if state.session.n_tokens == len(state.prompt_tokens) and not request.done:
                request._state.session = state.session.fork()
            request._prefill_from = None

    def _prefill(self) -> None:
        """Runs up to prefill_chunk prompt tokens, earliest admitted first, in one batched
        forward pass (one item per prompt)."""
        budget = self.prefill_chunk
        states, slices = [], []
        for request in self._running:
            state = request._state
            if budget == 0:
                break
            if state.prefilling:
                states.append(state)
                slices.append(state.prompt_to_run[:budget])
                budget -= len(slices[-1])
        if not states:
            return
        start = time.perf_counter()
        append_batch([state.session for state in states], slices, self.prefill_chunk)
        seconds = time.perf_counter() - start
        for state, tokens in zip(states, slices):
            state.prompt_ran(len(tokens), seconds)

    def _decode(self) -> List[Request]:
        """Samples a token for every request past its prompt, then runs them all one step."""
        finished: List[Request] = []
        sessions, tokens, stepping = [], [], []
        for request in self._running:
            state = request._state
            if state.prefilling:
                continue
            try:
                request._add(state.accept(state.sample()))
            except ConstraintError as error:
                request.error = error
                request._finish("error")
                finished.append(request)
                continue
            if state.finished:
                request._finish()
                finished.append(request)
            else:
                sessions.append(state.session)
                tokens.append(state.pending_token)
                stepping.append(state)
        if sessions:
            self._masks.start(stepping)  # the next tokens' masks, while the model runs these
            try:
                decode_batch(sessions, tokens)
            finally:
                self._masks.wait()
            for state in stepping:
                state.stepped()
        return finished
