"""lfmrt: a lean, fast runtime for Liquid AI's LFM2 / LFM2.5 models.

    import lfmrt
    model = lfmrt.Model.load("path/to/LFM2.5-350M")
    print(model.chat([{"role": "user", "content": "Hello!"}]).text)
"""

from .errors import ConstraintError, LoadError
from .devices import cpu_info, devices
from .demo import demo_model_path
from .generation.completion import Completion, Timings
from .generation.options import SamplingOptions
from .generation.scheduler import Request, Scheduler
from .model import Model
from .session import Session

__all__ = ["Completion", "ConstraintError", "LoadError", "Model", "Request", "SamplingOptions", "Scheduler", "Session", "Timings", "cpu_info", "demo_model_path", "devices"]
__version__ = "0.1.0"
