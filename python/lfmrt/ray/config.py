"""What a batch-inference processor runs: :class:`LfmrtProcessorConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from .model_source import ModelSource
from .rows import check_sampling_params

#: ``Model.load`` keywords a processor passes through ``engine_kwargs``.
ENGINE_KWARGS = frozenset({"quant", "max_context", "kv_cache", "file", "revision"})


@dataclass(frozen=True)
class LfmrtProcessorConfig:
    """How :func:`lfmrt.ray.build_processor` runs lfmrt on a Ray dataset.

    The names follow Ray Data's ``vLLMEngineProcessorConfig`` where the two mean the same thing
    (``model_source``, ``batch_size``, ``concurrency``, ``engine_kwargs``,
    ``should_continue_on_error``, ``runtime_env``, ``max_concurrent_batches``).

    Attributes:
        model_source: a checkpoint path every node sees, ``"demo"``, a Hub repo id (resolved in
            each worker's cache), or :func:`lfmrt.ray.put_model`'s files in the object store.
        device: where each actor runs (``"cpu"``, ``"cpu:avx2"``, ``"cuda"``...; default: as
            ``Model.load``). With ``num_gpus``, Ray shows each actor only its own GPUs, so
            ``"cuda"`` is the right one.
        threads_per_actor: compute threads of each actor's model.
        batch_size: rows per Ray batch (the unit Ray retries when an actor dies).
        concurrency: actors: ``n`` for a fixed pool, ``(min, max)`` for an autoscaling one.
        max_batch: sequences each actor's scheduler steps together.
        max_concurrent_batches: Ray batches an actor holds at once; their rows share one
            scheduler, so it stays full while a batch's last rows finish.
        sampling_params: defaults under each row's own ``sampling_params`` (vLLM's names:
            ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``max_tokens``, ``stop``,
            ``seed``, penalties, ``logit_bias``, ``ignore_eos``, ``skip_special_tokens``).
        apply_chat_template: render ``messages`` with the model's chat template.
        should_continue_on_error: a row that cannot run comes out with its error in
            ``__inference_error__`` instead of failing the job.
        engine_kwargs: more ``Model.load`` keywords: ``quant``, ``max_context``, ``kv_cache``,
            ``file``, ``revision``.
        num_cpus: CPUs Ray reserves per actor (default: ``threads_per_actor``).
        num_gpus: GPUs Ray reserves per actor.
        runtime_env: the actors' Ray runtime environment.
    """

    model_source: ModelSource
    device: Optional[str] = None
    threads_per_actor: int = 1
    batch_size: int = 32
    concurrency: Union[int, Tuple[int, int]] = 1
    max_batch: int = 64
    max_concurrent_batches: int = 4
    sampling_params: Mapping[str, Any] = field(default_factory=dict)
    apply_chat_template: bool = True
    should_continue_on_error: bool = False
    engine_kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_cpus: Optional[float] = None
    num_gpus: float = 0
    runtime_env: Optional[Dict[str, Any]] = None

    def __post_init__(self) -> None:
        """Checks the fields on the driver, before any actor starts.

        Raises:
            ValueError, TypeError: naming the field.
        """
        for name in ("threads_per_actor", "batch_size", "max_batch", "max_concurrent_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LfmrtProcessorConfig.{name} must be a positive integer, got {value!r}")
        self.actor_pool_size()  # checks concurrency
        if self.num_cpus is not None and self.num_cpus < 0:
            raise ValueError(f"LfmrtProcessorConfig.num_cpus must be >= 0, got {self.num_cpus}")
        if self.num_gpus < 0:
            raise ValueError(f"LfmrtProcessorConfig.num_gpus must be >= 0, got {self.num_gpus}")
        unknown = set(self.engine_kwargs) - ENGINE_KWARGS
        if unknown:
            raise ValueError(f"LfmrtProcessorConfig.engine_kwargs: unknown {', '.join(sorted(unknown))} "
                             f"(Model.load takes {', '.join(sorted(ENGINE_KWARGS))})")
        check_sampling_params(dict(self.sampling_params))

    def actor_pool_size(self) -> Dict[str, int]:
        """``concurrency`` as ``ray.data.ActorPoolStrategy`` keywords (``size``, or ``min_size``
        and ``max_size``)."""
        concurrency = self.concurrency
        if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1:
            return {"size": concurrency}
        if (isinstance(concurrency, (tuple, list)) and len(concurrency) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in concurrency)
                and concurrency[0] <= concurrency[1]):
            return {"min_size": concurrency[0], "max_size": concurrency[1]}
        raise ValueError(f"LfmrtProcessorConfig.concurrency must be a positive integer or (min, max) "
                         f"with 1 <= min <= max, got {concurrency!r}")
