"""The Ray Data stage: :class:`LfmrtStage`, a stateful callable for ``Dataset.map_batches``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .config import LfmrtProcessorConfig
from .engine import BatchEngine
from .model_source import load_model
from .rows import finished_row

if TYPE_CHECKING:
    import pyarrow


class LfmrtStage:
    """One lfmrt model per Ray actor, loaded once; each batch's rows join its scheduler.

    ``__call__`` is a coroutine, so an actor holds ``max_concurrent_batches`` batches at once
    (Ray's ``max_concurrency``) and their rows are batched together: continuous batching across
    Ray's batches, as Ray's vLLM stage does. Use it through :func:`lfmrt.ray.build_processor`,
    which passes the right ``map_batches`` arguments (``batch_format="pyarrow"``, the actor pool,
    ``num_cpus``, ``max_concurrency``), or directly::

        ds.map_batches(LfmrtStage, fn_constructor_kwargs={"config": config}, batch_format="pyarrow",
                       compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1, max_concurrency=4)
    """

    def __init__(self, config: LfmrtProcessorConfig) -> None:
        """Loads the model (see :mod:`lfmrt.ray.model_source`) and starts its engine."""
        self._config = config
        model = load_model(config.model_source, n_threads=config.threads_per_actor, device=config.device,
                           **config.engine_kwargs)
        self._engine = BatchEngine(model, sampling_defaults=config.sampling_params,
                                   apply_chat_template=config.apply_chat_template, max_batch=config.max_batch)

    async def __call__(self, batch: "pyarrow.Table") -> "pyarrow.Table":
        """The batch's rows, in order, each with the output columns (``rows.OUTPUT_COLUMNS``)
        or, with ``should_continue_on_error``, its error."""
        import pyarrow

        rows = batch.to_pylist()
        if not rows:
            return batch
        outcomes = await asyncio.gather(
            *(asyncio.wrap_future(self._engine.submit(row)) for row in rows), return_exceptions=True
        )
        continue_on_error = self._config.should_continue_on_error
        return pyarrow.Table.from_pylist([finished_row(row, outcome, continue_on_error) for row, outcome in zip(rows, outcomes)])
