"""One model's rows through continuous batching: :class:`BatchEngine`.

A thread of the engine's own steps a :class:`~lfmrt.Scheduler`; rows are submitted from any
thread (Ray's async actor loop, or ``lfmrt batch``'s main thread) and come back as futures, so
the batch stays full across the caller's batches instead of draining at the end of each. This
module imports no Ray.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Mapping, Optional, Tuple

from ..generation.scheduler import Request, Scheduler
from .rows import ROW_ERRORS, STRUCTURED, Constraints, RowRequest, check_sampling_params, output_columns, row_request

if TYPE_CHECKING:
    from ..model import Model

_Pending = Tuple[RowRequest, "Future[Dict[str, Any]]", float]


class BatchEngine:
    """Runs rows (see :mod:`lfmrt.ray.rows`) on ``model``, many at a time.

    ``submit(row)`` returns a future of the row's output columns; a row that cannot run (see
    ``rows.ROW_ERRORS``) fails its own future and no other. At most ``max_batch`` rows are in the
    scheduler at once (each holds a session); the rest wait in the engine's queue, in order.

    Example::

        engine = BatchEngine(lfmrt.Model.load("demo"), sampling_defaults={"temperature": 0})
        futures = [engine.submit({"prompt": p}) for p in prompts]
        texts = [f.result()["generated_text"] for f in futures]
        engine.close()
    """

    def __init__(
        self,
        model: "Model",
        *,
        sampling_defaults: Optional[Mapping[str, Any]] = None,
        apply_chat_template: bool = True,
        max_batch: int = 64,
    ) -> None:
        """Starts the engine's thread.

        Args:
            model: the model every row runs on.
            sampling_defaults: ``sampling_params`` under every row's own (vLLM's names).
            apply_chat_template: render a row's ``messages`` with the model's chat template.
            max_batch: at most this many rows step together.

        Raises:
            ValueError, TypeError: a bad ``sampling_defaults`` value (its structured output
                compiled here, so an invalid schema fails now, not every row) or ``max_batch``.
            ImportError: a structured output in the defaults without the grammar engine.
        """
        self._model = model
        self._defaults = check_sampling_params(dict(sampling_defaults or {}))
        self._apply_chat_template = apply_chat_template
        self._constraints = Constraints(model)
        if STRUCTURED in self._defaults:
            self._constraints.get(self._defaults[STRUCTURED])
        self._scheduler = Scheduler(model, max_batch=max_batch)
        self._queue: Deque[_Pending] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lfmrt-batch-engine", daemon=True)
        self._thread.start()

    def submit(self, row: Mapping[str, Any]) -> "Future[Dict[str, Any]]":
        """Queues ``row``; its future gives the output columns (``rows.output_columns``), or
        raises the row's error. The prompt is tokenized (and templated) here, in the caller's
        thread.

        Raises:
            RuntimeError: the engine is closed.
        """
        future: "Future[Dict[str, Any]]" = Future()
        start = time.perf_counter()
        try:
            request = row_request(self._model, row, self._defaults, self._apply_chat_template, self._constraints)
        except ROW_ERRORS as error:
            future.set_exception(error)
            return future
        with self._wake:
            if self._closed:
                raise RuntimeError("the batch engine is closed")
            self._queue.append((request, future, start))
            self._wake.notify()
        return future

    def close(self) -> None:
        """Stops the thread after its current step; unfinished rows fail with RuntimeError."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        running: Dict[Request, _Pending] = {}
        try:
            while True:
                with self._wake:
                    while not self._queue and not running and not self._closed:
                        self._wake.wait()
                    if self._closed:
                        return
                    admitted = self._admit(running)
                self._start(admitted, running)
                if running:
                    self._step(running)
        finally:
            closed = RuntimeError("the batch engine was closed before the row finished")
            for _, future, _ in [*running.values(), *self._queue]:
                if not future.done():
                    future.set_exception(closed)

    def _admit(self, running: Dict[Request, _Pending]) -> List[_Pending]:
        """Takes queued rows while the scheduler has room (called with the lock held)."""
        admitted = []
        while self._queue and len(running) + len(admitted) < self._scheduler.max_batch:
            admitted.append(self._queue.popleft())
        return admitted

    def _start(self, admitted: List[_Pending], running: Dict[Request, _Pending]) -> None:
        for pending in admitted:
            request, future, _ = pending
            try:
                handle = self._scheduler.submit(request.tokens, **request.submit_kwargs())
            except ROW_ERRORS as error:  # too long for the context, a sampling value out of range
                future.set_exception(error)
                continue
            running[handle] = pending

    def _step(self, running: Dict[Request, _Pending]) -> None:
        try:
            finished = self._scheduler.step()
        except Exception as error:  # noqa: BLE001 - the engine's failure is every running row's
            # A step that raised leaves the scheduler's sessions in no known state: fail the rows
            # it held and go on with a fresh scheduler, so queued rows still run.
            for _, future, _ in running.values():
                future.set_exception(error)
            running.clear()
            self._scheduler = Scheduler(self._model, max_batch=self._scheduler.max_batch)
            return
        now = time.perf_counter()
        for handle in finished:
            request, future, start = running.pop(handle)
            assert handle.completion is not None
            future.set_result(output_columns(request, handle.completion, now - start))
