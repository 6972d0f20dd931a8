"""What the command-line tools share: model and sampling flags, loading, speed lines."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Optional

from ..errors import LoadError
from ..generation.completion import Timings
from ..model import Model

# A logit bias that no real logit overcomes: the token is never sampled.
_NEVER = -1.0e9


def add_model_arguments(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    """MODEL (a path, a Hub repo id, or "demo") and the flags that shape loading it."""
    parser.add_argument(
        "model",
        metavar="MODEL",
        nargs="?" if optional else None,
        help="a checkpoint directory, a .gguf file, a Hugging Face repo id (LiquidAI/LFM2.5-350M, "
        "or LiquidAI/LFM2.5-350M-GGUF:Q8_0 to choose a GGUF quant), or 'demo' for the bundled demo model",
    )
    parser.add_argument("--file", metavar="GLOB", help="for a GGUF repo id: the file to use (e.g. '*Q4_K_M.gguf')")
    parser.add_argument("--revision", help="for a repo id: the branch, tag or commit (default: main)")
    parser.add_argument("--quant", metavar="TYPE", help="quantize on load (q8_0, q4_0, q4_k_m, q5_k_m, q6_k, f16, ...)")
    parser.add_argument("--threads", "-t", type=int, metavar="N", help="compute threads (default: physical cores)")
    parser.add_argument("--device", "-d", metavar="DEVICE",
                        help="cpu (default), cpu:avx2 and friends, opencl[:N], cuda[:N]; `lfmrt info` lists them")
    parser.add_argument("--max-context", type=int, metavar="N", help="the longest sequence a session may hold")


def add_sampling_arguments(parser: argparse.ArgumentParser, *, max_tokens: int) -> None:
    """The sampling flags (unset ones keep the model's defaults: its generation_config.json) and
    --special-tokens."""
    group = parser.add_argument_group("sampling (default: the model's own settings)")
    group.add_argument("--temperature", "--temp", type=float, metavar="T", help="0 is greedy")
    group.add_argument("--top-p", type=float, metavar="P")
    group.add_argument("--top-k", type=int, metavar="K")
    group.add_argument("--min-p", type=float, metavar="P")
    group.add_argument("--repetition-penalty", type=float, metavar="R")
    group.add_argument("--seed", type=int, metavar="N")
    group.add_argument("--max-tokens", "-n", type=int, default=max_tokens, metavar="N",
                       help=f"at most this many new tokens per answer (default: {max_tokens})")
    group.add_argument("--ignore-eos", action="store_true",
                       help="never end at the end-of-sequence token (for benchmarks and tests)")
    parser.add_argument("--special-tokens", action="store_true",
                        help="show special tokens such as <|im_end|> in the text (left out by default)")


def sampling_from_args(args: argparse.Namespace, model: Model) -> Dict[str, Any]:
    """The sampling keyword arguments the user set on the command line."""
    names = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed")
    sampling: Dict[str, Any] = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.ignore_eos:
        sampling["logit_bias"] = {token: _NEVER for token in model.eos_token_ids}
    return sampling


def load_model(args: argparse.Namespace, name: Optional[str] = None) -> Model:
    """Loads the model the flags name (``name`` overrides ``args.model``)."""
    return Model.load(
        name if name is not None else args.model,
        quant=args.quant,
        n_threads=args.threads,
        device=args.device,
        max_context=args.max_context,
        file=args.file,
        revision=args.revision,
    )


def describe_timings(timings: Timings) -> str:
    """One line: prefill and decode speed of a generation."""
    reused = timings.prompt_tokens - timings.prefilled_tokens
    prefill = f"prefill {timings.prefilled_tokens} tok at {timings.prefill_tokens_per_s:.1f} tok/s"
    if reused:
        prefill += f" ({reused} reused)"
    return (
        f"{prefill}, decode {timings.generated_tokens} tok at {timings.decode_tokens_per_s:.1f} tok/s"
    )


def fail(prog: str, error: BaseException) -> int:
    """Prints ``error`` as a one-line message for the user; returns exit status 1."""
    kind = "" if isinstance(error, LoadError) else f"{type(error).__name__}: "
    print(f"{prog}: error: {kind}{error}", file=sys.stderr)
    return 1
