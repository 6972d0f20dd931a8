"""The devices lfmrt runs on: the CPU (physical cores, kernel sets) and any OpenCL or CUDA device."""

from __future__ import annotations

import glob
import os
import platform
from typing import Dict, List, Optional

ISA_ENV = "LFMRT_ISA"
DEVICE_ENV = "LFMRT_DEVICE"


def physical_core_count() -> int:
    """Physical cores this process may run on (hyper-threads counted once).

    Reads Linux's CPU topology for the CPUs in this process's affinity mask; elsewhere falls
    back to ``os.cpu_count()``.
    """
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in allowed:
        siblings = glob.glob(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        if not siblings:
            return len(allowed)
        with open(siblings[0]) as f:
            cores.add(f.read().strip())
    return max(1, len(cores))


def requested_isa() -> str:
    """The CPU kernel set asked for by ``$LFMRT_ISA``, else ``""`` (the best this CPU runs)."""
    return os.environ.get(ISA_ENV, "")


def requested_device(device: Optional[str] = None) -> str:
    """The device string the runtime gets: ``device`` if given, else ``$LFMRT_DEVICE``, else
    ``"cpu"``; a plain ``"cpu"`` takes the kernel set ``$LFMRT_ISA`` names (``"cpu:avx2"``)."""
    chosen = device if device is not None else os.environ.get(DEVICE_ENV, "cpu")
    if not isinstance(chosen, str) or not chosen:
        raise ValueError(f"device must be a non-empty string such as 'cpu' or 'opencl:0', not {chosen!r}")
    if chosen == "cpu" and requested_isa():
        return f"cpu:{requested_isa()}"
    return chosen


def devices() -> List[Dict[str, object]]:
    """Every device this build and machine offer, the CPU first.

    Each is a dict with ``id`` (what ``Model.load(device=...)`` takes: ``"cpu"``,
    ``"opencl:0"``, ...), ``name``, ``kind`` (``"cpu"``, ``"opencl"``, ``"cuda"``),
    ``memory_bytes``, ``fp16`` (half-precision arithmetic), ``subgroups`` (subgroup or warp
    reductions) and ``details`` (driver, version, kernel sets). A machine without an OpenCL
    driver lists the CPU alone.
    """
    from . import _core

    return [
        {
            "id": d.id,
            "name": d.name,
            "kind": d.kind,
            "memory_bytes": int(d.memory_bytes),
            "fp16": bool(d.fp16),
            "subgroups": bool(d.subgroups),
            "details": d.details,
        }
        for d in _core.list_devices()
    ]


def cpu_info() -> Dict[str, object]:
    """What lfmrt finds on this CPU and what it will run.

    Returns a dict with:

    - ``machine``: the architecture (``platform.machine()``, e.g. ``x86_64``, ``aarch64``, ``arm64``);
    - ``features``: the CPU features that matter to some kernel set (x86-64: ``avx2``, ``fma``,
      ``f16c``, ...; aarch64: ``neon``, ``dotprod``, ``fp16``, ``i8mm``);
    - ``kernel_sets``: the kernel sets of this build that this CPU runs, lowest first (x86-64:
      ``scalar``, ``avx2``; aarch64: ``scalar``, ``neon``, ``neon_dotprod``, ``neon_i8mm``);
    - ``kernels``: the set a model loaded now gets, the best one unless ``$LFMRT_ISA`` asks for
      another (an unknown name, or one this CPU cannot run, raises ``ValueError``);
    - ``physical_cores``: see :func:`physical_core_count`.
    """
    from . import _core

    return {
        "machine": platform.machine(),
        "features": _core.cpu_features().split(),
        "kernel_sets": list(_core.kernel_sets()),
        "kernels": _core.kernel_set(requested_isa()),
        "physical_cores": physical_core_count(),
    }
