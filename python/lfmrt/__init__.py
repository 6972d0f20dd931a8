"""lfmrt: a lean, fast runtime for Liquid AI's LFM2 / LFM2.5 models.

    import lfmrt
    model = lfmrt.Model.load("path/to/LFM2.5-350M")
    print(model.chat([{"role": "user", "content": "Hello!"}]).text)
"""

from .errors import LoadError
from .cpu import cpu_info
from .generation import Completion, SamplingOptions, Timings
from .model import Model
from .session import Session

__all__ = ["Completion", "LoadError", "Model", "SamplingOptions", "Session", "Timings", "cpu_info"]
__version__ = "0.1.0"
