#!/usr/bin/env python3
"""Quality of quantized weights: KL divergence and top-1 agreement against f32, lfmrt and llama.cpp
on the same GGUF files.

    python bench/quant_quality.py                                   # golden tiny models + 350M shape
    python bench/quant_quality.py bench/models/lfm2-350m-random --positions 2048 --head-study

For each model (a Hugging Face directory), lfmrt writes GGUF files (f32 and each --schemes type)
into --work; then on the same token ids (text from Python's pydoc topics through the model's own
tokenizer, in --ctx-long windows, so the statistics see text-like sequences rather than random
ids) it measures:

  KL        mean KL(p_f32 || p_quant) per position, p_f32 from lfmrt on the f32 file (which
            matches transformers to ~1e-4); for lfmrt and for llama.cpp on the quantized file
  top-1     how often the quantized file's argmax equals the f32 argmax
  agree     how often lfmrt's and llama.cpp's argmax agree on the quantized file (also on
            positions where llama.cpp's top-1 leads by >= 0.5, where near-ties cannot flip it)
  floor     (--floor) how often lfmrt's argmax agrees with lfmrt's own on the same file computed
            by the scalar kernels: the same arithmetic in another summation order. Rounding
            differences flip 8-bit activation quantizations, which flip more in later layers, so
            two correct implementations drift apart by about the quantization noise; this is
            the agreement that noise alone allows on the model at hand; also the scalar run's
            KL, and lfmrt's KL relative to it and to llama.cpp's, paired over the same positions
            with a 95% interval from resampling windows: how far rounding alone moves the KL

llama.cpp (llama-cpp-python) runs when it imports, on models it can run (at least one short-conv
layer, no conv biases), with `logits_all=True`. --head-study also writes q4_0 and q4_k_m with the
LM head (the tied embedding) at Q8_0 and at the base type instead of the policy's Q6_K, and prints
KL and file size for each, which is how the policy's choice was checked.

Random-weight models make odd KL figures (tiny ones are far more sensitive than real models):
compare lfmrt with llama.cpp within one table, not with published figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GOLDEN = ROOT / "tests" / "fixtures" / "models"
DEFAULT_MODELS = [
    GOLDEN / "lfm2_350m_pattern_bf16",
    GOLDEN / "mixed_mha_hd64_f32_dialectA",
    GOLDEN / "gqa2_hd64_bf16_jinja",
    HERE / "models" / "lfm2-350m-random",
]


def log(msg: str) -> None:
    print(f"[quant_quality] {msg}", flush=True)


def text_tokens(model_dir: Path, n: int) -> List[int]:
    """bos + n-1 text tokens from the model's tokenizer (pydoc topics, in a fixed order)."""
    import pydoc_data.topics as topics
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids: List[int] = []
    for key in sorted(topics.topics):
        ids += tok.encode(topics.topics[key], add_special_tokens=False).ids
        if len(ids) >= n:
            break
    bos = tok.token_to_id("<|startoftext|>")
    return [bos] + ids[: n - 1]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x -= x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class Stats:
    """KL and top-1 against the f32 reference, accumulated window by window (per-position KL kept
    by window, for paired comparisons)."""

    def __init__(self) -> None:
        self.kl: List[np.ndarray] = []
        self.top1, self.n = 0, 0

    def add(self, reference: np.ndarray, logits: np.ndarray) -> None:
        lp, lq = log_softmax(reference), log_softmax(logits)
        self.kl.append((np.exp(lp) * (lp - lq)).sum(-1))
        self.top1 += int((reference.argmax(-1) == logits.argmax(-1)).sum())
        self.n += len(reference)

    def row(self) -> Dict[str, float]:
        kl = float(np.concatenate(self.kl).mean()) if self.kl else 0.0
        return {"kl": kl, "top1": self.top1 / max(1, self.n), "positions": self.n}


def kl_difference(ours: Stats, theirs: Stats, resamples: int = 2000) -> Dict[str, float]:
    """Mean per-position KL of `ours` minus `theirs` (same positions), relative to theirs, with a
    95% interval from resampling whole windows (positions within a window are not independent)."""
    sums = np.array([a.sum() - b.sum() for a, b in zip(ours.kl, theirs.kl)])
    counts = np.array([len(a) for a in ours.kl])
    base = float(np.concatenate(theirs.kl).mean())
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(sums), size=(resamples, len(sums)))
    boot = sums[picks].sum(1) / counts[picks].sum(1) / base
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"rel": float(sums.sum() / counts.sum() / base), "low": float(low), "high": float(high)}


def llama_cpp_runner(path: Path, ctx: int, threads: int):
    """A function window -> llama.cpp logits (n, vocab) for the GGUF at path."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, n_threads=threads,
                          n_threads_batch=threads, logits_all=True, verbose=False)

    def run(window: List[int]) -> np.ndarray:
        llm.reset()
        llm.eval(window)
        return np.array(llm.scores[: len(window)], dtype=np.float32)

    return run


def llama_cpp_can_run(config) -> bool:
    """llama.cpp's LFM2 graph needs a short-conv layer (its recurrent state) and no conv biases."""
    return "conv" in config.layer_types and not config.conv_bias


def measure(model_dir: Path, args: argparse.Namespace, have_llama: bool) -> Dict[str, object]:
    import lfmrt
    from lfmrt.loaders import load_checkpoint
    from lfmrt.quantization.gguf_writer import write_gguf

    work = args.work / model_dir.name
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = load_checkpoint(model_dir)
    big = checkpoint.config.hidden_size >= 512
    n_positions = args.positions or (2048 if big else 1024)
    ctx = args.ctx_long if big else 128
    tokens = text_tokens(model_dir, n_positions)
    windows = [tokens[i : i + ctx] for i in range(0, len(tokens), ctx)]
    windows = [w if w[0] == tokens[0] else [tokens[0]] + w[:-1] for w in windows]  # each starts with bos

    variants = [(s, None) for s in args.schemes]
    if args.head_study:
        variants += [("q4_0", "Q4_0"), ("q4_0", "Q8_0"), ("q4_k_m", "Q4_K"), ("q4_k_m", "Q8_0")]
    files: Dict[str, Path] = {}
    for scheme_name, head in [("f32", None)] + variants:
        label = scheme_name + (f"+head_{head}" if head else "")
        path = work / f"{label}.gguf"
        if not path.exists():
            t0 = time.perf_counter()
            write_gguf(checkpoint, path, scheme_name, head_type=head)
            log(f"{model_dir.name}: wrote {path.name} ({path.stat().st_size / 2**20:.1f} MiB, "
                f"{time.perf_counter() - t0:.1f}s)")
        files[label] = path

    log(f"{model_dir.name}: f32 reference over {len(tokens)} positions in windows of {ctx}")
    reference_model = lfmrt.Model.load(files["f32"], n_threads=args.threads)
    reference = [reference_model.logits(w) for w in windows]
    del reference_model

    run_llama = have_llama and llama_cpp_can_run(checkpoint.config)
    rows: Dict[str, Dict[str, object]] = {}
    for label, path in files.items():
        if label == "f32":
            continue
        ours_stats, theirs_stats, scalar_stats = Stats(), Stats(), Stats()
        agree = clear = clear_agree = 0
        floor_agree = 0
        model = lfmrt.Model.load(path, n_threads=args.threads)
        scalar = lfmrt.Model.load(path, n_threads=args.threads, device="cpu:scalar") if args.floor else None
        llama = llama_cpp_runner(path, ctx, args.threads) if run_llama and "+head" not in label else None
        for window, ref in zip(windows, reference):
            ours = model.logits(window)
            ours_stats.add(ref, ours)
            if scalar is not None:
                by_scalar = scalar.logits(window)
                scalar_stats.add(ref, by_scalar)
                floor_agree += int((by_scalar.argmax(-1) == ours.argmax(-1)).sum())
            if llama is not None:
                theirs = llama(window)
                theirs_stats.add(ref, theirs)
                same = ours.argmax(-1) == theirs.argmax(-1)
                top2 = np.sort(theirs, axis=-1)[:, -2:]
                lead = top2[:, 1] - top2[:, 0] >= 0.5
                agree += int(same.sum())
                clear += int(lead.sum())
                clear_agree += int(same[lead].sum())
        del model, scalar, llama
        row: Dict[str, object] = {"size_mib": path.stat().st_size / 2**20, "lfmrt": ours_stats.row()}
        if args.floor:
            row["floor"] = floor_agree / ours_stats.n
            row["lfmrt_scalar"] = scalar_stats.row()
            row["kl_vs_scalar"] = kl_difference(ours_stats, scalar_stats)
        if run_llama and "+head" not in label:
            row["llama.cpp"] = theirs_stats.row()
            row["kl_vs_llama"] = kl_difference(ours_stats, theirs_stats)
            row["agree"] = agree / ours_stats.n
            row["agree_clear"] = clear_agree / max(1, clear)
            row["clear_positions"] = clear
        rows[label] = row
        log(f"{model_dir.name}: {label} done")
    return {"positions": len(tokens), "window": ctx, "rows": rows}


def print_table(name: str, result: Dict[str, object]) -> None:
    rows = result["rows"]
    print()
    print(f"{name}: {result['positions']} positions (windows of {result['window']}), KL vs lfmrt f32")
    header = (f"{'file':18}{'MiB':>8}{'KL lfmrt':>12}{'KL llama':>12}{'top1 lfmrt':>12}{'top1 llama':>12}"
              f"{'agree':>8}{'agree*':>8}{'floor':>8}")
    print(header)
    print("-" * len(header))
    for label, row in rows.items():
        ours = row["lfmrt"]
        theirs = row.get("llama.cpp")
        line = f"{label:18}{row['size_mib']:8.1f}{ours['kl']:12.3e}"
        line += f"{theirs['kl']:12.3e}" if theirs else f"{'-':>12}"
        line += f"{ours['top1']:12.3f}" + (f"{theirs['top1']:12.3f}" if theirs else f"{'-':>12}")
        line += f"{row['agree']:8.3f}{row['agree_clear']:8.3f}" if theirs else f"{'-':>8}{'-':>8}"
        line += f"{row['floor']:8.3f}" if "floor" in row else f"{'-':>8}"
        print(line)
    print("  agree: lfmrt vs llama.cpp top-1 on the same file; agree*: where llama.cpp's top-1 leads by >= 0.5")
    print("  floor: lfmrt vs lfmrt's scalar kernels top-1 on the same file (agreement rounding noise allows)")
    for key, other in (("kl_vs_llama", "llama.cpp"), ("kl_vs_scalar", "lfmrt's scalar kernels")):
        lines = [f"    {label:16} {d['rel']:+.2%}  [{d['low']:+.2%}, {d['high']:+.2%}]"
                 for label, row in rows.items() if (d := row.get(key))]
        if lines:
            print(f"  KL of lfmrt relative to {other} on the same file (95% interval over windows):")
            print("\n".join(lines))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path, help="Hugging Face model directories (default: golden + 350M)")
    ap.add_argument("--schemes", default="q8_0,q4_0,q4_k_m", help="comma-separated (default q8_0,q4_0,q4_k_m)")
    ap.add_argument("--positions", type=int, default=None,
                    help="positions per model (default 2048, or 1024 for models with hidden size < 512)")
    ap.add_argument("--ctx-long", type=int, default=512, help="window length on big models (default 512)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--head-study", action="store_true", help="also measure other LM-head types")
    ap.add_argument("--no-llama-cpp", action="store_true", help="measure lfmrt alone")
    ap.add_argument("--floor", action="store_true",
                    help="also run lfmrt's scalar kernels: the top-1 agreement rounding noise alone allows (slow on big models)")
    ap.add_argument("--work", type=Path, default=HERE / "models" / "quant_quality", help="where the GGUF files go")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = ap.parse_args(argv)
    args.schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]

    have_llama = False
    if not args.no_llama_cpp:
        try:
            import llama_cpp  # noqa: F401

            have_llama = True
        except ImportError:
            log("llama_cpp does not import: measuring lfmrt alone")
    models = args.models or [m for m in DEFAULT_MODELS if m.is_dir()]
    results = {}
    for model_dir in models:
        results[model_dir.name] = measure(model_dir, args, have_llama)
        print_table(model_dir.name, results[model_dir.name])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
