"""``lfmrt info MODEL``: what a model is made of, and which kernels this CPU will run.

Prints the architecture (from the config), the tensors grouped by type with their sizes (every
tensor with ``--tensors``), the tokenizer and chat template, ``lfmrt.cpu_info()`` and every other
device ``lfmrt.devices()`` lists (OpenCL, CUDA). Only the file headers are read: no weight is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections import defaultdict
from typing import Any, Dict

from ..devices import cpu_info, devices
from ..errors import LoadError
from ..hub import resolve_model
from ..loaders import load_checkpoint
from . import common

NAME = "info"


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Adds ``lfmrt info``."""
    parser = subparsers.add_parser(NAME, help="show a model's config, tensor types and sizes, and this CPU's kernels",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="a checkpoint directory, a .gguf file, a Hub repo id or 'demo'")
    parser.add_argument("--file", metavar="GLOB", help="for a GGUF repo id: the file to use")
    parser.add_argument("--revision", help="for a repo id: the branch, tag or commit")
    parser.add_argument("--tensors", action="store_true", help="list every tensor")
    parser.add_argument("--json", action="store_true", help="print the information as JSON")
    parser.set_defaults(func=run)


def describe(path: str, list_tensors: bool) -> Dict[str, Any]:
    """The information ``lfmrt info`` prints, as plain data."""
    checkpoint = load_checkpoint(path)
    config = {k: v for k, v in dataclasses.asdict(checkpoint.config).items() if k != "raw"}
    by_type: Dict[str, Dict[str, int]] = defaultdict(lambda: {"tensors": 0, "parameters": 0, "bytes": 0})
    tensors = []
    for name, ref in sorted(checkpoint.tensors.items()):
        count = math.prod(ref.shape)
        entry = by_type[ref.dtype]
        entry["tensors"] += 1
        entry["parameters"] += count
        entry["bytes"] += int(ref.data.nbytes)
        if list_tensors:
            tensors.append({"name": name, "type": ref.dtype, "shape": list(ref.shape), "bytes": int(ref.data.nbytes)})
    tokenizer = checkpoint.tokenizer
    info: Dict[str, Any] = {
        "path": path,
        "config": config,
        "parameters": sum(e["parameters"] for e in by_type.values()),
        "bytes": sum(e["bytes"] for e in by_type.values()),
        "tensor_types": dict(sorted(by_type.items())),
        "tokenizer": {
            "vocab_size": tokenizer.get_vocab_size() if tokenizer is not None else None,
            "special_tokens": dict(checkpoint.special_tokens),
            "chat_template_chars": len(checkpoint.chat_template or ""),
        },
        "cpu": cpu_info(),
        "devices": [d for d in devices() if d["kind"] != "cpu"],
    }
    if list_tensors:
        info["tensors"] = tensors
    return info


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.2f} MiB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:.1f} KiB"


def run(args: argparse.Namespace) -> int:
    """Prints the information; returns the exit status."""
    try:
        info = describe(resolve_model(args.model, revision=args.revision, file=args.file), args.tensors)
    except (LoadError, ValueError) as error:
        return common.fail(f"lfmrt {NAME}", error)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    c = info["config"]
    n_attention = sum(kind == "full_attention" for kind in c["layer_types"])
    print(f"model       {info['path']}")
    print(f"layers      {len(c['layer_types'])} ({len(c['layer_types']) - n_attention} conv, {n_attention} attention: "
          f"{', '.join(str(i) for i, k in enumerate(c['layer_types']) if k == 'full_attention') or 'none'})")
    print(f"width       hidden {c['hidden_size']}, ff {c['ff_dim']}, heads {c['n_heads']} "
          f"({c['n_kv_heads']} kv) x {c['head_dim']}, conv kernel {c['conv_kernel']}")
    print(f"context     {c['max_context']} tokens, rope theta {c['rope_theta']:g}, vocab {c['vocab_size']}, "
          f"{'tied' if c['tie_embeddings'] else 'separate'} embeddings")
    print(f"weights     {info['parameters'] / 1e6:.2f}M parameters, {_size(info['bytes'])}")
    for dtype, entry in info["tensor_types"].items():
        print(f"  {dtype:<8}  {entry['tensors']:4d} tensors  {entry['parameters'] / 1e6:9.2f}M params  {_size(entry['bytes']):>12}")
    for tensor in info.get("tensors", []):
        print(f"    {tensor['name']:<48} {tensor['type']:<6} {str(tuple(tensor['shape'])):<16} {_size(tensor['bytes']):>12}")
    t = info["tokenizer"]
    print(f"tokenizer   {t['vocab_size'] if t['vocab_size'] is not None else 'none'} tokens; "
          f"bos {t['special_tokens'].get('bos_token')!r}, eos {t['special_tokens'].get('eos_token')!r}; "
          f"chat template {'yes' if t['chat_template_chars'] else 'no'}")
    cpu = info["cpu"]
    print(f"cpu         kernels {cpu['kernels']}, {cpu['physical_cores']} physical cores, "
          f"features {' '.join(cpu['features']) or 'none'}")
    for device in info["devices"]:
        print(f"{device['id']:<11} {device['name']}, {device['memory_bytes'] / 2**30:.1f} GiB; {device['details']}")
    return 0
