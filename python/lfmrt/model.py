"""Model: load an LFM2 checkpoint, then generate, stream, chat and score with it."""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
from tokenizers import Tokenizer

from . import _core
from .chat_template import ChatTemplate
from .cpu import physical_core_count, requested_isa
from .errors import LoadError
from .generation import Completion, Generation, SamplingOptions
from .loaders.config import Lfm2Config
from .loaders.hf import HFCheckpoint, load_hf_checkpoint
from .loaders.safetensors import DTYPE_SIZES, TensorRef
from .session import Session

Prompt = Union[str, Sequence[int]]
Message = Mapping[str, Any]

_LAYER_KINDS = {"conv": _core.LayerKind.SHORT_CONV, "full_attention": _core.LayerKind.ATTENTION}


def _aligned(ref: TensorRef) -> np.ndarray:
    """The tensor's bytes at an address aligned for its element type, as the kernels read them.

    Files written by the safetensors library are aligned; a hand-made header of odd length is
    not, and only then is the tensor copied.
    """
    if ref.data.ctypes.data % DTYPE_SIZES[ref.dtype] == 0:
        return ref.data
    return ref.data.copy()


def _core_config(config: Lfm2Config) -> "_core.ModelConfig":
    core = _core.ModelConfig()
    core.vocab_size = config.vocab_size
    core.hidden_size = config.hidden_size
    core.ff_dim = config.ff_dim
    core.layers = [_LAYER_KINDS[kind] for kind in config.layer_types]
    core.n_heads = config.n_heads
    core.n_kv_heads = config.n_kv_heads
    core.head_dim = config.head_dim
    core.conv_kernel = config.conv_kernel
    core.conv_bias = config.conv_bias
    core.norm_eps = config.norm_eps
    core.rope_theta = config.rope_theta
    core.max_context = config.max_context
    core.tie_embeddings = config.tie_embeddings
    return core


class Model:
    """An LFM2 model loaded for inference on the CPU.

    Load one with :meth:`Model.load`. A model is shared by any number of :class:`Session`
    objects; compute from several threads is serialised inside the runtime.

    Example::

        model = lfmrt.Model.load("path/to/LFM2.5-350M")
        print(model.chat([{"role": "user", "content": "Hello!"}]).text)
    """

    def __init__(self, checkpoint: HFCheckpoint, n_threads: Optional[int] = None, isa: Optional[str] = None) -> None:
        self._checkpoint = checkpoint
        self.config: Lfm2Config = checkpoint.config
        self.n_threads = n_threads if n_threads is not None else physical_core_count()
        if self.n_threads < 1:
            raise ValueError("n_threads must be at least 1")
        tensors = {name: (_aligned(ref), ref.dtype, ref.shape) for name, ref in checkpoint.tensors.items()}
        self._core = _core.Model(
            _core_config(self.config), tensors, checkpoint.files, self.n_threads, requested_isa(isa)
        )
        self.tokenizer: Optional[Tokenizer] = checkpoint.tokenizer
        special = checkpoint.special_tokens
        self.chat_template: Optional[ChatTemplate] = (
            ChatTemplate(checkpoint.chat_template, special.get("bos_token", ""), special.get("eos_token", ""))
            if checkpoint.chat_template
            else None
        )
        self.eos_token_ids: List[int] = list(checkpoint.generation.eos_token_id)
        self.default_sampling = self._sampling_defaults(checkpoint)

    @classmethod
    def load(
        cls, path: Union[str, "os.PathLike[str]"], *, n_threads: Optional[int] = None, isa: Optional[str] = None
    ) -> "Model":
        """Loads a Hugging Face LFM2 checkpoint directory.

        The weights are memory-mapped, not copied: loading is fast and resident memory grows
        with what is used. bf16, f16 and f32 weights are used as stored.

        Args:
            path: a directory with ``config.json``, safetensors weights (single or sharded) and,
                for text in and out, ``tokenizer.json``.
            n_threads: compute threads (default: this machine's physical cores).
            isa: kernel set, ``"scalar"`` or ``"avx2"`` (default: ``$LFMRT_ISA`` or the best
                this CPU runs).

        Raises:
            LoadError: a missing or malformed file, tensor or config field (named in the message).
        """
        return cls(load_hf_checkpoint(path), n_threads=n_threads, isa=isa)

    @staticmethod
    def _sampling_defaults(checkpoint: HFCheckpoint) -> SamplingOptions:
        generation = checkpoint.generation
        defaults = SamplingOptions()
        overrides: Dict[str, Any] = {
            name: getattr(generation, name)
            for name in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")
            if getattr(generation, name) is not None
        }
        if generation.do_sample is False:
            overrides["temperature"] = 0.0
        return SamplingOptions(**{**defaults.__dict__, **overrides})

    # --- text -----------------------------------------------------------------------------

    def _require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise LoadError(f"{self._checkpoint.path}: no tokenizer.json, so text in or out is unavailable")
        return self.tokenizer

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> List[int]:
        """Token ids of ``text`` (with the tokenizer's special tokens, e.g. bos, unless told not to)."""
        return self._require_tokenizer().encode(text, add_special_tokens=add_special_tokens).ids

    def detokenize(self, tokens: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """The text of ``tokens``."""
        return self._require_tokenizer().decode(list(tokens), skip_special_tokens=skip_special_tokens)

    # --- compute --------------------------------------------------------------------------

    def session(self) -> Session:
        """A new, empty session (its own KV cache and conv state) on this model."""
        return Session(self._core)

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits after every token of ``tokens``, shape ``(len(tokens), vocab)``, float32."""
        if len(tokens) == 0:
            raise ValueError("logits() needs at least one token")
        return self.session().append(tokens, all_logits=True)

    def _prompt_tokens(self, prompt: Prompt) -> List[int]:
        if isinstance(prompt, str):
            return self.tokenize(prompt)
        return [int(t) for t in prompt]

    def _generation(
        self,
        prompt_tokens: List[int],
        max_tokens: int,
        stop: Optional[Sequence[str]],
        ignore_eos: bool,
        sampling: Dict[str, Any],
    ) -> Generation:
        unknown = set(sampling) - set(SamplingOptions.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown sampling option(s): {', '.join(sorted(unknown))}")
        options = SamplingOptions(**{**self.default_sampling.__dict__, **sampling})
        return Generation(
            session=self.session(),
            tokenizer=self._require_tokenizer(),
            prompt_tokens=prompt_tokens,
            sampling=options,
            max_tokens=max_tokens,
            stop=stop,
            stop_token_ids=[] if ignore_eos else self.eos_token_ids,
            vocab_size=self.config.vocab_size,
        )

    def generate(
        self,
        prompt: Prompt,
        *,
        max_tokens: int = 256,
        stop: Optional[Sequence[str]] = None,
        ignore_eos: bool = False,
        **sampling: Any,
    ) -> Completion:
        """Continues ``prompt`` (text, or token ids) and returns the whole completion.

        Args:
            prompt: text (tokenized with the tokenizer's special tokens) or token ids.
            max_tokens: at most this many new tokens.
            stop: strings that end generation; they are not part of the returned text.
            ignore_eos: keep going past end-of-sequence tokens (for benchmarks and tests).
            **sampling: any field of :class:`SamplingOptions` (``temperature``, ``top_k``,
                ``top_p``, ``min_p``, ``repetition_penalty``, ``presence_penalty``,
                ``frequency_penalty``, ``seed``, ``logit_bias``); unset ones come from the
                checkpoint's ``generation_config.json``, else LFM2's recommended values.
        """
        generation = self._generation(self._prompt_tokens(prompt), max_tokens, stop, ignore_eos, sampling)
        for _ in generation:
            pass
        assert generation.completion is not None
        return generation.completion

    def stream(
        self,
        prompt: Prompt,
        *,
        max_tokens: int = 256,
        stop: Optional[Sequence[str]] = None,
        ignore_eos: bool = False,
        **sampling: Any,
    ) -> Iterator[str]:
        """Like :meth:`generate`, but yields text pieces as they are produced.

        A piece never ends inside a multi-byte character, and text that might begin a stop
        string is held back until it is known not to.
        """
        yield from self._generation(self._prompt_tokens(prompt), max_tokens, stop, ignore_eos, sampling)

    def apply_chat_template(
        self, messages: Sequence[Message], *, add_generation_prompt: bool = True, **template_args: Any
    ) -> str:
        """Renders ``messages`` with the model's own chat template, as transformers does."""
        if self.chat_template is None:
            raise LoadError(f"{self._checkpoint.path}: the checkpoint has no chat template")
        return self.chat_template.render(list(messages), add_generation_prompt=add_generation_prompt, **template_args)

    def _chat_tokens(self, messages: Sequence[Message], template_args: Dict[str, Any]) -> List[int]:
        return self.tokenize(self.apply_chat_template(messages, **template_args), add_special_tokens=False)

    def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 512,
        stop: Optional[Sequence[str]] = None,
        template_args: Optional[Dict[str, Any]] = None,
        **sampling: Any,
    ) -> Completion:
        """Answers a conversation (``[{"role": "user", "content": "..."}, ...]``).

        The model's chat template renders the messages with the generation prompt; the answer
        ends at the end-of-turn token. ``template_args`` go to the template (e.g. ``tools``).
        """
        tokens = self._chat_tokens(messages, template_args or {})
        generation = self._generation(tokens, max_tokens, stop, False, sampling)
        for _ in generation:
            pass
        assert generation.completion is not None
        return generation.completion

    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 512,
        stop: Optional[Sequence[str]] = None,
        template_args: Optional[Dict[str, Any]] = None,
        **sampling: Any,
    ) -> Iterator[str]:
        """Like :meth:`chat`, but yields the answer's text pieces as they are produced."""
        tokens = self._chat_tokens(messages, template_args or {})
        yield from self._generation(tokens, max_tokens, stop, False, sampling)

    def __repr__(self) -> str:
        c = self.config
        n_attention = sum(kind == "full_attention" for kind in c.layer_types)
        dtypes = sorted({ref.dtype for ref in self._checkpoint.tensors.values()})
        return (
            f"Model(path={self._checkpoint.path!r}, layers={len(c.layer_types)} "
            f"({len(c.layer_types) - n_attention} conv, {n_attention} attention), hidden={c.hidden_size}, "
            f"ff={c.ff_dim}, heads={c.n_heads}/{c.n_kv_heads}kv, vocab={c.vocab_size}, "
            f"dtype={'/'.join(dtypes)}, threads={self.n_threads}, kernels={self._core.kernel_set})"
        )
