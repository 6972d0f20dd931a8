"""The demo model bundled with lfmrt: a tiny LFM2 that runs the whole stack with no network.

It is the real LFM2 architecture at 3.4M parameters, trained by ``tools/train_demo.py`` on
Python's own documentation, with LFM2's special tokens and chat template (see ``MODEL_CARD.md``
beside this file). It shows loading, chat, streaming and tool calls working end to end; it is
not a useful assistant.

    import lfmrt
    model = lfmrt.Model.load("demo")          # or lfmrt.Model.load(lfmrt.demo_model_path())
    print(model.chat([{"role": "user", "content": "What does json.dumps do?"}]).text)

:func:`perplexity` on :func:`heldout_text` (documentation topics the model never saw) is the
quality check that quantized variants are compared against.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Sequence

if TYPE_CHECKING:
    import numpy as np

_MODEL_DIR = Path(__file__).resolve().parent / "model"
# Evaluation windows: bos + this many - 1 text tokens each (the training sequence length).
PERPLEXITY_WINDOW = 512


class ScoringModel(Protocol):
    """What :func:`perplexity` needs of a model (``lfmrt.Model`` is one)."""

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> List[int]:
        """Token ids of ``text``."""

    def logits(self, tokens: Sequence[int]) -> "np.ndarray":
        """Logits after every token, shape ``(len(tokens), vocab)``."""


def demo_model_path() -> str:
    """The folder of the bundled demo checkpoint (a Hugging Face LFM2 directory)."""
    return str(_MODEL_DIR)


def heldout_text() -> str:
    """The held-out evaluation text: Python documentation topics left out of training."""
    return (_MODEL_DIR / "heldout.txt").read_text(encoding="utf-8")


def training_report() -> Dict[str, Any]:
    """What ``tools/train_demo.py`` recorded: parameters, training time and tokens, the
    held-out perplexity of the stored weights computed in float32 by transformers, versions."""
    return json.loads((_MODEL_DIR / "training.json").read_text(encoding="utf-8"))


def perplexity(model: ScoringModel, text: Optional[str] = None, *, window: int = PERPLEXITY_WINDOW) -> float:
    """Token-level perplexity of ``model`` on ``text`` (default: :func:`heldout_text`).

    The text is tokenized without special tokens and cut into consecutive windows of
    ``window - 1`` tokens; each window is scored after a bos token, every token predicted from
    the ones before it in its window. This is exactly the measure in ``training.json``.

    Raises:
        ValueError: the text has no tokens, or ``window`` is below 2.
    """
    import numpy as np

    if window < 2:
        raise ValueError("window must be at least 2")
    ids = model.tokenize(heldout_text() if text is None else text, add_special_tokens=False)
    if not ids:
        raise ValueError("perplexity() needs a text with at least one token")
    bos = model.tokenize("", add_special_tokens=True)
    nll, count = 0.0, 0
    for start in range(0, len(ids), window - 1):
        tokens = bos + ids[start : start + window - 1]
        logits = model.logits(tokens)[:-1].astype(np.float64)
        targets = np.asarray(tokens[1:])
        top = logits.max(axis=1)
        log_norm = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        nll += float((log_norm - logits[np.arange(len(targets)), targets]).sum())
        count += len(targets)
    return math.exp(nll / count)
