#!/usr/bin/env python3
"""Make a random-weight model with exactly the shape of LiquidAI/LFM2-350M, for benchmarks.

    python bench/make_model.py bench/models/lfm2-350m-random

No real LFM2 weights are needed (or available offline): the numbers are random, but every
tensor shape, the layer pattern, the vocabulary size and the special tokens are those of
LFM2-350M, so the cost of a forward pass is the real one. The output is an ordinary Hugging
Face directory that both lfmrt and llama.cpp's `convert_hf_to_gguf.py` can read:

    config.json, model.safetensors    Lfm2ForCausalLM.save_pretrained(), bf16 weights
    tokenizer.json                    byte-level BPE, 65536 tokens, LFM2's special tokens
    tokenizer_config.json             bos/eos/pad and LFM2's chat template
    generation_config.json

The shape (LFM2-350M's config.json): hidden 1024, 16 blocks, attention at blocks
2, 5, 8, 10, 12, 14 (short conv elsewhere), 16 query heads / 8 KV heads (head dim 64),
block_ff_dim 6656 auto-adjusted to a SwiGLU width of 4608 (2/3 * 6656 rounded up to a
multiple of 256), conv_L_cache 3, vocab 65536, tied embeddings, rope_theta 1e6.

The tokenizer is trained with `tokenizers` on text that ships with Python (the pydoc topics
and standard-library sources), then padded with unreachable filler entries to exactly
65536 tokens. Its pre-tokenizer is LFM2's (Llama-3 split regex + byte level, merges
ignored for whole-word hits), which llama.cpp knows as pre-tokenizer "lfm2".
"""
from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import time
from pathlib import Path

# LFM2's special tokens and their ids (same list as tests/fixtures/make_golden.py).
SPECIAL_TOKENS = [
    "<|pad|>",                 # 0
    "<|startoftext|>",         # 1  bos
    "<|endoftext|>",           # 2
    "<|fim_pre|>",             # 3
    "<|fim_mid|>",             # 4
    "<|fim_suf|>",             # 5
    "<|im_start|>",            # 6
    "<|im_end|>",              # 7  eos (end of turn)
    "<|tool_list_start|>",     # 8
    "<|tool_list_end|>",       # 9
    "<|tool_call_start|>",     # 10
    "<|tool_call_end|>",       # 11
    "<|tool_response_start|>", # 12
    "<|tool_response_end|>",   # 13
]
PAD_ID, BOS_ID, EOS_ID = 0, 1, 7
VOCAB_SIZE = 65536

# LFM2's tokenizer.json splits with the Llama-3 regex before byte-level BPE.
SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# LFM2-350M's chat template (tokenizer_config.json "chat_template").
LFM2_CHAT_TEMPLATE = """{{- bos_token -}}
{%- set system_prompt = "" -%}
{%- set ns = namespace(system_prompt="") -%}
{%- if messages[0]["role"] == "system" -%}
\t{%- set ns.system_prompt = messages[0]["content"] -%}
\t{%- set messages = messages[1:] -%}
{%- endif -%}
{%- if tools -%}
\t{%- set ns.system_prompt = ns.system_prompt + ("\\n" if ns.system_prompt else "") + "List of tools: <|tool_list_start|>[" -%}
\t{%- for tool in tools -%}
\t\t{%- if tool is not string -%}
\t\t\t{%- set tool = tool | tojson -%}
\t\t{%- endif -%}
\t\t{%- set ns.system_prompt = ns.system_prompt + tool -%}
\t\t{%- if not loop.last -%}
\t\t\t{%- set ns.system_prompt = ns.system_prompt + ", " -%}
\t\t{%- endif -%}
\t{%- endfor -%}
\t{%- set ns.system_prompt = ns.system_prompt + "]<|tool_list_end|>" -%}
{%- endif -%}
{%- if ns.system_prompt -%}
\t{{- "<|im_start|>system\\n" + ns.system_prompt + "<|im_end|>\\n" -}}
{%- endif -%}
{%- for message in messages -%}
\t{{- "<|im_start|>" + message["role"] + "\\n" -}}
\t{%- set content = message["content"] -%}
\t{%- if content is not string -%}
\t\t{%- set content = content | tojson -%}
\t{%- endif -%}
\t{%- if message["role"] == "tool" -%}
\t\t{%- set content = "<|tool_response_start|>" + content + "<|tool_response_end|>" -%}
\t{%- endif -%}
\t{{- content + "<|im_end|>\\n" -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
\t{{- "<|im_start|>assistant\\n" -}}
{%- endif -%}
"""

# LFM2-350M's config.json, in the dialect transformers 5 writes.
MODEL_CONFIG = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=1024,
    intermediate_size=6656,  # block_ff_dim; the SwiGLU width is 4608 after auto-adjust
    num_hidden_layers=16,
    num_attention_heads=16,
    num_key_value_heads=8,
    max_position_embeddings=128000,
    initializer_range=0.02,
    norm_eps=1e-5,
    pad_token_id=PAD_ID,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    tie_word_embeddings=True,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    conv_bias=False,
    conv_L_cache=3,
    block_multiple_of=256,
    block_ffn_dim_multiplier=1.0,
    block_auto_adjust_ff_dim=True,
    full_attn_idxs=[2, 5, 8, 10, 12, 14],
)
EXPECTED_FF_DIM = 4608


def log(msg: str) -> None:
    print(f"[make_model] {msg}", flush=True)


def training_corpus(max_chars: int) -> list[str]:
    """Offline text: the pydoc topics, then standard-library sources up to max_chars."""
    import pydoc_data.topics as topics

    texts = [topics.topics[k] for k in sorted(topics.topics)]
    total = sum(map(len, texts))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        if total >= max_chars:
            break
        if "site-packages" in path.parts or "test" in path.parts or "tests" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        texts.append(text)
        total += len(text)
    return texts


def build_tokenizer(max_chars: int):
    """A byte-level BPE tokenizer with LFM2's special tokens, exactly VOCAB_SIZE tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    texts = training_corpus(max_chars)
    log(f"training BPE on {sum(map(len, texts)) / 1e6:.1f} M characters of offline text")
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    t0 = time.perf_counter()
    tok.train_from_iterator(texts, trainer)
    trained = tok.get_vocab_size()
    log(f"trained {trained} tokens in {time.perf_counter() - t0:.1f} s")

    # Pad to exactly VOCAB_SIZE with filler entries. "<filler_N>" can never be one
    # pre-token (the split regex cuts it at '<', '_' and the digits) and no merge builds
    # it, so neither tokenizers nor llama.cpp ever emits it.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    while next_id < VOCAB_SIZE:
        vocab[f"<filler_{next_id}>"] = next_id
        next_id += 1
    if trained < VOCAB_SIZE:
        log(f"padded the vocabulary with {VOCAB_SIZE - trained} filler tokens")
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A",
        pair="<|startoftext|> $A <|startoftext|> $B",
        special_tokens=[("<|startoftext|>", BOS_ID)],
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def tokenizer_config() -> dict:
    added = {
        str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                 "single_word": False, "special": True}
        for i, t in enumerate(SPECIAL_TOKENS)
    }
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        "bos_token": "<|startoftext|>",
        "chat_template": LFM2_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "legacy": False,
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "<|pad|>",
        "spaces_between_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "use_default_system_prompt": False,
    }


def build_model(out: Path, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, Lfm2Config, Lfm2ForCausalLM

    torch.manual_seed(seed)
    config = Lfm2Config(**MODEL_CONFIG)
    assert config.layer_types == [
        "full_attention" if i in MODEL_CONFIG["full_attn_idxs"] else "conv" for i in range(16)
    ], config.layer_types
    log("initialising Lfm2ForCausalLM (random weights, std 0.02)")
    t0 = time.perf_counter()
    model = Lfm2ForCausalLM(config).to(torch.bfloat16).eval()
    ff = model.model.layers[0].feed_forward.w1.out_features
    assert ff == EXPECTED_FF_DIM, f"feed-forward width {ff}, expected {EXPECTED_FF_DIM}"
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{n_params / 1e6:.1f} M parameters (tied embeddings), feed-forward {ff}, "
        f"built in {time.perf_counter() - t0:.1f} s")
    model.generation_config = GenerationConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID)
    model.save_pretrained(out, safe_serialization=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path, help="output directory (e.g. bench/models/lfm2-350m-random)")
    ap.add_argument("--seed", type=int, default=0, help="torch seed for the weights (default 0)")
    ap.add_argument("--corpus-chars", type=int, default=16_000_000,
                    help="characters of offline text to train the tokenizer on (default 16e6)")
    ap.add_argument("--force", action="store_true", help="overwrite a non-empty out_dir")
    args = ap.parse_args(argv)

    out: Path = args.out_dir
    if out.exists() and any(out.iterdir()) and not args.force:
        print(f"error: {out} exists and is not empty (use --force to overwrite)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    tok = build_tokenizer(args.corpus_chars)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2) + "\n", encoding="utf-8")

    build_model(out, args.seed)

    # Sanity: the HF tokenizer loads and encodes with bos first.
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(out))
    ids = hf_tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                     tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    assert ids[:2] == [BOS_ID, 6], ids
    assert len(hf_tok) == VOCAB_SIZE, len(hf_tok)

    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    log(f"wrote {out} ({size / 1e6:.0f} MB) in {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
