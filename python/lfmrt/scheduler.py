"""Continuous batching: many generations advance together, one token each per step."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Deque, List, Optional, Sequence

from . import _core
from .generation import Completion, GenerationState

if TYPE_CHECKING:
    from .model import Model, Prompt


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

    Requests join between steps (their prompts are prefilled when they are admitted) and leave
    as soon as they finish, so the batch stays full while work is waiting: continuous batching.
    Greedy results equal those of running each request alone.

    Example::

        scheduler = lfmrt.Scheduler(model, max_batch=16)
        requests = [scheduler.submit(p, max_tokens=64) for p in prompts]
        scheduler.run()
        texts = [r.completion.text for r in requests]
    """

    def __init__(self, model: "Model", *, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._model = model
        self.max_batch = max_batch
        self._waiting: Deque[Request] = deque()
        self._running: List[Request] = []

    def submit(
        self,
        prompt: "Prompt",
        *,
        max_tokens: int = 256,
        stop: Optional[Sequence[str]] = None,
        ignore_eos: bool = False,
        **sampling: Any,
    ) -> Request:
        """Queues a generation (same options as ``Model.generate``); it starts at the next step."""
        state = self._model._generation_state(
            self._model._prompt_tokens(prompt), max_tokens, stop, ignore_eos, sampling, session=None
        )
        request = Request(state)
        self._waiting.append(request)
        return request

    @property
    def active(self) -> int:
        """Requests running or waiting."""
        return len(self._running) + len(self._waiting)

    def step(self) -> List[Request]:
        """Admits waiting requests up to max_batch, samples one token for each running request,
        and runs all their tokens through the model in one batched step. Returns the requests
        that finished in this step."""
        while self._waiting and len(self._running) < self.max_batch:
            request = self._waiting.popleft()
            request._state.prefill()
            self._running.append(request)

        finished: List[Request] = []
        sessions, tokens, stepping = [], [], []
        for request in self._running:
            state = request._state
            request.text += state.accept(state.sample())
            if state.finished:
                state.session.checkpoint()
                request.completion = state.completion()
                finished.append(request)
            else:
                sessions.append(state.session._core)
                tokens.append(state.pending_token)
                stepping.append(state)
        if sessions:
            _core.Session.decode_batch(sessions, tokens)
            for state in stepping:
                state.stepped()
        self._running = [r for r in self._running if not r.done]
        return finished

    def run(self) -> None:
        """Steps until every submitted request has finished."""
        while self.active:
            self.step()
