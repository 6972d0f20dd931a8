"""Continuous batching: many generations advance together, one token each per step."""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Deque, List, Optional, Sequence, Union

from ..session import DEFAULT_CHUNK_SIZE, Session, append_batch, decode_batch
from .completion import Completion
from .requests import GenerationModel, Prompt, generation_state, prompt_tokens
from .state import GenerationState


class Request:
    """A generation submitted to a :class:`Scheduler`.

    Attributes:
        text: the text produced so far.
        completion: the result, once ``done``.
    """

    def __init__(self, state: GenerationState) -> None:
        self._state = state
        self.text = ""
        self.completion: Optional[Completion] = None

    @property
    def done(self) -> bool:
        return self.completion is not None


class Scheduler:
    """Steps many sequences together so each step reads the weights once for all of them.

    Requests join between steps and leave as soon as they finish, so the batch stays full while
    work is waiting: continuous batching. The prompts of requests admitted together are
    prefilled together too (one forward pass, one item per prompt), at most ``prefill_chunk``
    prompt tokens per step: a long prompt takes several steps while the other requests keep
    decoding.
    Greedy results equal those of running each request alone.

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
        self._waiting: Deque[Request] = deque()
        self._running: List[Request] = []

    def submit(
        self,
        prompt: Prompt,
        *,
        max_tokens: int = 256,
        stop: Union[str, Sequence[str], None] = None,
        ignore_eos: bool = False,
        session: Optional[Session] = None,
        skip_special_tokens: bool = True,
        **sampling: Any,
    ) -> Request:
        """Queues a generation (same options as ``Model.generate``); it starts at the next step.

        A ``session`` is continued as ``Model.generate`` does (only the prompt's tokens after
        the prefix it already holds are prefilled); no other active request may use it.
        """
        if session is not None and any(r._state.session is session for r in (*self._running, *self._waiting)):
            raise ValueError("the session is already in use by an unfinished request")
        state = generation_state(
            self._model,
            prompt_tokens(self._model, prompt),
            max_tokens=max_tokens,
            stop=stop,
            ignore_eos=ignore_eos,
            sampling=sampling,
            session=session,
            skip_special_tokens=skip_special_tokens,
        )
        request = Request(state)
        self._waiting.append(request)
        return request

    @property
    def active(self) -> int:
        """Requests running or waiting."""
        return len(self._running) + len(self._waiting)

    def step(self) -> List[Request]:
        """Admits waiting requests up to max_batch, prefills the next slice of the prompts not
        yet prefilled, samples one token for each request past its prompt, and runs those
        tokens through the model in one batched step. Returns the requests that finished in
        this step."""
        self._admit()
        self._prefill()
        finished = self._decode()
        self._running = [r for r in self._running if not r.done]
        return finished

    def run(self) -> None:
        """Steps until every submitted request has finished."""
        while self.active:
            self.step()

    def _admit(self) -> None:
        while self._waiting and len(self._running) < self.max_batch:
            request = self._waiting.popleft()
            request._state.start_prefill()
            self._running.append(request)

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
            request.text += state.accept(state.sample())
            if state.finished:
                state.session.checkpoint()
                request.completion = state.completion()
                finished.append(request)
            else:
                sessions.append(state.session)
                tokens.append(state.pending_token)
                stepping.append(state)
        if sessions:
            decode_batch(sessions, tokens)
            for state in stepping:
                state.stepped()
        return finished
