"""GGUF in and out: the loader, the writer, quantize-on-load, the tokenizer round trip, bad files,
and llama.cpp (llama-cpp-python, when it imports) on the files lfmrt writes."""

from __future__ import annotations

import json
import mmap
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from tokenizers import Tokenizer

import lfmrt
from lfmrt.cli.main import main as cli_main
from lfmrt.loaders import load_checkpoint, load_gguf_checkpoint
from lfmrt.loaders.gguf import GLOBAL_TENSOR_NAMES, LAYER_TENSOR_NAMES, _walk_header
from lfmrt.loaders.gguf_tokenizer import TOKENIZER_ARRAYS
from lfmrt.quantization.gguf_writer import write_gguf
from lfmrt.quantization import SCHEMES, scheme, tensor_types

from conftest import MODELS_DIR, TOKENIZER_DIR, golden_model_names, kl_divergence, load_golden

QUANTIZED = ("q8_0", "q4_0", "q4_k_m")
# llama.cpp loads LFM2 only with short-conv layers present and without conv biases.
LLAMA_CPP_MODELS = ("lfm2_350m_pattern_bf16", "mixed_mha_hd64_f32_dialectA", "gqa2_hd64_bf16_jinja")
SOURCE_SCHEME = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def text_tokens(n: int = 250) -> list:
    """bos + text-like token ids from the fixtures' tokenizer (random ids make odd KL figures)."""
    import pydoc_data.topics as topics

    tok = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    text = "".join(topics.topics[k] for k in ("assert", "if", "while", "for"))
    return tok.encode(text, add_special_tokens=True).ids[:n]


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory) -> Path:
    """Every golden model written in f32, f16, its own float type and the quantized schemes."""
    out = tmp_path_factory.mktemp("gguf")
    for name in golden_model_names():
        golden = load_golden(name)
        checkpoint = load_checkpoint(golden.path)
        for scheme_name in {"f32", "f16", SOURCE_SCHEME[golden.dtype], *QUANTIZED}:
            write_gguf(checkpoint, out / f"{name}-{scheme_name}.gguf", scheme_name)
    return out


# --- the name map and the type policy -------------------------------------------------------------


def test_tensor_names_are_llama_cpps():
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LFM2, 2)
    pairs = list(GLOBAL_TENSOR_NAMES.items()) + [
        (f"layers.1.{c}", f"blk.1.{g}") for c, g in LAYER_TENSOR_NAMES.items()
    ]
    for canonical, gguf_name in pairs:
        hf_name = canonical if canonical.startswith("lm_head") else f"model.{canonical}"
        assert name_map.get_name(hf_name, try_suffixes=(".weight", ".bias")) == gguf_name


def test_q4_k_m_policy_follows_llama_cpp():
    config = load_checkpoint(MODELS_DIR / "lfm2_350m_pattern_bf16").config
    import dataclasses

    config = dataclasses.replace(config, hidden_size=1024, ff_dim=4608, layer_types=("conv",) * 2 + ("full_attention",) * 14)
    shapes = {"embed_tokens.weight": (65536, 1024), "embedding_norm.weight": (1024,)}
    for i in range(16):
        shapes[f"layers.{i}.feed_forward.w2.weight"] = (1024, 4608)
        shapes[f"layers.{i}.feed_forward.w1.weight"] = (4608, 1024)
        shapes[f"layers.{i}.conv.conv.weight"] = (1024, 1, 3)
        if i >= 2:
            shapes[f"layers.{i}.self_attn.v_proj.weight"] = (512, 1024)
    types = tensor_types(config, shapes, scheme("q4_k_m"))
    assert types["embed_tokens.weight"] == "Q6_K"  # tied: it is the output tensor
    assert types["embedding_norm.weight"] == "F32" and types["layers.0.conv.conv.weight"] == "F32"
    more_bits = [i for i in range(16) if types[f"layers.{i}.feed_forward.w2.weight"] == "Q6_K"]
    assert more_bits == [0, 1, 4, 7, 10, 13, 14, 15]  # llama.cpp's use_more_bits(i, 16)
    assert {types[f"layers.{i}.feed_forward.w1.weight"] for i in range(16)} == {"Q4_K"}
    v_more = [i for i in range(2, 16) if types[f"layers.{i}.self_attn.v_proj.weight"] == "Q6_K"]
    assert v_more == [2 + i for i in range(14) if i < 1 or i >= 12 or (i - 1) % 3 == 2]
    assert tensor_types(config, shapes, scheme("q8_0"))["embed_tokens.weight"] == "Q8_0"
    assert tensor_types(config, shapes, scheme("q4_0"), head_type="Q8_0")["embed_tokens.weight"] == "Q8_0"


def test_unknown_scheme_is_a_value_error():
    with pytest.raises(ValueError, match="q4_k_m"):
        scheme("q3_k_xl")
    with pytest.raises(ValueError, match="quantization type"):
        lfmrt.Model.load(MODELS_DIR / "all_conv_bias_f32", quant="int3")


# --- lfmrt on its own files ----------------------------------------------------------------------


@pytest.mark.parametrize("name", golden_model_names())
def test_gguf_equals_the_hf_directory(name, gguf_dir, check_logits):
    golden = load_golden(name)
    hf = lfmrt.Model.load(golden.path)
    # The file in the checkpoint's own type holds the same bytes: the same logits, exactly.
    same = lfmrt.Model.load(gguf_dir / f"{name}-{SOURCE_SCHEME[golden.dtype]}.gguf")
    np.testing.assert_array_equal(same.logits(golden.prompts[2]), hf.logits(golden.prompts[2]))
    assert same.config.layer_types == hf.config.layer_types and same.config.ff_dim == hf.config.ff_dim
    # The f32 file holds the reference's exact weights: transformers' logits within tolerance.
    widened = lfmrt.Model.load(gguf_dir / f"{name}-f32.gguf")
    check_logits(widened.logits(golden.prompts[2]), golden.logits[2], golden.atol, f"{name} f32 GGUF vs golden")


@pytest.mark.parametrize("name", golden_model_names())
def test_quantize_on_load_equals_the_quantized_file(name, gguf_dir):
    golden = load_golden(name)
    for scheme_name in QUANTIZED:
        from_file = lfmrt.Model.load(gguf_dir / f"{name}-{scheme_name}.gguf").logits(golden.prompts[1])
        on_load = lfmrt.Model.load(golden.path, quant=scheme_name).logits(golden.prompts[1])
        np.testing.assert_array_equal(from_file, on_load, err_msg=f"{name} {scheme_name}")


# Tiny random-weight models are far more sensitive than real ones (llama.cpp measures the same
# KL on these files, see test_llama_cpp_quality_matches): the bounds only catch a broken path.
KL_BOUNDS = {"q8_0": 0.1, "q4_k_m": 0.1, "q4_0": 2.5}


@pytest.mark.parametrize("name", golden_model_names())
def test_quantized_kl_is_bounded(name, gguf_dir):
    tokens = text_tokens(120)
    reference = lfmrt.Model.load(gguf_dir / f"{name}-f32.gguf").logits(tokens)
    for scheme_name, bound in KL_BOUNDS.items():
        logits = lfmrt.Model.load(gguf_dir / f"{name}-{scheme_name}.gguf").logits(tokens)
        assert np.isfinite(logits).all()
        assert kl_divergence(reference, logits) < bound, scheme_name


def test_gguf_brings_tokenizer_template_and_specials(gguf_dir):
    golden = load_golden("gqa2_hd64_bf16_jinja")
    hf = lfmrt.Model.load(golden.path)
    model = lfmrt.Model.load(gguf_dir / "gqa2_hd64_bf16_jinja-q4_0.gguf")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    assert model.apply_chat_template(messages) == hf.apply_chat_template(messages)
    assert model.tokenize("Hello world") == hf.tokenize("Hello world")
    assert model.eos_token_ids == hf.eos_token_ids == [7]
    # 128-value rows: the tied head's Q6_K (256-value blocks) falls back to Q8_0.
    assert "dtype=F32/Q4_0/Q8_0" in repr(model)
    assert model.generate("Hello", max_tokens=5, temperature=0).tokens


def test_metadata_matches_llama_cpps_converter(tmp_path):
    """lfmrt's writer and llama.cpp's convert_hf_to_gguf.py write the same keys, values, tensor
    names, shapes and types (the converter needs torch, transformers and the llama.cpp tree)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    source = MODELS_DIR / "gqa2_hd64_bf16_jinja"
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    converter = Path(__file__).resolve().parents[1] / "bench" / "convert_to_gguf.py"
    result = subprocess.run(
        [sys.executable, str(converter), str(source), str(theirs), "--type", "f16"], capture_output=True, text=True
    )
    if result.returncode != 0 and "cannot find llama.cpp" in result.stderr + result.stdout:
        pytest.skip("llama.cpp's converter is not available")
    assert result.returncode == 0, result.stderr[-2000:]
    write_gguf(load_checkpoint(source), ours, "f16")

    def describe(path):
        reader = gguf.GGUFReader(path)
        fields = {
            k: (f.types, f.contents())
            for k, f in reader.fields.items()
            if not k.startswith("GGUF.") and k not in ("general.name", "general.basename", "general.size_label", "general.finetune")
        }
        tensors = {t.name: (t.tensor_type.name, t.shape.tolist()) for t in reader.tensors}
        return fields, tensors

    our_fields, our_tensors = describe(ours)
    their_fields, their_tensors = describe(theirs)
    assert our_tensors == their_tensors
    assert our_fields.keys() == their_fields.keys()
    for key, value in their_fields.items():
        assert our_fields[key] == value, key


# --- lfmrt's reader against the gguf package's ----------------------------------------------------

BENCH_GGUF = Path(__file__).resolve().parents[1] / "bench" / "models" / "lfm2-350m-random-f16.gguf"


def assert_reader_agrees(path: Path, compare_bytes: bool = True) -> None:
    """lfmrt's header walk and the checkpoint built from it say what ``gguf.GGUFReader`` says:
    every metadata key, its types and value (in file order), and every tensor's name, type,
    shape, place in the file and bytes."""
    reader = gguf.GGUFReader(path)
    expected_fields = [(k, f.types, f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.")]
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        header = _walk_header(str(path), buffer, len(buffer))
    assert [(k, header.types[k], v) for k, v in header.values.items()] == expected_fields
    assert [(t.name, t.dtype, list(t.dims), t.start, t.nbytes) for t in header.tensors] == [
        (t.name, t.tensor_type.name, t.shape.tolist(), t.data_offset, int(t.n_bytes)) for t in reader.tensors
    ]

    checkpoint = load_gguf_checkpoint(path)
    # The rebuilt tokenizer holds the vocabulary; its lists are not kept a second time.
    assert checkpoint.tokenizer is not None
    assert not set(TOKENIZER_ARRAYS) & set(checkpoint.metadata)
    assert list(checkpoint.metadata.items()) == [(k, v) for k, _, v in expected_fields if k not in TOKENIZER_ARRAYS]
    base = np.frombuffer(checkpoint.files[0], dtype=np.uint8).ctypes.data
    refs = {ref.name: ref for ref in checkpoint.tensors.values()}
    assert sorted(refs) == sorted(t.name for t in reader.tensors)
    for t in reader.tensors:
        ref = refs[t.name]
        assert ref.data.dtype == np.uint8 and not ref.data.flags.writeable
        assert ref.data.ctypes.data - base == t.data_offset and ref.data.nbytes == t.n_bytes  # a view, in place
        if compare_bytes:
            assert ref.data.tobytes() == t.data.tobytes(), t.name


@pytest.mark.parametrize(
    "name", ["lfm2_350m_pattern_bf16-q8_0", "gqa2_hd64_bf16_jinja-q4_k_m", "mixed_mha_hd64_f32_dialectA-f16"]
)
def test_reader_agrees_with_the_gguf_package(name, gguf_dir):
    assert_reader_agrees(gguf_dir / f"{name}.gguf")


@pytest.mark.skipif(not BENCH_GGUF.is_file(), reason="the benchmark model is not there")
def test_reader_agrees_with_the_gguf_package_on_the_benchmark_model():
    assert_reader_agrees(BENCH_GGUF, compare_bytes=False)


def test_reader_agrees_on_every_value_type(tmp_path):
    """Every scalar and array type, non-ASCII strings, a larger alignment and every tensor type
    lfmrt reads (the file is no model, so only the reader sees it)."""
    T = gguf.GGUFValueType
    path = tmp_path / "types.gguf"
    writer = gguf.GGUFWriter(path, "lfm2")
    writer.add_custom_alignment(64)
    scalars = {
        T.UINT8: 255, T.INT8: -128, T.UINT16: 65535, T.INT16: -32768, T.UINT32: 2**32 - 1, T.INT32: -(2**31),
        T.FLOAT32: 0.1, T.UINT64: 2**64 - 1, T.INT64: -(2**63), T.FLOAT64: 0.1, T.BOOL: True,
    }  # fmt: skip
    for kind, value in scalars.items():
        writer.add_key_value(f"test.scalar.{kind.name.lower()}", value, kind)
        items = [value, 0, value] if kind != T.BOOL else [True, False, True]
        writer.add_key_value(f"test.array.{kind.name.lower()}", items, T.ARRAY, sub_type=kind)
    writer.add_string("test.string", "naïve café 日本語 🦙")
    writer.add_string("test.string.empty", "")
    writer.add_array("test.array.string", ["", "a", "Ġthe", "日本", "🦙🦙", "x" * 1000])
    rng = np.random.default_rng(0)
    for ggml_type in ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K"):
        quant = gguf.GGMLQuantizationType[ggml_type]
        per_block, block_bytes = gguf.GGML_QUANT_SIZES[quant]
        raw = rng.integers(0, 256, size=(3, 256 // per_block * block_bytes), dtype=np.uint8)  # 3 rows of 256
        writer.add_tensor(f"t.{ggml_type}", raw, raw_dtype=quant)
    writer.add_tensor("t.vector", np.arange(7, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    reader = gguf.GGUFReader(path)
    expected = {k: (f.types, f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        header = _walk_header(str(path), buffer, len(buffer))
        tensors = [(t.name, t.dtype, list(t.dims), bytes(buffer[t.start : t.start + t.nbytes])) for t in header.tensors]
    assert {k: (header.types[k], v) for k, v in header.values.items()} == expected
    assert list(header.values) == list(expected)
    for key, (_, value) in expected.items():  # the same Python types too (bool is not int, float is not int)
        got = header.values[key]
        pairs = list(zip(got, value)) if isinstance(value, list) else [(got, value)]
        assert type(got) is type(value) and [type(a) for a, _ in pairs] == [type(b) for _, b in pairs], key
    assert tensors == [(t.name, t.tensor_type.name, t.shape.tolist(), t.data.tobytes()) for t in reader.tensors]
    assert [t.start for t in header.tensors] == [t.data_offset for t in reader.tensors]


# --- the tokenizer round trip ---------------------------------------------------------------------

CORPUS = [
    "Hello world",
    " leading space and  double  spaces\t\ttabs\n\n\nnewlines \r\n",
    "numbers 1234567 and 3.14159, 1e-9, 0xFF",
    "Ünïcödé: naïve café, 日本語のテキスト, 한국어, русский текст, emoji 🚀😶‍🌫️✅🦙",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\nclass A(B):\n\tpass\n",
    "<|startoftext|><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>hmm</think>ok<|im_end|>",
    "<|tool_call_start|>[get_weather(city='Paris')]<|tool_call_end|> <|pad|><|endoftext|>",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like tea? We'Ve a'lL",
    "   \n \n\n \t  \u00a0\u2003 mixed   whitespace runs        ",
    "------======= ''''''```````\"\"\"\"......!!!!!!??????",
]


def test_tokenizer_round_trips_through_gguf(gguf_dir):
    original = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    rebuilt = load_gguf_checkpoint(gguf_dir / "lfm2_350m_pattern_bf16-q8_0.gguf").tokenizer
    encodings = json.loads((TOKENIZER_DIR / "golden_encodings.json").read_text())["encodings"]
    texts = CORPUS + [e["text"] for e in encodings] + [Path(lfmrt.__file__).read_text()]
    for text in texts:
        for special in (True, False):
            expected = original.encode(text, add_special_tokens=special).ids
            assert rebuilt.encode(text, add_special_tokens=special).ids == expected, repr(text[:60])
        ids = original.encode(text).ids
        for skip in (True, False):
            assert rebuilt.decode(ids, skip_special_tokens=skip) == original.decode(ids, skip_special_tokens=skip)
    assert rebuilt.get_vocab_size() == original.get_vocab_size()


LLAMA_TOKENIZE = r"""
import json, sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
texts = json.loads(sys.stdin.read())
print(json.dumps([llm.tokenize(t.encode(), add_bos=True, special=True) for t in texts]))
"""


def test_llama_cpp_tokenizes_our_file_like_the_original(gguf_dir):
    pytest.importorskip("llama_cpp")
    original = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    result = subprocess.run(
        [sys.executable, "-c", LLAMA_TOKENIZE, str(gguf_dir / "lfm2_350m_pattern_bf16-f32.gguf")],
        input=json.dumps(CORPUS), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for text, ids in zip(CORPUS, json.loads(result.stdout)):
        assert ids == original.encode(text).ids, repr(text[:60])


# --- llama.cpp on lfmrt's files -------------------------------------------------------------------

LLAMA_LOGITS = r"""
import json, sys, numpy as np, llama_cpp
tokens = json.loads(sys.argv[3])
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, n_batch=512, n_threads=1, logits_all=True, verbose=False)
llm.eval(tokens)
np.save(sys.argv[2], np.array(llm.scores[: len(tokens)], dtype=np.float32))
"""


def llama_cpp_logits(path: Path, tokens: list, tmp_path: Path) -> np.ndarray:
    """llama.cpp's logits at every position, in a child process (llama.cpp aborts on some files)."""
    out = tmp_path / (path.stem + ".npy")
    result = subprocess.run(
        [sys.executable, "-c", LLAMA_LOGITS, str(path), str(out), json.dumps(tokens)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return np.load(out)


@pytest.mark.parametrize("name", LLAMA_CPP_MODELS)
def test_llama_cpp_agrees_with_lfmrt_on_our_files(name, gguf_dir, tmp_path):
    pytest.importorskip("llama_cpp")
    tokens = text_tokens()
    # llama.cpp rounds activations to f16 for f16 weights (lfmrt keeps them f32), hence the
    # looser bound there.
    for scheme_name, atol in (("f32", 2e-2), ("f16", 1e-1)):
        path = gguf_dir / f"{name}-{scheme_name}.gguf"
        theirs = llama_cpp_logits(path, tokens, tmp_path)
        ours = lfmrt.Model.load(path).logits(tokens)
        assert np.abs(theirs - ours).max() < atol, f"{scheme_name}: max |diff| {np.abs(theirs - ours).max():.3g}"
    reference = lfmrt.Model.load(gguf_dir / f"{name}-f32.gguf").logits(tokens)
    for scheme_name in QUANTIZED:
        path = gguf_dir / f"{name}-{scheme_name}.gguf"
        theirs = llama_cpp_logits(path, tokens, tmp_path)
        ours = lfmrt.Model.load(path).logits(tokens)
        # Random tiny models have many near-ties that 8-bit activation rounding (different in the
        # two runtimes, e.g. llama.cpp's f16 KV cache) flips: compare where llama.cpp's top-1
        # leads its runner-up by at least 0.5.
        top2 = np.sort(theirs, axis=-1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] >= 0.5
        agreement = float(np.mean(theirs.argmax(-1)[clear] == ours.argmax(-1)[clear]))
        assert clear.sum() >= 50 and agreement >= 0.99, f"{scheme_name}: top-1 agreement {agreement:.3f}"
        # lfmrt's quantized logits are no further from f32 than llama.cpp's (issue §5).
        ours_kl, theirs_kl = kl_divergence(reference, ours), kl_divergence(reference, theirs)
        assert ours_kl <= 1.2 * theirs_kl + 1e-3, f"{scheme_name}: KL {ours_kl:.3g} vs llama.cpp {theirs_kl:.3g}"


# --- the command line -----------------------------------------------------------------------------


def test_cli_quantize_writes_a_loadable_file(tmp_path, capsys):
    out = tmp_path / "model-q8.gguf"
    assert cli_main(["quantize", str(MODELS_DIR / "mixed_mha_hd64_f32_dialectA"), str(out), "--type", "q8_0"]) == 0
    assert "wrote" in capsys.readouterr().err
    requantized = tmp_path / "model-q4.gguf"
    assert cli_main(["quantize", str(out), str(requantized), "--type", "q4_0", "--quiet"]) == 0
    model = lfmrt.Model.load(requantized)
    # 240-value rows of w2 fit no 32-value block (F16); the untied head is Q6_K, falling back to Q8_0.
    assert {ref.dtype for ref in model._checkpoint.tensors.values()} == {"F32", "F16", "Q4_0", "Q8_0"}
    assert cli_main(["quantize", str(tmp_path / "nowhere"), str(tmp_path / "x.gguf"), "--type", "q8_0"]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "x.gguf").exists()


def test_cli_quantize_takes_demo_and_says_when_the_folder_is_missing(tmp_path, capsys):
    out = tmp_path / "demo-q8.gguf"
    assert cli_main(["quantize", "demo", str(out), "--type", "q8_0", "--quiet"]) == 0
    quantized = lfmrt.Model.load(out)
    assert quantized.config.vocab_size == lfmrt.Model.load("demo").config.vocab_size
    assert "Q8_0" in {ref.dtype for ref in quantized._checkpoint.tensors.values()}
    capsys.readouterr()
    missing = tmp_path / "no" / "such" / "folder" / "x.gguf"
    assert cli_main(["quantize", "demo", str(missing), "--type", "q8_0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lfmrt quantize: error:") and str(missing.parent) in err and "Traceback" not in err


def test_console_script_is_registered():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'lfmrt = "lfmrt.cli.main:main"' in text
    assert set(SCHEMES) == {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"}
