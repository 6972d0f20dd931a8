"""GGUF block formats in lfmrt's C++ core (``_core.quantize`` / ``_core.dequantize``).

- Q8_0 and Q4_0 quantize bit for bit as the ``gguf`` package's numpy quantizers.
- Every type's dequantization equals ``gguf.quants.dequantize`` exactly, on lfmrt's blocks and
  on random bytes (arbitrary scales, levels and packed 6-bit sub-block scales).
- The K-quant quantizers (``gguf.quants`` has none) are compared with llama.cpp's reference
  quantizers, loaded from llama-cpp-python's ``libggml-base``: the blocks must be identical,
  hence so is the error (skipped where llama-cpp-python is not installed), and the error stays
  under a fixed bound for each type.
- Activations (``_core.quantize_activations``): every kernel set quantizes a matmul's input as
  llama.cpp's CPU backend does for the same weight type (its ``quantize_row_q8_0`` for Q8_0 /
  Q4_0 weights, ``quantize_row_q8_K`` for K-quants, from llama-cpp-python's ``libggml-cpu``):
  the same levels and scales (skipped where llama-cpp-python is not installed).
- Model level: the golden tiny models with their matrices quantized by ``_core.quantize`` give
  logits close to those of the same quantized weights run in fp32 (KL divergence, top-1
  agreement; see KL_GROWTH_BOUND). Their widths (64, 128) are below the K-quants' 256-value
  blocks, so only Q8_0 and Q4_0 run there; the C++ kernel tests cover the K-quant matmuls.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as QType  # noqa: E402

from lfmrt import _core  # noqa: E402
from lfmrt.loaders import load_hf_checkpoint  # noqa: E402
from lfmrt.model import _core_config  # noqa: E402

BLOCK = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210)}
ALL_TYPES = list(BLOCK)


def weights_like(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Gaussian rows with the awkward cases mixed in: an all-zero row, tiny and huge rows, a
    row with one outlier per block, and a row of exact .5 multiples (rounding ties)."""
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x[0] = 0.0
    x[1] *= 1e-6
    x[2] *= 1e4
    x[3, ::32] *= 50.0
    x[4] = (rng.integers(-16, 16, cols) + 0.5).astype(np.float32)
    x[5, : cols // 2] = 0.0
    return x


def raw(qtype: str, data: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(data, dtype=np.uint8)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_quantize_matches_gguf_bit_for_bit(qtype):
    rng = np.random.default_rng(1)
    x = weights_like(rng, 48, 1024)
    ours = _core.quantize(x, qtype)
    theirs = gguf.quants.quantize(x, getattr(QType, qtype))
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape
    mismatched = np.argwhere(ours != theirs)
    assert mismatched.size == 0, f"{len(mismatched)} bytes differ, first at {mismatched[0].tolist()}"


@pytest.mark.parametrize("qtype", ALL_TYPES)
def test_dequantize_matches_gguf_exactly(qtype):
    rng = np.random.default_rng(2)
    elems, size = BLOCK[qtype]
    quantized = _core.quantize(weights_like(rng, 16, 4 * 256), qtype)
    random_blocks = rng.integers(0, 256, (16, 4 * 256 // elems * size), dtype=np.uint8)
    # Random bytes make random fp16 scales; keep them finite (inf * 0 would be NaN on both sides,
    # and NaN payloads are not the point here).
    for data in (quantized, random_blocks):
        data = data.copy()
        blocks = data.reshape(-1, size)
        scale_offsets = {"Q8_0": [0], "Q4_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [size - 2]}[qtype]
        for off in scale_offsets:
            half = blocks[:, off:off + 2].copy().view(np.float16)
            half[~np.isfinite(half)] = np.float16(1.5)
            blocks[:, off:off + 2] = half.view(np.uint8)
        ours = _core.dequantize(data, qtype, [16, 4 * 256])
        theirs = gguf.quants.dequantize(data, getattr(QType, qtype)).reshape(16, 4 * 256)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours.view(np.uint32), theirs.astype(np.float32).view(np.uint32))


def _llama_cpp_quantizers(library: str, functions: dict, init: str = ""):
    """{key: function} for `functions` ({key: symbol}, each ``void f(const float*, void*,
    int64_t)``) in llama-cpp-python's lib/`library`, after calling its `init` function if one is
    named; None where that is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(llama_cpp.__file__), "lib", library)
    if not os.path.exists(path):
        return None
    lib = ctypes.CDLL(path)
    if init:
        getattr(lib, init)()
    quantizers = {}
    for key, symbol in functions.items():
        fn = getattr(lib, symbol)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        quantizers[key] = fn
    return quantizers


def _llama_reference_quantizers():
    """llama.cpp's reference K-quant quantizers (``libggml-base``)."""
    symbols = {qtype: f"quantize_row_{qtype[:2].lower()}_K_ref" for qtype in ("Q4_K", "Q5_K", "Q6_K")}
    return _llama_cpp_quantizers("libggml-base.so", symbols)


# Relative RMS error bounds (error RMS / value RMS) on Gaussian rows: 5% above what the
# reference quantizers (gguf's for Q8_0/Q4_0, llama.cpp's for the K-quants, which lfmrt's
# match byte for byte) reach on this data: 0.00535, 0.0859, 0.0714, 0.0361, 0.0177.
RELATIVE_RMSE_BOUND = {"Q8_0": 0.0056, "Q4_0": 0.090, "Q4_K": 0.075, "Q5_K": 0.038, "Q6_K": 0.0186}


@pytest.mark.parametrize("qtype", ALL_TYPES)
def test_quantization_error_is_bounded(qtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 2048)).astype(np.float32)
    restored = _core.dequantize(_core.quantize(x, qtype), qtype, list(x.shape))
    relative = float(np.sqrt(np.mean((restored - x) ** 2)) / np.sqrt(np.mean(x**2)))
    assert relative < RELATIVE_RMSE_BOUND[qtype], relative


@pytest.mark.parametrize("qtype", ["Q4_K", "Q5_K", "Q6_K"])
def test_k_quants_match_llama_cpp_reference(qtype):
    quantizers = _llama_reference_quantizers()
    if quantizers is None:
        pytest.skip("llama-cpp-python's libggml-base is not available")
    rng = np.random.default_rng(4)
    x = weights_like(rng, 32, 1024)
    theirs = np.zeros((x.shape[0], x.shape[1] // 256 * BLOCK[qtype][1]), dtype=np.uint8)
    for r in range(x.shape[0]):
        row = np.ascontiguousarray(x[r])
        quantizers[qtype](row.ctypes.data, theirs[r].ctypes.data, x.shape[1])
    ours = _core.quantize(x, qtype)
    ours_error = np.mean((_core.dequantize(ours, qtype, list(x.shape)) - x) ** 2)
    theirs_error = np.mean((gguf.quants.dequantize(theirs, getattr(QType, qtype)) - x) ** 2)
    assert ours_error <= theirs_error * (1 + 1e-6)
    assert np.array_equal(ours, theirs), f"{int((ours != theirs).sum())} bytes differ from llama.cpp's"


# --------------------------------------------------------------------------------------------
# Activations: what the integer kernels multiply block weights with.

ACTIVATION_BLOCK = np.dtype([("d", "<f4"), ("dsum", "<f4"), ("qs", "i1", (32,))])


def _llama_activation_quantizers():
    """llama.cpp's activation quantizers for Q8_0/Q4_0 weights (its CPU ``quantize_row_q8_0``,
    fp16 scale per 32 values) and for K-quant weights (``quantize_row_q8_K``, fp32 scale per 256),
    from ``libggml-cpu``."""
    symbols = {name: f"quantize_row_{name}" for name in ("q8_0", "q8_K")}
    # ggml_cpu_init fills the CPU backend's tables (fp16 conversion) that its quantizers use.
    return _llama_cpp_quantizers("libggml-cpu.so", symbols, init="ggml_cpu_init")


def _activation_rows(rng: np.random.Generator) -> np.ndarray:
    """Rows whose blocks' scales stay inside fp16's normal range (where llama.cpp's fp16 Q8_0
    scale is exact), with an all-zero block, one outlier per 256 values and .5 ties."""
    x = rng.standard_normal((24, 1024)).astype(np.float32)
    x[1] *= 1e-2
    x[2] *= 1e3
    x[3, :32] = 0.0
    x[4, ::256] = 40.0
    x[5] = np.round(rng.uniform(-127, 127, 1024)) + 0.5
    x[5, ::32] = 127.0
    return x


@pytest.mark.parametrize("isa", _core.kernel_sets())
@pytest.mark.parametrize("weight", ["Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K"])
def test_activations_match_llama_cpps(weight, isa):
    """lfmrt quantizes a matmul's input as llama.cpp does for the same weight type: the same
    levels and scales (Q8_0 per 32 values for Q8_0/Q4_0 weights, Q8_K per 256 for K-quants), so
    the two runtimes' integer dot products are equal and only their summation order differs."""
    quantizers = _llama_activation_quantizers()
    if quantizers is None:
        pytest.skip("llama-cpp-python's libggml-cpu is not available")
    x = _activation_rows(np.random.default_rng(7))
    ours = _core.quantize_activations(x, weight, isa).view(ACTIVATION_BLOCK).reshape(x.shape[0], -1)
    per_256 = weight.endswith("_K")
    theirs_block = (
        np.dtype([("d", "<f4"), ("qs", "i1", (256,)), ("bsums", "<i2", (16,))])
        if per_256
        else np.dtype([("d", "<f2"), ("qs", "i1", (32,))])
    )
    theirs = np.zeros((x.shape[0], x.shape[1] // (256 if per_256 else 32)), theirs_block)
    for r in range(x.shape[0]):
        row = np.ascontiguousarray(x[r])
        quantizers["q8_K" if per_256 else "q8_0"](row.ctypes.data, theirs[r].ctypes.data, x.shape[1])
    their_d = np.repeat(theirs["d"].astype(np.float32), 8 if per_256 else 1, axis=1)
    their_qs = theirs["qs"].reshape(ours["qs"].shape).astype(np.int32)
    # Q8_K negates levels and scale when a block's largest-magnitude value is positive: the same
    # products, so compare magnitudes of scales and the levels with that sign taken out.
    sign = np.where(their_d < 0, -1, 1)
    np.testing.assert_array_equal(ours["d"], np.abs(their_d))
    np.testing.assert_array_equal(ours["qs"].astype(np.int32), their_qs * sign[..., None])
    level_sums = ours["qs"].astype(np.int32).sum(axis=-1).astype(np.float32)
    np.testing.assert_array_equal(ours["dsum"], ours["d"] * level_sums)


def test_activations_reject_float_weights_and_bad_rows():
    with pytest.raises(ValueError, match="float activations"):
        _core.quantize_activations(np.zeros((1, 32), np.float32), "F16")
    with pytest.raises(ValueError, match="multiple of 256"):
        _core.quantize_activations(np.zeros((1, 288), np.float32), "Q4_K")


def test_float_types_round_trip():
    x = np.random.default_rng(5).standard_normal((3, 40)).astype(np.float32)
    np.testing.assert_array_equal(_core.dequantize(_core.quantize(x, "F32"), "F32", [3, 40]), x)
    bf16 = _core.dequantize(_core.quantize(x, "BF16"), "BF16", [3, 40])
    np.testing.assert_allclose(bf16, x, rtol=2**-8)


@pytest.mark.parametrize(
    "call",
    [
        lambda: _core.quantize(np.zeros((2, 33), np.float32), "Q8_0"),       # not whole blocks
        lambda: _core.quantize(np.zeros((2, 32), np.float32), "Q4_K"),       # K-quants need 256
        lambda: _core.quantize(np.zeros(64, np.float32), "Q8_0"),            # not 2-D
        lambda: _core.quantize(np.zeros((2, 32), np.float32), "Q3_K"),       # unknown type
        lambda: _core.dequantize(np.zeros(33, np.uint8), "Q8_0", [1, 32]),   # wrong byte count
        lambda: _core.dequantize(np.zeros(34, np.uint8), "Q8_0", [1, 30]),   # not whole blocks
        lambda: _core.dequantize(np.zeros(34, np.uint8), "Q8_0", [-1, 32]),  # negative dimension
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------------------------
# Model level.


def _logits(core_model, tokens):
    session = _core.Session(core_model)
    return session.append(list(tokens), 16, True)


def _core_model(checkpoint, tensors):
    config = _core_config(checkpoint.config)
    config.max_context = 256
    return _core.Model(config, tensors, (checkpoint.files, tensors), 2)


def _quantized_tensors(checkpoint, qtype):
    """Every matrix whose rows are whole blocks quantized to qtype; the rest as stored."""
    tensors = {}
    elems = BLOCK[qtype][0]
    for name, ref in checkpoint.tensors.items():
        if len(ref.shape) == 2 and ref.shape[1] % elems == 0:
            values = _core.dequantize(np.ascontiguousarray(ref.data), ref.dtype, list(ref.shape))
            tensors[name] = (_core.quantize(values, qtype).reshape(-1), qtype, list(ref.shape))
        else:
            tensors[name] = (np.ascontiguousarray(ref.data), ref.dtype, list(ref.shape))
    return tensors


def _kl(p_logits, q_logits):
    """Mean over positions of KL(softmax(p) || softmax(q))."""
    p = np.exp(p_logits - p_logits.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    log_p = np.log(p)
    log_q = q_logits - q_logits.max(axis=-1, keepdims=True)
    log_q = log_q - np.log(np.exp(log_q).sum(axis=-1, keepdims=True))
    return float(np.mean(np.sum(p * (log_p - log_q), axis=-1)))


# The tiny models have random weights in 64-128 dimensions: no redundancy for quantization to
# hide in, so rounding the weights alone moves their logits a lot (measured KL against f32:
# Q8_0 0.002-0.024, Q4_0 0.4-2.6). The test therefore separates the two sources of error:
# the same quantized weights, dequantized and run through the float kernels, are the baseline,
# and lfmrt's integer path (which also rounds each activation block to 8 bits, as llama.cpp
# does) may add at most as much again, and must agree with the baseline on the top token.
KL_GROWTH_BOUND = 2.5
TOP1_AGREEMENT_BOUND = {"Q8_0": 0.7, "Q4_0": 0.7}  # measured 0.75-1.0: random models, slim top-1 margins


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_quantized_golden_models_stay_close_to_float(golden, qtype):
    checkpoint = load_hf_checkpoint(golden.path)
    quantized = _quantized_tensors(checkpoint, qtype)
    assert any(dtype == qtype for _, dtype, _ in quantized.values())
    dequantized = {
        name: (_core.dequantize(data, dtype, shape).reshape(-1).view(np.uint8), "F32", shape) if dtype == qtype
        else (data, dtype, shape)
        for name, (data, dtype, shape) in quantized.items()
    }
    floats = {n: (np.ascontiguousarray(r.data), r.dtype, list(r.shape)) for n, r in checkpoint.tensors.items()}
    prompt = golden.prompts[2]
    want = _logits(_core_model(checkpoint, floats), prompt)
    baseline = _logits(_core_model(checkpoint, dequantized), prompt)
    got = _logits(_core_model(checkpoint, quantized), prompt)
    assert got.shape == want.shape and np.isfinite(got).all()
    kl, kl_baseline = _kl(want, got), _kl(want, baseline)
    agreement = float(np.mean(np.argmax(got, -1) == np.argmax(baseline, -1)))
    assert kl <= KL_GROWTH_BOUND * kl_baseline + 1e-4, (kl, kl_baseline)
    assert agreement >= TOP1_AGREEMENT_BOUND[qtype], agreement
