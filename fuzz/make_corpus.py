#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (fuzz/corpus/<harness>/) and the micro model (fuzz/micro/)
from the test fixtures. Re-run after a format change; commit what it writes.

    python fuzz/make_corpus.py

Needs torch, transformers and safetensors (the test reference extras), like
tests/fixtures/make_golden.py: the micro model is a transformers Lfm2ForCausalLM with the
fixtures' layer pattern shrunk to two blocks (one short conv, one attention) of width 8, saved
by transformers itself, so its tensor names, shapes and config spelling are the real ones.
Every seed is checked to load (or render, or parse) cleanly, so each one starts the fuzzer deep
inside the code it targets rather than at its first rejection.

What each corpus holds:
  safetensors/     the micro model's weights in F32, BF16 and F16 (fuzz_safetensors.py pairs
                   them with fuzz/micro/config.json)
  gguf/            the micro model as GGUF (f32, f16, bf16; no tokenizer), and a width-32 twin
                   with the fixtures' tokenizer and chat template in Q8_0 and Q4_0
  snapshot/        Session.save() of the micro model after appends, decodes, rewinds, forks and
                   checkpoints, each behind fuzz_snapshot.py's one-byte mode prefix
  chat_template/   {"template", "messages", "tools", "add_generation_prompt"} documents: the
                   fixtures' chat templates and the package's LFM2 template, each with the golden
                   conversations of tests/fixtures/tokenizer/golden_encodings.json
  tool_calls/      assistant answers with tool calls: the golden conversation's, and calls to its
                   tool written in each form parse_tool_calls accepts
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from transformers import Lfm2Config, Lfm2ForCausalLM

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent
sys.path.insert(0, str(FUZZ))

import harness  # noqa: E402  (fuzz/harness.py: the mode byte, the micro model's place)
import lfmrt  # noqa: E402
from lfmrt.text.chat_template import ChatTemplate, lfm2_default_template  # noqa: E402
from lfmrt.loaders import load_gguf_checkpoint, load_hf_checkpoint, read_safetensors  # noqa: E402
from lfmrt.quantization.gguf_writer import write_gguf  # noqa: E402
from lfmrt.text.tool_calls import format_tool_calls, parse_tool_calls  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
TOKENIZER_DIR = FIXTURES / "tokenizer"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")
CORPUS = FUZZ / "corpus"


def micro_model(hidden: int, vocab: int, seed: int) -> Lfm2ForCausalLM:
    """Two blocks (short conv, then attention with 2 query heads on 1 KV head), random weights."""
    config = Lfm2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        block_auto_adjust_ff_dim=False,
        full_attn_idxs=[1],
        conv_L_cache=3,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=7,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    return Lfm2ForCausalLM(config).eval()


def save(model: Lfm2ForCausalLM, directory: Path, dtype: torch.dtype) -> Path:
    model.to(dtype).save_pretrained(str(directory))
    model.to(torch.float32)
    return directory


def reset(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def write_safetensors_seeds(tmp: Path) -> None:
    model = micro_model(hidden=8, vocab=16, seed=0)
    micro = reset(harness.MICRO_MODEL)
    save(model, tmp / "f32", torch.float32)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tmp / "f32" / name, micro / name)
    out = reset(CORPUS / "safetensors")
    for label, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16), ("f16", torch.float16)):
        weights = save(model, tmp / label, dtype) / "model.safetensors"
        read_safetensors(weights)
        shutil.copy(weights, out / f"micro-{label}.safetensors")
    lfmrt.Model.load(micro, n_threads=1).session().append([1, 2, 3])


def write_gguf_seeds(tmp: Path) -> None:
    out = reset(CORPUS / "gguf")
    micro = load_hf_checkpoint(harness.MICRO_MODEL)
    for scheme in ("f32", "f16", "bf16"):
        write_gguf(micro, out / f"micro-{scheme}.gguf", scheme)
    # Width 32 so that the quantized block types (32 values) apply; the fixtures' tokenizer and
    # chat template ride along, so the seeds cover the tokenizer's and template's metadata too.
    with_tokenizer = save(micro_model(hidden=32, vocab=768, seed=1), tmp / "tok", torch.float32)
    for name in TOKENIZER_FILES:
        shutil.copy(TOKENIZER_DIR / name, with_tokenizer / name)
    checkpoint = load_hf_checkpoint(with_tokenizer)
    for scheme in ("q8_0", "q4_0"):
        write_gguf(checkpoint, out / f"micro32-tokenizer-{scheme}.gguf", scheme)
    for path in out.iterdir():
        lfmrt.Model(load_gguf_checkpoint(path), n_threads=1).session().append([1, 2])


def write_snapshot_seeds() -> None:
    out = reset(CORPUS / "snapshot")
    model = lfmrt.Model.load(harness.MICRO_MODEL, n_threads=1)

    def seed(name: str, session: lfmrt.Session) -> None:
        snapshot = session.save()
        model.load_session(snapshot)
        (out / f"{name}.bin").write_bytes(bytes([harness.FIX_SNAPSHOT_HEADER]) + snapshot)

    session = model.session(checkpoint_interval=4)
    seed("empty", session)
    session.append([1, 2, 3, 4, 5, 6])
    seed("appended", session)
    for token in (7, 8, 9):
        session.decode(token)
    seed("decoded", session)
    forked = session.fork()
    session.rewind(5)
    seed("rewound", session)
    forked.append([10, 11])
    forked.checkpoint()
    seed("forked-checkpointed", forked)


def golden_chats() -> list:
    with open(TOKENIZER_DIR / "golden_encodings.json", encoding="utf-8") as f:
        return json.load(f)["chat"]


def write_chat_template_seeds() -> None:
    out = reset(CORPUS / "chat_template")
    with open(TOKENIZER_DIR / "tokenizer_config.json", encoding="utf-8") as f:
        fixture_template = json.load(f)["chat_template"]
    templates = {
        "fixture": fixture_template,
        "jinja": (FIXTURES / "models" / "gqa2_hd64_bf16_jinja" / "chat_template.jinja").read_text(encoding="utf-8"),
        "lfm2": lfm2_default_template(),
    }
    for template_name, source in templates.items():
        for index, chat in enumerate(golden_chats()):
            document = {
                "template": source,
                "messages": chat["messages"],
                "tools": chat["tools"],
                "add_generation_prompt": chat["add_generation_prompt"],
            }
            ChatTemplate(source, "<|startoftext|>", "<|im_end|>").render(
                document["messages"], tools=document["tools"], add_generation_prompt=document["add_generation_prompt"]
            )
            text = json.dumps(document, ensure_ascii=False, indent=1)
            (out / f"{template_name}-{index}.json").write_text(text, encoding="utf-8")


def write_tool_call_seeds() -> None:
    out = reset(CORPUS / "tool_calls")
    chats = golden_chats()
    answers = [m["content"] for chat in chats for m in chat["messages"] if "<|tool_call_start|>" in m["content"]]
    tool = next(t for chat in chats if chat["tools"] for t in chat["tools"])
    calls = [
        {"function": {"name": tool["name"], "arguments": {"city": "Paris"}}},
        {"function": {"name": tool["name"], "arguments": {"city": "Zürich, \"CH\"", "days": 3}}},
        {"function": {"name": "other", "arguments": {"x": {"a": [1, 2.5, None, True]}}}},
    ]
    answers.append(format_tool_calls(calls))
    answers.append("Let me check.\n" + format_tool_calls(calls[:1]) + "\nDone.")
    json_form = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in calls]
    answers.append("<|tool_call_start|>" + json.dumps(json_form, ensure_ascii=False) + "<|tool_call_end|>")
    answers.append(format_tool_calls(calls[:1]) + format_tool_calls(calls[1:]))
    for index, answer in enumerate(answers):
        parsed = parse_tool_calls(answer)
        assert parsed.tool_calls and parsed.error is None, (answer, parsed)
        (out / f"answer-{index}.txt").write_text(answer, encoding="utf-8")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        write_safetensors_seeds(Path(tmp))
        write_gguf_seeds(Path(tmp))
    write_snapshot_seeds()
    write_chat_template_seeds()
    write_tool_call_seeds()
    for corpus in sorted(CORPUS.iterdir()):
        files = list(corpus.iterdir())
        print(f"{corpus.relative_to(REPO)}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
