"""Preprocess, the lfmrt stage, postprocess: :class:`Processor` and :func:`build_processor`,
shaped as Ray Data's ``ray.data.llm.build_processor`` is."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

from .config import LfmrtProcessorConfig
from .model_source import import_ray
from .rows import ERROR_COLUMN
from .stage import LfmrtStage

if TYPE_CHECKING:
    import ray.data

Row = Dict[str, Any]
RowFunction = Callable[[Row], Row]

# Pre/postprocess are light row functions. At Ray's default of one CPU a task they wait for a
# CPU the lfmrt actors hold (on a node the actors fill, forever), so by default they take none.
_ROW_MAP_DEFAULTS: Dict[str, Any] = {"num_cpus": 0}


class _Preprocess:
    """The user's preprocess, its output merged over the row so every input column reaches
    the postprocess (as Ray's processors do)."""

    def __init__(self, fn: RowFunction) -> None:
        self._fn = fn

    def __call__(self, row: Row) -> Row:
        return {**row, **self._fn(row)}


class _Postprocess:
    """The user's postprocess on rows that ran; a row with an error skips it and keeps every
    column (its postprocess would meet empty outputs), as Ray's processors do."""

    def __init__(self, fn: RowFunction, continue_on_error: bool) -> None:
        self._fn = fn
        self._continue_on_error = continue_on_error

    def __call__(self, row: Row) -> Row:
        if row.get(ERROR_COLUMN):
            return row
        result = dict(self._fn(row))
        if self._continue_on_error:
            result[ERROR_COLUMN] = ""
        return result


class Processor:
    """Runs a dataset through preprocess, lfmrt, postprocess: ``processor(ds)`` returns the
    (lazy) output dataset. Build one with :func:`build_processor`."""

    def __init__(
        self,
        config: LfmrtProcessorConfig,
        preprocess: Optional[RowFunction] = None,
        postprocess: Optional[RowFunction] = None,
        preprocess_map_kwargs: Optional[Mapping[str, Any]] = None,
        postprocess_map_kwargs: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.config = config
        self._preprocess = preprocess
        self._postprocess = postprocess
        self._preprocess_map_kwargs = {**_ROW_MAP_DEFAULTS, **(preprocess_map_kwargs or {})}
        self._postprocess_map_kwargs = {**_ROW_MAP_DEFAULTS, **(postprocess_map_kwargs or {})}

    def stage_map_kwargs(self) -> Dict[str, Any]:
        """The ``Dataset.map_batches`` arguments of the lfmrt stage."""
        ray = import_ray()
        config = self.config
        pool: Dict[str, Any] = config.actor_pool_size()
        kwargs: Dict[str, Any] = dict(
            fn_constructor_kwargs={"config": config},
            batch_size=config.batch_size,
            batch_format="pyarrow",
            num_cpus=config.threads_per_actor if config.num_cpus is None else config.num_cpus,
        )
        # Calls an actor runs at once: the pool's own setting where Ray has it (2.60 on), Ray
        # Core's max_concurrency before (deprecated from 2.60).
        if "max_concurrent_calls_per_actor" in inspect.signature(ray.data.ActorPoolStrategy).parameters:
            pool["max_concurrent_calls_per_actor"] = config.max_concurrent_batches
        else:
            kwargs["max_concurrency"] = config.max_concurrent_batches
        kwargs["compute"] = ray.data.ActorPoolStrategy(**pool)
        if config.num_gpus:
            kwargs["num_gpus"] = config.num_gpus
        if config.runtime_env is not None:
            kwargs["runtime_env"] = config.runtime_env
        return kwargs

    def __call__(self, dataset: "ray.data.Dataset") -> "ray.data.Dataset":
        """The output dataset (nothing runs until it is consumed)."""
        if self._preprocess is not None:
            dataset = dataset.map(_Preprocess(self._preprocess), **self._preprocess_map_kwargs)
        dataset = dataset.map_batches(LfmrtStage, **self.stage_map_kwargs())
        if self._postprocess is not None:
            postprocess = _Postprocess(self._postprocess, self.config.should_continue_on_error)
            dataset = dataset.map(postprocess, **self._postprocess_map_kwargs)
        return dataset


def build_processor(
    config: LfmrtProcessorConfig,
    preprocess: Optional[RowFunction] = None,
    postprocess: Optional[RowFunction] = None,
    preprocess_map_kwargs: Optional[Mapping[str, Any]] = None,
    postprocess_map_kwargs: Optional[Mapping[str, Any]] = None,
) -> Processor:
    """A processor running lfmrt on a Ray dataset, as ``ray.data.llm.build_processor`` builds
    one for vLLM (same arguments, same columns).

    Args:
        config: the model, actors and sampling defaults.
        preprocess: row -> the columns the stage reads (``prompt``, ``messages`` or
            ``tokenized_prompt``, and optionally ``sampling_params``), merged over the row.
        postprocess: row (inputs and outputs: ``generated_text``, ``generated_tokens``,
            ``num_input_tokens``, ``num_generated_tokens``, ``prompt``, ``time_taken_llm``, ...)
            -> the output row; ``{**row, ...}`` keeps every column. Rows with an error skip it.
        preprocess_map_kwargs, postprocess_map_kwargs: ``Dataset.map`` arguments of those
            steps (``num_cpus``, ``concurrency``...; ``num_cpus`` is 0 unless given, so they never
            wait for a CPU the lfmrt actors hold).

    Raises:
        ImportError: Ray Data is not installed (``pip install 'lfmrt[ray]'``).

    Example::

        config = LfmrtProcessorConfig(model_source="LiquidAI/LFM2.5-350M", concurrency=4,
                                      sampling_params={"temperature": 0, "max_tokens": 64})
        processor = build_processor(
            config,
            preprocess=lambda row: {"messages": [{"role": "user", "content": row["text"]}]},
            postprocess=lambda row: {"id": row["id"], "answer": row["generated_text"]},
        )
        processor(ray.data.read_parquet("docs/")).write_parquet("answers/")
    """
    import_ray()
    return Processor(config, preprocess, postprocess, preprocess_map_kwargs, postprocess_map_kwargs)
