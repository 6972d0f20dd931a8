"""The bundled demo model: a real LFM2 with LFM2's special tokens and template, shipped inside
the package, whose held-out perplexity lfmrt reproduces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lfmrt
from lfmrt import demo
from lfmrt.text.chat_template import lfm2_default_template

LFM2_SPECIAL_IDS = {
    "<|pad|>": 0, "<|startoftext|>": 1, "<|endoftext|>": 2, "<|im_start|>": 6, "<|im_end|>": 7,
    "<|tool_list_start|>": 8, "<|tool_list_end|>": 9, "<|tool_call_start|>": 10, "<|tool_call_end|>": 11,
    "<|tool_response_start|>": 12, "<|tool_response_end|>": 13,
}


@pytest.fixture(scope="module")
def model():
    return lfmrt.Model.load("demo")


def test_the_demo_ships_inside_the_package():
    path = Path(lfmrt.demo_model_path())
    assert path.parent == Path(lfmrt.__file__).resolve().parent / "demo"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "heldout.txt", "training.json"):
        assert (path / name).is_file(), name
    assert (path.parent / "MODEL_CARD.md").is_file()
    total = sum(f.stat().st_size for f in path.iterdir())
    assert total < 10 * 2**20, f"the demo model takes {total} bytes"


def test_it_is_a_small_hybrid_lfm2_with_lfm2_tokens_and_template(model):
    config = model.config
    assert set(config.layer_types) == {"conv", "full_attention"}
    assert config.n_kv_heads < config.n_heads  # grouped-query attention
    report = demo.training_report()
    assert 1_000_000 < report["parameters"] < 10_000_000
    for token, token_id in LFM2_SPECIAL_IDS.items():
        assert model.tokenizer.token_to_id(token) == token_id, token
    assert model.chat_template.source == lfm2_default_template()
    assert model.eos_token_ids == [7]


def test_lfmrt_reproduces_the_reference_perplexity(model):
    """transformers computed the held-out perplexity of the stored weights in float32 when the
    model was trained; lfmrt's float32 path must agree."""
    expected = demo.training_report()["heldout_perplexity_f32"]
    assert demo.perplexity(model) == pytest.approx(expected, rel=2e-3)


def test_perplexity_input_checks(model):
    with pytest.raises(ValueError):
        demo.perplexity(model, "", window=8)
    with pytest.raises(ValueError):
        demo.perplexity(model, "text", window=1)
    assert demo.perplexity(model, "The for statement is used to iterate", window=4) > 1.0


def test_chat_works_mechanically(model):
    reply = model.chat([{"role": "user", "content": "Hello!"}], temperature=0, max_tokens=200)
    assert reply.finish_reason == "stop"  # the model ends its turn with <|im_end|>
    assert reply.text.strip()
    assert "<|im_start|>" not in reply.text


def test_training_report_is_complete():
    report = demo.training_report()
    assert json.dumps(report)
    for key in ("train_seconds", "train_tokens", "heldout_tokens", "heldout_window", "versions"):
        assert key in report
    assert report["heldout_window"] == demo.PERPLEXITY_WINDOW
