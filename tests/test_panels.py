"""Q4_0, Q8_0, Q4_K and Q6_K matrices repacked at load into 16-row panels (cpp/src/backends/cpu/panels.h).

Kernel sets with panel kernels for a type (scalar, avx2 and avx512 for all four) repack its matrices when the model loads and release the file pages they
came from; the others (neon, neon_dotprod) read GGUF's rows. The kernels themselves are tested in
cpp/tests/test_kernels.cpp, where the scalar panel kernels equal the scalar row kernels bit for
bit; here: the loaders' file-mapping flag, and whole repacked models on each SIMD kernel set
computing what the scalar set (hence the row kernels) computes. Most fixtures' rows are too short
for K-quant blocks; gqa2_hd64's Q4_K_M file holds two Q4_K matrices and one Q6_K.
"""

from __future__ import annotations

import numpy as np
import pytest

import lfmrt
from lfmrt.loaders import load_checkpoint
from lfmrt.quantization.gguf_writer import write_gguf
from lfmrt.quantization import quantize_checkpoint

from conftest import kl_divergence, load_golden

MODEL = "lfm2_350m_pattern_bf16"  # the released 350M's layer pattern, tied embeddings


def test_loaders_mark_file_mappings(tmp_path):
    checkpoint = load_checkpoint(load_golden(MODEL).path)
    assert all(ref.file_mapped for ref in checkpoint.tensors.values())
    write_gguf(checkpoint, tmp_path / "q4_0.gguf", "q4_0")
    assert all(ref.file_mapped for ref in load_checkpoint(tmp_path / "q4_0.gguf").tensors.values())
    # Quantized on load: new arrays in memory, whose pages must never be dropped.
    quantized = quantize_checkpoint(checkpoint, "q4_0")
    for name, ref in quantized.tensors.items():
        assert ref.file_mapped == (ref.dtype == checkpoint.tensors[name].dtype), name


@pytest.mark.parametrize(
    "model_name, scheme_name", [(MODEL, "q8_0"), (MODEL, "q4_0"), ("gqa2_hd64_bf16_jinja", "q4_k_m")]
)
def test_repacked_models_compute_what_row_kernels_compute(model_name, scheme_name, tmp_path):
    simd_sets = [s for s in lfmrt.cpu_info()["kernel_sets"] if s != "scalar"]
    golden = load_golden(model_name)
    path = tmp_path / f"{scheme_name}.gguf"
    write_gguf(load_checkpoint(golden.path), path, scheme_name)
    prompt = golden.prompts[1]
    reference = lfmrt.Model.load(path, device="cpu:scalar").logits(prompt)
    for isa in simd_sets:
        first = lfmrt.Model.load(path, device=f"cpu:{isa}")
        # A second model of the same file, loaded after the first released the pages of its
        # repacked matrices: they come back from the file, so it computes the same bits.
        second = lfmrt.Model.load(path, device=f"cpu:{isa}")
        panels = first.logits(prompt)
        np.testing.assert_array_equal(second.logits(prompt), panels)
        # Kernel sets differ in the order of fp32 roundings, which now and then moves an
        # activation across a rounding boundary of its 8-bit quantization: judged as quantized
        # paths are, by KL and top-1 (measured KL 1e-13 typically, 1e-3 at most between any two
        # kernel sets on these models; quantizing the weights alone costs 3e-2 to 1.4).
        assert kl_divergence(reference, panels) < 5e-3, isa
        assert (reference.argmax(-1) == panels.argmax(-1)).mean() >= 0.9, isa
