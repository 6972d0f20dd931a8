"""``lfmrt serve``: an OpenAI-compatible HTTP server (``pip install "lfmrt[server]"``).

- :mod:`.config`: :class:`ServerConfig`, limits and pool sizes.
- :mod:`.protocol`: the request bodies (pydantic), which are also the OpenAPI document.
- :mod:`.jobs`: a request checked, rendered and tokenized into an engine job (400s come from here).
- :mod:`.engine`: one model, one scheduler stepped by one thread, continuous batching, and the
  model's session pool (``lfmrt.generation.session_pool``) reused by longest token prefix.
- :mod:`.tool_stream`: answer text split into content and tool calls as it streams.
- :mod:`.responses`: engine events written as OpenAI response objects and SSE chunks.
- :mod:`.metrics`, :mod:`.errors`: Prometheus metrics; OpenAI-style error objects.
- :mod:`.app`: the FastAPI routes; :mod:`.runner`: uvicorn, binding and graceful shutdown.

Example::

    from lfmrt import Model
    from lfmrt.server import ServerConfig, serve
    serve(Model.load("demo"), ServerConfig(model_name="demo"), port=8000)
"""

from .app import create_app
from .config import ServerConfig
from .runner import serve

__all__ = ["ServerConfig", "create_app", "serve"]
