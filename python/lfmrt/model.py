"""Model: load an LFM2 checkpoint, then generate, stream, chat and score with it."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Dict, Generator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _core
from .devices import physical_core_count, requested_device
from .errors import LoadError
from .generation.completion import Completion, Piece
from .generation.options import SamplingOptions
from .generation.requests import Prompt, generation_state, prompt_tokens, request_constraint
from .generation.scheduler import Scheduler
from .generation.session_pool import PooledGeneration, SessionPool
from .generation.state import Generation
from .hub import resolve_model
from .session import (
    DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_CHECKPOINTS,
    SNAPSHOT_MAGIC,
    Session,
    session_options,
    token_ids,
)
from .text.tool_calls import ToolDefinition, messages_for_template, tool_schemas, with_tool_calls

# The loaders (numpy, the gguf package), quantization and the chat template (jinja2) are
# imported where a model is loaded or a chat rendered, not here: `import lfmrt` stays fast.
if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer

    from .loaders import Checkpoint
    from .loaders.config import Lfm2Config
    from .loaders.safetensors import TensorRef
    from .text.chat_template import ChatTemplate
    from .text.structured import Constraint, ConstraintCompiler, ToolChoice

Message = Mapping[str, Any]

_LAYER_KINDS = {"conv": _core.LayerKind.SHORT_CONV, "full_attention": _core.LayerKind.ATTENTION}


def _aligned(ref: TensorRef) -> np.ndarray:
    """The tensor's bytes at an address aligned for its element type, as the kernels read them.

    Files written by the safetensors library are aligned; a hand-made header of odd length is
    not, and only then is the tensor copied. Quantized blocks (GGUF aligns them to 32 bytes)
    need the alignment of their leading fp16 scale.
    """
    from .loaders.safetensors import DTYPE_SIZES

    if ref.data.ctypes.data % DTYPE_SIZES.get(ref.dtype, 2) == 0:
        return ref.data
    return ref.data.copy()


def _core_tensor(ref: TensorRef) -> Tuple[np.ndarray, str, Tuple[int, ...], bool]:
    """``ref`` as the core takes it: (bytes, dtype, shape, whether the bytes are the file's mapping).

    The core may drop the mapped pages of a matrix it repacks at load (they would be read again
    from the file); an aligned copy is ordinary memory and keeps its pages.
    """
    data = _aligned(ref)
    return data, ref.dtype, ref.shape, ref.file_mapped and data is ref.data


_KV_CACHE_TYPES = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}


def _kv_cache_dtype(kv_cache: Optional[str], checkpoint: Checkpoint) -> str:
    """The KV cache's storage type: as asked, else f32 for an all-f32 checkpoint, else f16."""
    if kv_cache is None:
        all_f32 = all(ref.dtype == "F32" for ref in checkpoint.tensors.values())
        return "F32" if all_f32 else "F16"
    if kv_cache.lower() not in _KV_CACHE_TYPES:
        raise ValueError(f"kv_cache must be one of {', '.join(_KV_CACHE_TYPES)}, not {kv_cache!r}")
    return _KV_CACHE_TYPES[kv_cache.lower()]


def _chat_template(checkpoint: Checkpoint) -> Optional[ChatTemplate]:
    """The checkpoint's chat template, compiled; a broken one is the checkpoint's fault (LoadError)."""
    if not checkpoint.chat_template:
        return None
    from .text.chat_template import ChatTemplate, TemplateError

    special = checkpoint.special_tokens
    try:
        return ChatTemplate(checkpoint.chat_template, special.get("bos_token", ""), special.get("eos_token", ""))
    except TemplateError as error:
        raise LoadError(f"{checkpoint.path}: its chat template does not compile: {error}") from error


def _check_weight_shapes(checkpoint: Checkpoint) -> None:
    """LoadError naming config.json (or the GGUF metadata) and the field when a weight's shape
    disagrees with the config, before the core sees either."""
    from .loaders import GGUFCheckpoint
    from .loaders.config import GGUF_CONFIG_FIELDS, HF_CONFIG_FIELDS, check_weight_shapes

    if isinstance(checkpoint, GGUFCheckpoint):
        source, fields = f"{checkpoint.path} (its lfm2.* metadata)", GGUF_CONFIG_FIELDS
    else:
        source, fields = os.path.join(checkpoint.path, "config.json"), HF_CONFIG_FIELDS
    shapes = {name: ref.shape for name, ref in checkpoint.tensors.items()}
    check_weight_shapes(checkpoint.config, shapes, source, fields)


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

    Attributes:
        session_pool: the idle sessions calls without ``session=`` reuse by longest token
            prefix (a :class:`~lfmrt.generation.session_pool.SessionPool`; bounds with
            ``set_bounds``, ``max_sessions=0`` for no reuse).

    Example::

        model = lfmrt.Model.load("path/to/LFM2.5-350M")
        print(model.chat([{"role": "user", "content": "Hello!"}]).text)
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        n_threads: Optional[int] = None,
        device: Optional[str] = None,
        max_context: Optional[int] = None,
        kv_cache: Optional[str] = None,
    ) -> None:
        self._checkpoint = checkpoint
        self.config: Lfm2Config = checkpoint.config
        if max_context is not None and max_context < 1:
            raise ValueError("max_context must be at least 1")
        self.max_context = min(self.config.max_context, max_context or self.config.max_context)
        self.n_threads = n_threads if n_threads is not None else physical_core_count()
        if self.n_threads < 1:
            raise ValueError("n_threads must be at least 1")
        _check_weight_shapes(checkpoint)
        tensors = {name: _core_tensor(ref) for name, ref in checkpoint.tensors.items()}
        core_config = _core_config(self.config)
        core_config.max_context = self.max_context
        # The core keeps pointers into the mapped files and into any array made here (aligned or
        # quantized copies), so it holds both for as long as it lives, sessions included.
        self._core = _core.Model(
            core_config,
            tensors,
            (checkpoint.files, tensors),
            self.n_threads,
            requested_device(device),
            _kv_cache_dtype(kv_cache, checkpoint),
        )
        # Calls without session= take the session sharing their longest prefix from here.
        self.session_pool = SessionPool(self.session)
        self.tokenizer: Optional[Tokenizer] = checkpoint.tokenizer
        self.chat_template: Optional[ChatTemplate] = _chat_template(checkpoint)
        self.eos_token_ids: List[int] = list(checkpoint.generation.eos_token_id)
        self.default_sampling = self._sampling_defaults(checkpoint)
        self._compiler: Optional[ConstraintCompiler] = None  # made by the first constraint()
        self._compiler_lock = threading.Lock()

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights the backend holds beyond the loader's memory map: matrices repacked
        at load on the CPU, everything on a device. (Weights used as stored are file pages of the
        map, counted by the OS as they are touched.)"""
        return self._core.weight_bytes

    @property
    def workspace_bytes(self) -> int:
        """Bytes of activation buffers, grown to the largest step run so far (the prefill chunk)."""
        return self._core.workspace_bytes

    @property
    def device(self) -> str:
        """The device the model runs on, with its kernel set or index: ``"cpu:avx512"``, ``"opencl:0"``."""
        return self._core.device

    @property
    def kernel_set(self) -> str:
        """What runs the model: the CPU's kernel set (``"avx512"``), or an OpenCL device's name,
        platform and kernel paths (subgroup or local-memory reductions, fp16 loads, images) and
        whether its program came from the on-disk cache."""
        return self._core.kernel_set

    @classmethod
    def load(
        cls,
        path: Union[str, "os.PathLike[str]"],
        *,
        quant: Optional[str] = None,
        n_threads: Optional[int] = None,
        device: Optional[str] = None,
        max_context: Optional[int] = None,
        kv_cache: Optional[str] = None,
        file: Optional[str] = None,
        revision: Optional[str] = None,
    ) -> "Model":
        """Loads a Hugging Face LFM2 checkpoint directory or an LFM2 GGUF file.

        The weights are memory-mapped, not copied: loading is fast and resident memory grows
        with what is used. The exception: where the CPU's kernels read Q4_0, Q8_0, Q6_K (and,
        with AVX-512, Q4_K) matrices in a layout of their own (x86-64), those are repacked
        once at load and the mapped pages they came from are released, so memory holds one
        copy (with ``quant``, the arrays quantized on load stay too: one extra copy of those
        matrices). Weights are
        used as stored (bf16, f16, f32, and GGUF's Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) unless
        ``quant`` asks for other types.

        Args:
            path: a directory with ``config.json``, safetensors weights (single or sharded) and,
                for text in and out, ``tokenizer.json``; or a ``.gguf`` file (architecture
                ``lfm2``, as llama.cpp's converter writes it; tokenizer and chat template come
                from its metadata). Also ``"demo"`` (the bundled demo model) or a Hugging Face
                repo id: ``"LiquidAI/LFM2.5-350M"``, or a GGUF repo with a quant tag,
                ``"LiquidAI/LFM2.5-350M-GGUF:Q8_0"`` (default Q4_K_M), downloaded once into the
                Hub cache (``pip install "lfmrt[hub]"``; ``HF_HUB_OFFLINE=1`` reads the cache
                only). See :mod:`lfmrt.hub`.
            quant: quantize on load to ``"q8_0"``, ``"q4_0"``, ``"q4_k_m"``, ``"q5_k_m"``,
                ``"q6_k"`` (or ``"f16"``, ``"bf16"``, ``"f32"``), with the same tensor-type
                policy as ``lfmrt quantize`` (see :mod:`lfmrt.quantization`).
            n_threads: compute threads (default: this machine's physical cores).
            device: where to run: ``"cpu"`` (the default, or ``$LFMRT_DEVICE``), ``"cpu:<kernel
                set>"`` to force a CPU kernel set (``"cpu:scalar"``, ``"cpu:avx2"``,
                ``"cpu:avx512"`` on x86-64, ``"cpu:neon"``, ``"cpu:neon_dotprod"``,
                ``"cpu:neon_i8mm"`` on aarch64; ``$LFMRT_ISA`` names one for plain ``"cpu"``),
                ``"opencl"`` / ``"opencl:N"``, or
                ``"cuda"`` / ``"cuda:N"``. :func:`lfmrt.devices` lists what this machine has.
            max_context: the longest sequence a session may hold (default and upper bound:
                the model's own context length).
            kv_cache: how the KV cache stores keys and values: ``"f16"`` (the default, half
                the memory of ``"f32"``), ``"q8_0"`` (about half of f16 again, a small quality
                cost) or ``"f32"`` (the default for f32 weights, where exactness is the point).
            file: for a GGUF repo id, the file to use, by name or glob (``"*Q4_K_M.gguf"``).
            revision: for a repo id, the branch, tag or commit (default ``main``).

        Raises:
            LoadError: a missing or malformed file, tensor or config field (named in the message);
                a repo id that is not cached when the Hub cannot be reached or HF_HUB_OFFLINE=1.
            ValueError: an unknown ``quant``; an unknown ``device``, or one this machine lacks.
        """
        from .loaders import load_checkpoint
        from .quantization import quantize_checkpoint

        checkpoint = load_checkpoint(resolve_model(path, revision=revision, file=file))
        if quant is not None:
            checkpoint = quantize_checkpoint(checkpoint, quant)
        return cls(checkpoint, n_threads=n_threads, device=device, max_context=max_context, kv_cache=kv_cache)

    @staticmethod
    def _sampling_defaults(checkpoint: Checkpoint) -> SamplingOptions:
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

    def require_tokenizer(self) -> Tokenizer:
        """The tokenizer; LoadError when the checkpoint has none (no text in or out then)."""
        if self.tokenizer is None:
            raise LoadError(f"{self._checkpoint.path}: no tokenizer.json, so text in or out is unavailable")
        return self.tokenizer

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> List[int]:
        """Token ids of ``text`` (with the tokenizer's special tokens, e.g. bos, unless told not to)."""
        return self.require_tokenizer().encode(text, add_special_tokens=add_special_tokens).ids

    def detokenize(self, tokens: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """The text of ``tokens``.

        Raises:
            TypeError: ``tokens`` holds something other than integers.
            ValueError: a token id outside the vocabulary (naming it and its index).
        """
        ids = token_ids(tokens)
        vocab_size = self.config.vocab_size
        for index, token in enumerate(ids):
            if not 0 <= token < vocab_size:
                raise ValueError(f"token id {token} at index {index} is outside the vocabulary [0, {vocab_size})")
        return self.require_tokenizer().decode(ids, skip_special_tokens=skip_special_tokens)

    # --- compute --------------------------------------------------------------------------

    def session(
        self,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL,
        max_checkpoints: int = DEFAULT_MAX_CHECKPOINTS,
    ) -> Session:
        """A new, empty session (its own KV cache and conv state) on this model.

        Args:
            chunk_size: prefill chunk, in tokens (bounds activation memory).
            checkpoint_interval: a conv checkpoint every this many positions; a rewind re-runs
                at most this many tokens (fewer at turn boundaries, which are checkpointed too).
            max_checkpoints: at most this many checkpoints are kept (each is a few KB per conv
                layer); beyond it the two closest merge.
        """
        options = session_options(checkpoint_interval, max_checkpoints)
        return Session(_core.Session(self._core, options), chunk_size)

    def load_session(self, snapshot: Union[bytes, str, "os.PathLike[str]"]) -> Session:
        """Restores a session saved with ``Session.save`` (bytes, or a file path).

        Raises:
            LoadError: the snapshot is corrupt or truncated, or was made with another model.
        """
        source: Optional[str] = None
        if isinstance(snapshot, (bytes, bytearray)):
            data = bytes(snapshot)
        else:
            source = os.fspath(snapshot)
            try:
                with open(source, "rb") as f:
                    data = f.read()
            except OSError as error:
                raise LoadError(f"{source}: cannot read the session snapshot ({error.strerror})") from error
        where = f"{source}: " if source is not None else ""
        if not data.startswith(SNAPSHOT_MAGIC) and data.lstrip()[:1] == b"{":
            raise LoadError(
                f"{where}not a session snapshot (Session.save) but a JSON document: a conversation saved "
                "by lfmrt-chat's /save loads with /load in lfmrt-chat"
            )
        try:
            core = _core.Session.restore(self._core, data, session_options(DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_MAX_CHECKPOINTS))
        except LoadError as error:
            raise LoadError(f"{where}{error}") from None
        return Session(core)

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits after every token of ``tokens``, shape ``(len(tokens), vocab)``, float32.

        A long sequence runs one prefill chunk per core call, so Ctrl-C (which Python handles
        only between calls into the core) stops it within a chunk.

        Raises:
            TypeError: ``tokens`` holds something other than integers.
            ValueError: no tokens, a token id outside the vocabulary, more tokens than the context.
        """
        ids = token_ids(tokens)
        if not ids:
            raise ValueError("logits() needs at least one token")
        if len(ids) > self.max_context:
            raise ValueError(f"logits() got {len(ids)} tokens; the context holds {self.max_context}")
        session = self.session()
        step = session.chunk_size
        slices = [session.append(ids[start : start + step], all_logits=True) for start in range(0, len(ids), step)]
        if len(slices) == 1:
            return slices[0]
        import numpy as np

        return np.concatenate(slices)

    def constraint(
        self,
        *,
        response_format: Optional[Mapping[str, Any]] = None,
        grammar: Union[str, Mapping[str, Any], None] = None,
        regex: Optional[str] = None,
        tools: Optional[Sequence[ToolDefinition]] = None,
        tool_choice: Optional[ToolChoice] = None,
        parallel_tool_calls: bool = True,
    ) -> Optional[Constraint]:
        """Builds (checks and compiles) an output constraint once, for any number of generations:
        pass it as ``constraint=`` to :meth:`generate`, :meth:`chat`, ``Scheduler.submit``, ...
        Returns ``None`` when the options ask for no constraint.

        The options are those of :meth:`lfmrt.text.structured.ConstraintCompiler.compile`:
        ``response_format`` (OpenAI's ``json_object`` / ``json_schema`` / ``text``), ``grammar``
        (Lark or GBNF), ``regex``, and ``tools`` with ``tool_choice`` (``"auto"``, ``"none"``,
        ``"required"``, or one named function, forced in LFM2's call syntax with arguments
        valid against the tool's schema), and ``parallel_tool_calls`` (``False``: a forced
        call block holds one call). Needs ``pip install "lfmrt[structured]"`` for all but
        ``tool_choice="none"``; the first constraint builds the grammar engine's token table
        (about a second on a 65k vocabulary).

        Raises:
            ValueError: a bad option, an invalid or unsatisfiable schema, grammar or regex
                (the message names the field).
            ImportError: the grammar engine (llguidance) is not installed.
        """
        with self._compiler_lock:
            if self._compiler is None:
                from .text.structured import Constraint, ConstraintCompiler, ToolChoice

                self._compiler = ConstraintCompiler(self.require_tokenizer, self.config.vocab_size, self.eos_token_ids)
        return self._compiler.compile(
            response_format=response_format, grammar=grammar, regex=regex, tools=tools, tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
        )

    def _generation(
        self,
        tokens: Sequence[int],
        *,
        max_tokens: int,
        stop: Union[str, Sequence[str], None],
        ignore_eos: bool,
        session: Optional[Session],
        skip_special_tokens: bool,
        constraint: Optional[Constraint],
        sampling: Mapping[str, Any],
    ) -> Generation:
        """One generation; without ``session``, on the pooled session sharing the longest prefix
        with ``tokens``, given back to :attr:`session_pool` when the generation ends."""
        if session is not None:
            return Generation(
                generation_state(
                    self, tokens, max_tokens=max_tokens, stop=stop, ignore_eos=ignore_eos, sampling=sampling,
                    session=session, skip_special_tokens=skip_special_tokens, constraint=constraint,
                ),
                compute_threads=self.n_threads,
            )
        pooled, _ = self.session_pool.acquire(tokens)
        try:
            state = generation_state(
                self, tokens, max_tokens=max_tokens, stop=stop, ignore_eos=ignore_eos, sampling=sampling,
                session=pooled, skip_special_tokens=skip_special_tokens, constraint=constraint,
            )
        except BaseException:
            self.session_pool.release(pooled)
            raise
        return PooledGeneration(state, self.session_pool, compute_threads=self.n_threads)

    def generate(
        self,
        prompt: Prompt,
        *,
        max_tokens: int = 256,
        stop: Union[str, Sequence[str], None] = None,
        ignore_eos: bool = False,
        session: Optional[Session] = None,
        skip_special_tokens: bool = True,
        response_format: Optional[Mapping[str, Any]] = None,
        grammar: Union[str, Mapping[str, Any], None] = None,
        regex: Optional[str] = None,
        constraint: Optional[Constraint] = None,
        **sampling: Any,
    ) -> Completion:
        """Continues ``prompt`` (text, or token ids) and returns the whole completion.

        Args:
            prompt: text (tokenized with the tokenizer's special tokens) or token ids.
            max_tokens: at most this many new tokens (fewer if the context fills up).
            stop: a string, or strings, that end generation; they are not part of the returned text.
            ignore_eos: keep going past end-of-sequence tokens (for benchmarks and tests).
            session: continue in this session, reusing the longest common prefix of what it
                holds and the prompt (only the rest is prefilled); afterwards it holds the
                prompt and the answer. Default: the session of :attr:`session_pool` sharing the
                longest prefix with the prompt (a new one when none does), back in the pool after.
            skip_special_tokens: leave special tokens (``<|im_end|>``, ``<|startoftext|>``, ...)
                out of the text, all but the answer's own markup (tool-call markers and
                reasoning tags); ``Completion.tokens`` has every token either way.
            response_format, grammar, regex: constrain the answer (see :meth:`constraint`):
                OpenAI's ``{"type": "json_object"}`` or ``{"type": "json_schema",
                "json_schema": {"name": ..., "schema": {...}}}``, a Lark / GBNF grammar, or a
                regular expression. The generation ends where the constrained answer is
                complete (``finish_reason`` ``"stop"``); stop strings and ``max_tokens`` still
                apply (``"length"``: the answer is incomplete).
            constraint: a constraint built earlier with :meth:`constraint` (instead of the three above).
            **sampling: any field of :class:`SamplingOptions` (``temperature``, ``top_k``,
                ``top_p``, ``min_p``, ``repetition_penalty``, ``presence_penalty``,
                ``frequency_penalty``, ``seed``, ``logit_bias``, ``logprobs``,
                ``top_logprobs``); unset ones come from the checkpoint's
                ``generation_config.json``, else LFM2's recommended values.

        Raises:
            ConstraintError: the constraint cannot go on (see :class:`lfmrt.ConstraintError`).
        """
        constraint = request_constraint(self, constraint, response_format=response_format, grammar=grammar, regex=regex)
        generation = self._generation(
            prompt_tokens(self, prompt), max_tokens=max_tokens, stop=stop, ignore_eos=ignore_eos, session=session,
            skip_special_tokens=skip_special_tokens, constraint=constraint, sampling=sampling,
        )
        for _ in generation:
            pass
        assert generation.completion is not None
        return generation.completion

    def stream(
        self,
        prompt: Prompt,
        *,
        max_tokens: int = 256,
        stop: Union[str, Sequence[str], None] = None,
        ignore_eos: bool = False,
        session: Optional[Session] = None,
        skip_special_tokens: bool = True,
        response_format: Optional[Mapping[str, Any]] = None,
        grammar: Union[str, Mapping[str, Any], None] = None,
        regex: Optional[str] = None,
        constraint: Optional[Constraint] = None,
        **sampling: Any,
    ) -> Generator[Piece, None, Completion]:
        """Like :meth:`generate`, but yields text pieces as they are produced.

        A piece never ends inside a multi-byte character, and text that might begin a stop
        string is held back until it is known not to. Each piece is a :class:`Piece` (a
        ``str``) whose ``logprobs`` hold, with ``logprobs=True``, the log-probabilities of the
        tokens sampled since the previous piece. The generator's return value
        (``StopIteration.value``) is the finished :class:`Completion`.
        """
        constraint = request_constraint(self, constraint, response_format=response_format, grammar=grammar, regex=regex)
        generation = self._generation(
            prompt_tokens(self, prompt), max_tokens=max_tokens, stop=stop, ignore_eos=ignore_eos, session=session,
            skip_special_tokens=skip_special_tokens, constraint=constraint, sampling=sampling,
        )
        yield from generation
        assert generation.completion is not None
        return generation.completion

    def generate_batch(
        self,
        prompts: Sequence[Prompt],
        *,
        max_tokens: int = 256,
        stop: Union[str, Sequence[str], None] = None,
        ignore_eos: bool = False,
        max_batch: int = 64,
        skip_special_tokens: bool = True,
        response_format: Optional[Mapping[str, Any]] = None,
        grammar: Union[str, Mapping[str, Any], None] = None,
        regex: Optional[str] = None,
        constraint: Union[Constraint, Sequence[Optional[Constraint]], None] = None,
        **sampling: Any,
    ) -> List[Completion]:
        """Generates for many prompts together (continuous batching: each decode step runs all
        active sequences through the model at once, reading the weights once). Greedy results
        equal :meth:`generate`'s for each prompt alone.

        ``response_format`` / ``grammar`` / ``regex`` (or one ``constraint``) constrain every
        answer; ``constraint`` may instead be a list with one constraint (or ``None``) per
        prompt."""
        from .text.structured import Constraint  # numpy, loaded on first use

        if constraint is None or isinstance(constraint, Constraint):
            constraint = request_constraint(self, constraint, response_format=response_format, grammar=grammar, regex=regex)
            constraints: List[Optional[Constraint]] = [constraint] * len(prompts)
        else:
            constraints = list(constraint)
            if len(constraints) != len(prompts):
                raise ValueError(f"constraint: {len(constraints)} constraints for {len(prompts)} prompts")
            if any(value is not None for value in (response_format, grammar, regex)):
                raise ValueError("per-prompt constraints already say what each answer must follow: leave out response_format, grammar and regex")
        scheduler = Scheduler(self, max_batch=max_batch)
        requests = [
            scheduler.submit(
                prompt, max_tokens=max_tokens, stop=stop, ignore_eos=ignore_eos,
                skip_special_tokens=skip_special_tokens, constraint=prompt_constraint, **sampling,
            )
            for prompt, prompt_constraint in zip(prompts, constraints)
        ]
        scheduler.run()
        for request in requests:
            if request.error is not None:
                raise request.error
        return [request.completion for request in requests]  # type: ignore[misc]

    def apply_chat_template(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        tools: Optional[Sequence[ToolDefinition]] = None,
        **template_args: Any,
    ) -> str:
        """Renders ``messages`` with the model's own chat template, as transformers does.

        ``tools`` are what :meth:`chat` takes (JSON-schema definitions or Python functions), and
        OpenAI-style assistant ``tool_calls`` are written as the model writes them, so this is
        exactly the prompt :meth:`chat` runs.
        """
        messages, args = self._chat_inputs(messages, template_args, tools)
        return self._render(messages, args, add_generation_prompt)

    def _render(self, messages: Sequence[Message], template_args: Dict[str, Any], add_generation_prompt: bool = True) -> str:
        if self.chat_template is None:
            raise LoadError(f"{self._checkpoint.path}: the checkpoint has no chat template")
        return self.chat_template.render(messages, add_generation_prompt=add_generation_prompt, **template_args)

    def _chat_tokens(
        self, messages: Sequence[Message], template_args: Dict[str, Any], max_tokens: int, context_policy: str
    ) -> List[int]:
        if context_policy not in ("error", "drop_oldest"):
            raise ValueError("context_policy must be 'error' or 'drop_oldest'")
        messages = list(messages)
        while True:
            tokens = self.tokenize(self._render(messages, template_args), add_special_tokens=False)
            if len(tokens) + min(max_tokens, 1) <= self.max_context or context_policy == "error":
                return tokens
            # Drop the oldest turn after any system message, keeping at least the last message.
            first = 1 if messages and messages[0].get("role") == "system" else 0
            if len(messages) - first <= 1:
                return tokens  # nothing left to drop: the generation will report the overflow
            del messages[first]

    def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 512,
        stop: Union[str, Sequence[str], None] = None,
        session: Optional[Session] = None,
        context_policy: str = "error",
        template_args: Optional[Dict[str, Any]] = None,
        tools: Optional[Sequence[ToolDefinition]] = None,
        tool_choice: Optional[ToolChoice] = None,
        parallel_tool_calls: bool = True,
        skip_special_tokens: bool = True,
        response_format: Optional[Mapping[str, Any]] = None,
        grammar: Union[str, Mapping[str, Any], None] = None,
        regex: Optional[str] = None,
        constraint: Optional[Constraint] = None,
        **sampling: Any,
    ) -> Completion:
        """Answers a conversation (``[{"role": "user", "content": "..."}, ...]``).

        The model's chat template renders the messages with the generation prompt; the answer
        ends at the end-of-turn token.

        Args:
            session: a session to keep across turns. Each turn reuses the longest common token
                prefix with what the session holds, so turn N costs its new tokens, not the
                whole conversation (also when the template re-renders an earlier turn
                differently, e.g. dropping old reasoning). Without it, the turn takes the
                session of :attr:`session_pool` sharing the longest prefix, so a longer history
                sent again reuses the earlier turns just the same (within the pool's bounds).
            context_policy: ``"error"`` (default) raises ValueError when the conversation does
                not fit the context; ``"drop_oldest"`` drops the oldest turns (after any system
                message) until it does.
            template_args: extra variables for the template.
            skip_special_tokens: as for :meth:`generate`.
            tools: tools the model may call: JSON-schema definitions (OpenAI-style or bare) or
                Python functions (see :mod:`lfmrt.text.tool_calls`). The answer's calls come back parsed
                in ``Completion.tool_calls``; ``tool`` messages carry their results.
            tool_choice: ``"auto"`` (the default: the model decides), ``"none"`` (no call: the
                call-start token is banned), ``"required"`` (the answer is one or more calls),
                or ``{"type": "function", "function": {"name": ...}}`` (one call of that tool).
                Forced calls follow LFM2's syntax with arguments valid against each tool's
                schema, so ``Completion.tool_calls`` always parses (see :meth:`constraint`).
            parallel_tool_calls: ``False``: at most one call. A forced call block then ends after
                its first call (the grammar says so); with ``"auto"``, only the first call the
                model writes is kept in ``Completion.tool_calls``, as the server does.
            response_format, grammar, regex, constraint: constrain the answer, as for
                :meth:`generate` (with ``tool_choice="auto"`` and tools: a call or such an answer).
            **sampling: as for :meth:`generate`.
        """
        generation = self._chat_generation(
            messages, max_tokens, stop, session, context_policy, template_args, tools, tool_choice,
            parallel_tool_calls, skip_special_tokens, response_format, grammar, regex, constraint, sampling,
        )
        for _ in generation:
            pass
        assert generation.completion is not None
        return with_tool_calls(generation.completion, parallel=parallel_tool_calls)

    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 512,
        stop: Union[str, Sequence[str], None] = None,
        session: Optional[Session] = None,
        context_policy: str = "error",
        template_args: Optional[Dict[str, Any]] = None,
        tools: Optional[Sequence[ToolDefinition]] = None,
        tool_choice: Optional[ToolChoice] = None,
        parallel_tool_calls: bool = True,
        skip_special_tokens: bool = True,
        response_format: Optional[Mapping[str, Any]] = None,
        grammar: Union[str, Mapping[str, Any], None] = None,
        regex: Optional[str] = None,
        constraint: Optional[Constraint] = None,
        **sampling: Any,
    ) -> Generator[Piece, None, Completion]:
        """Like :meth:`chat`, but yields the answer's text pieces (:class:`Piece`, as
        :meth:`stream` does) as they are produced.

        The generator's return value (``StopIteration.value``, or the value of ``yield from``)
        is the finished :class:`Completion`, timings and tool calls included.
        """
        generation = self._chat_generation(
            messages, max_tokens, stop, session, context_policy, template_args, tools, tool_choice,
            parallel_tool_calls, skip_special_tokens, response_format, grammar, regex, constraint, sampling,
        )
        yield from generation
        assert generation.completion is not None
        return with_tool_calls(generation.completion, parallel=parallel_tool_calls)

    def _chat_generation(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        stop: Union[str, Sequence[str], None],
        session: Optional[Session],
        context_policy: str,
        template_args: Optional[Dict[str, Any]],
        tools: Optional[Sequence[ToolDefinition]],
        tool_choice: Optional[ToolChoice],
        parallel_tool_calls: bool,
        skip_special_tokens: bool,
        response_format: Optional[Mapping[str, Any]],
        grammar: Union[str, Mapping[str, Any], None],
        regex: Optional[str],
        constraint: Optional[Constraint],
        sampling: Mapping[str, Any],
    ) -> Generation:
        """Checks everything (the constraint included) before the conversation runs."""
        constraint = request_constraint(
            self, constraint, response_format=response_format, grammar=grammar, regex=regex, tools=tools,
            tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls,
        )
        messages, args = self._chat_inputs(messages, template_args, tools)
        tokens = self._chat_tokens(messages, args, max_tokens, context_policy)
        return self._generation(
            tokens, max_tokens=max_tokens, stop=stop, ignore_eos=False, session=session,
            skip_special_tokens=skip_special_tokens, constraint=constraint, sampling=sampling,
        )

    def _chat_inputs(
        self,
        messages: Sequence[Message],
        template_args: Optional[Dict[str, Any]],
        tools: Optional[Sequence[ToolDefinition]],
    ) -> Tuple[List[Message], Dict[str, Any]]:
        """The messages (checked) and template variables to render: ``tools`` as the template
        expects them, and OpenAI-style assistant ``tool_calls`` written into the content when the
        template does not read them itself."""
        from .text.chat_template import check_conversation

        check_conversation(messages)
        args = dict(template_args or {})
        if tools is not None:
            args["tools"] = tool_schemas(tools)
        source = self.chat_template.source if self.chat_template is not None else ""
        return messages_for_template(messages, source), args

    def __repr__(self) -> str:
        c = self.config
        n_attention = sum(kind == "full_attention" for kind in c.layer_types)
        dtypes = sorted({ref.dtype for ref in self._checkpoint.tensors.values()})
        return (
            f"Model(path={self._checkpoint.path!r}, layers={len(c.layer_types)} "
            f"({len(c.layer_types) - n_attention} conv, {n_attention} attention), hidden={c.hidden_size}, "
            f"ff={c.ff_dim}, heads={c.n_heads}/{c.n_kv_heads}kv, vocab={c.vocab_size}, "
            f"dtype={'/'.join(dtypes)}, device={self.device}, threads={self.n_threads})"
        )
