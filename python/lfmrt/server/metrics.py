"""The server's Prometheus metrics (``GET /metrics``), in a registry of its own per server.

Counters: HTTP requests by route and status; prompt tokens, prompt tokens actually run
(``prefilled``: the work prefix reuse did not save), prompt tokens reused from a pooled session
(``cached``), generated tokens, cancelled requests, tool-call blocks that would not parse. Gauges: requests waiting for a sequence,
sequences running, sessions pooled and their bytes. Histograms: sequences per engine step,
time to first token (from arrival, queueing included) and the time between one streamed piece
of a request and the next (the engine's view: one piece per step that produced text).
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..generation.completion import Completion

CONTENT_TYPE = CONTENT_TYPE_LATEST

_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The metrics of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("lfmrt_http_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.prompt_tokens = Counter("lfmrt_prompt_tokens", "prompt tokens of finished requests", registry=r)
        self.prefilled_tokens = Counter("lfmrt_prefilled_tokens",
                                        "prompt tokens run through the model (the rest were reused)", registry=r)
        self.cached_tokens = Counter("lfmrt_cached_prompt_tokens",
                                     "prompt tokens reused from a pooled session, not run again", registry=r)
        self.generated_tokens = Counter("lfmrt_generation_tokens", "tokens generated", registry=r)
        self.cancelled = Counter("lfmrt_cancelled_requests", "requests cancelled before they finished", registry=r)
        self.tool_parse_failures = Counter("lfmrt_tool_call_parse_failures",
                                           "tool-call blocks in answers that could not be parsed", registry=r)
        self.step_sequences = Histogram("lfmrt_step_sequences", "sequences in each engine step (continuous batching)",
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.time_to_first_token = Histogram("lfmrt_time_to_first_token_seconds",
                                             "time from a request's arrival to its first text",
                                             buckets=_TTFT_BUCKETS, registry=r)
        self.inter_token_latency = Histogram("lfmrt_inter_token_latency_seconds",
                                             "time between one streamed piece of a request and the next",
                                             buckets=_ITL_BUCKETS, registry=r)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read from ``read()`` at each scrape."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def count_completion(self, completion: Completion) -> None:
        timings = completion.timings
        self.prompt_tokens.inc(timings.prompt_tokens)
        self.prefilled_tokens.inc(timings.prefilled_tokens)
        self.cached_tokens.inc(cached_tokens(completion))
        self.generated_tokens.inc(timings.generated_tokens)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


def cached_tokens(completion: Completion) -> int:
    """Prompt tokens the generation did not run (held by the pooled session it was given)."""
    timings = completion.timings
    return max(0, timings.prompt_tokens - timings.prefilled_tokens)
