"""Generating text: sampling options, the request built from a prompt, the step-by-step
generation state, the finished completion, and the scheduler that batches many generations.

- :mod:`.options`: :class:`~lfmrt.SamplingOptions`, how each next token is picked.
- :mod:`.completion`: :class:`~lfmrt.Completion` and :class:`~lfmrt.Timings`, the result.
- :mod:`.requests`: a prompt and options turned into a generation (used by ``Model`` and the
  ``Scheduler`` alike).
- :mod:`.state`: the generation loop as steps (:class:`GenerationState`) and run alone
  (:class:`Generation`).
- :mod:`.scheduler`: :class:`~lfmrt.Scheduler`, continuous batching.
"""
