"""Batch inference: lfmrt on Ray Data, with the columns of Ray's vLLM stage (``lfmrt[ray]``).

    import ray, lfmrt.ray
    config = lfmrt.ray.LfmrtProcessorConfig(model_source="LiquidAI/LFM2.5-350M", concurrency=4,
                                            sampling_params={"temperature": 0, "max_tokens": 64})
    processor = lfmrt.ray.build_processor(config, preprocess=lambda row: {"prompt": row["text"]})
    processor(ray.data.read_parquet("docs/")).write_parquet("out/")

- :mod:`.rows`: the row schema (columns in and out, per-row errors).
- :mod:`.engine`: :class:`BatchEngine`, one model's rows through continuous batching.
- :mod:`.model_source`: how model files reach the workers (:func:`put_model`).
- :mod:`.config`, :mod:`.stage`, :mod:`.processor`: the Ray side.

Importing this package does not import Ray (``lfmrt batch`` runs the engine in-process
without it); building a processor or putting a model does.
"""

from .config import LfmrtProcessorConfig
from .engine import BatchEngine
from .model_source import ModelFiles, put_model
from .processor import Processor, build_processor
from .rows import ERROR_COLUMN, OUTPUT_COLUMNS
from .stage import LfmrtStage

__all__ = [
    "BatchEngine",
    "ERROR_COLUMN",
    "LfmrtProcessorConfig",
    "LfmrtStage",
    "ModelFiles",
    "OUTPUT_COLUMNS",
    "Processor",
    "build_processor",
    "put_model",
]
