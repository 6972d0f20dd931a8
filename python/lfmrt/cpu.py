"""What this CPU offers lfmrt: physical cores and the kernel set chosen for it."""

from __future__ import annotations

import glob
import os
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
    """This CPU's relevant features, its physical cores, and the kernel set lfmrt would use."""
    from . import _core

    return {
        "features": _core.cpu_features().split(),
        "physical_cores": physical_core_count(),
        "kernels": requested_isa() or _core.best_kernel_set(),
    }
