"""What this CPU offers lfmrt: physical cores and the kernel set chosen for it."""

from __future__ import annotations

import glob
import os
import platform
from typing import Dict, Optional

ISA_ENV = "LFMRT_ISA"


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


def requested_isa(isa: Optional[str] = None) -> str:
    """The kernel set asked for: ``isa`` if given, else ``$LFMRT_ISA``, else ``""`` (best)."""
    if isa is not None:
        return isa
    return os.environ.get(ISA_ENV, "")


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
