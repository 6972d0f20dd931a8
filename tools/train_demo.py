#!/usr/bin/env python3
"""Train lfmrt's bundled demo model: a tiny LFM2 that runs the whole stack offline.

    python tools/train_demo.py            # writes python/lfmrt/demo/model/ (about 10 CPU minutes)
    python tools/train_demo.py --steps 20 --out /tmp/demo   # a quick smoke run elsewhere

The model is the real LFM2 architecture (``transformers``' ``Lfm2ForCausalLM``: double-gated
short convolutions, grouped-query attention with q/k RMSNorm, SwiGLU) at a few million
parameters, trained from scratch on text every Python installation carries:

- the language reference topics in ``pydoc_data.topics`` (some topics are held out for the
  perplexity check and written to ``heldout.txt``),
- the docstrings of a fixed list of standard-library modules,
- chat-formatted conversations built from the same text (questions about a topic or a function,
  a few greetings, and tool calls), rendered with LFM2's own chat template so the model learns to
  answer inside ``<|im_start|>assistant ... <|im_end|>`` and to write Pythonic tool calls.

Its tokenizer is a byte-level BPE trained here with ``tokenizers``, with LFM2's special tokens at
LFM2's ids (``<|startoftext|>`` = 1, ``<|im_start|>`` = 6, ``<|im_end|>`` = 7, the tool tokens at
8-13) and ``<think>``/``</think>`` as the last two ids.

Everything is seeded and runs on one thread, so a rerun with the same Python (its pydoc_data and
docstrings are the corpus), torch, transformers and tokenizers versions gives the same weights.
Needs ``torch``, ``transformers`` and ``safetensors`` (``pip install "lfmrt[reference]"``).
"""
from __future__ import annotations

import os

# Before tokenizers / torch are imported: one thread each, for reproducible output.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import importlib
import inspect
import json
import math
import platform
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import Lfm2Config, Lfm2ForCausalLM

REPO = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO / "python" / "lfmrt" / "data" / "lfm2_chat_template.jinja"
DEFAULT_OUT = REPO / "python" / "lfmrt" / "demo" / "model"

# LFM2's special tokens at LFM2's ids (LiquidAI/LFM2-*, LFM2.5-* tokenizer.json "added_tokens").
SPECIAL_TOKENS = [
    "<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|fim_pre|>", "<|fim_mid|>", "<|fim_suf|>",
    "<|im_start|>", "<|im_end|>", "<|tool_list_start|>", "<|tool_list_end|>", "<|tool_call_start|>",
    "<|tool_call_end|>", "<|tool_response_start|>", "<|tool_response_end|>",
]
THINK_TOKENS = ["<think>", "</think>"]
VOCAB_SIZE = 4096
PAD_ID, BOS_ID, ENDOFTEXT_ID, EOS_ID = 0, 1, 2, 7
# LFM2's pre-tokenizer: the Llama-3 split regex, then byte-level BPE.
SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The architecture: LFM2-350M's pattern (convolutions with a few attention layers) scaled down.
N_LAYERS = 6
ATTENTION_LAYERS = (2, 4)
HIDDEN = 192
FF_DIM = 512
HEADS, KV_HEADS = 4, 2
MAX_CONTEXT = 4096

SEQ_LEN = 512
BATCH = 8
SEED = 1234
HELD_OUT_EVERY = 10  # every 10th pydoc topic (sorted by name, offset 3) is held out

# Standard-library modules whose docstrings join the corpus (a fixed list, for reproducibility).
DOC_MODULES = [
    "abc", "argparse", "array", "base64", "bisect", "calendar", "collections", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fnmatch",
    "fractions", "functools", "glob", "gzip", "hashlib", "heapq", "hmac", "html", "inspect",
    "io", "ipaddress", "itertools", "json", "logging", "math", "operator", "os", "os.path",
    "pathlib", "pickle", "pprint", "queue", "random", "re", "secrets", "shlex", "shutil",
    "socket", "statistics", "string", "struct", "subprocess", "sys", "tempfile", "textwrap",
    "threading", "time", "timeit", "typing", "unittest", "urllib.parse", "uuid", "warnings",
    "weakref", "zipfile", "zlib",
]

GREETINGS = [
    ("Hello!", "Hello! I am the lfmrt demo model, a tiny LFM2 trained on Python's documentation. "
               "Ask me about Python."),
    ("Hi", "Hi! I am a tiny demo model. I know a little about Python's documentation."),
    ("Who are you?", "I am the lfmrt demo model: a small LFM2 trained on Python's own documentation "
                     "to show the runtime working offline. I am not a useful assistant."),
    ("What can you do?", "I can produce text that looks like Python's documentation, answer in the "
                         "chat format and call tools. Do not trust my facts: I am only a demo."),
    ("Thanks!", "You are welcome!"),
    ("Tell me a story.", "I only know Python's documentation, so here is its story: everything is "
                         "an object, and every object has an identity, a type and a value."),
]

TOOLS = [
    {"name": "get_weather", "description": "Get the current weather for a city.",
     "parameters": {"type": "object", "properties": {
         "city": {"type": "string", "description": "The city name."},
         "days": {"type": "integer", "description": "How many days of forecast."}},
         "required": ["city"]}},
    {"name": "search_docs", "description": "Search Python's documentation.",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
    {"name": "add", "description": "Add two numbers.",
     "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"]}},
]
CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Boston", "Lima", "Oslo", "Cairo",
          "Sydney", "Toronto", "Seoul", "Delhi", "Nairobi", "Lisbon", "Vienna", "Prague"]


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


def pydoc_topics() -> Tuple[Dict[str, str], Dict[str, str]]:
    """The pydoc topics split into (training, held-out) by name."""
    import pydoc_data.topics as topics

    keys = sorted(topics.topics)
    train = {k: topics.topics[k] for i, k in enumerate(keys) if i % HELD_OUT_EVERY != 3}
    heldout = {k: topics.topics[k] for i, k in enumerate(keys) if i % HELD_OUT_EVERY == 3}
    return train, heldout


def first_paragraph(text: str, limit: int = 500) -> str:
    """The first prose paragraph of a docstring or topic (after a title underline), cut at
    ``limit`` characters on a sentence or word boundary."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    for p in paragraphs:
        if re.fullmatch(r"[^\n]*\n[*=\-~^]+", p) or re.fullmatch(r"[*=\-~^]+", p):
            continue  # a title with its underline
        p = " ".join(p.split())
        if len(p) <= limit:
            return p
        cut = p[:limit]
        end = cut.rfind(". ")
        return cut[: end + 1] if end > limit // 3 else cut[: cut.rfind(" ")] + " ..."
    return ""


def docstrings() -> List[Tuple[str, str, str]]:
    """(qualified name, signature, docstring) for each documented public member of DOC_MODULES,
    plus each module itself (signature "")."""
    out = []
    for module_name in DOC_MODULES:
        module = importlib.import_module(module_name)
        if module.__doc__:
            out.append((module_name, "", inspect.cleandoc(module.__doc__)))
        for name in sorted(getattr(module, "__all__", None) or dir(module)):
            if name.startswith("_"):
                continue
            member = getattr(module, name, None)
            if not (inspect.isfunction(member) or inspect.isclass(member) or inspect.isbuiltin(member)):
                continue
            doc = inspect.getdoc(member)
            if not doc or len(doc) < 40:
                continue
            try:
                # Defaults like <function copy2 at 0x7f...> differ run to run: keep them addressless.
                signature = re.sub(r" at 0x[0-9a-f]+", "", f"{module_name}.{name}{inspect.signature(member)}")
            except (TypeError, ValueError):
                signature = f"{module_name}.{name}(...)"
            out.append((f"{module_name}.{name}", signature, doc))
    return out


def topic_title(text: str) -> str:
    return text.strip().splitlines()[0].strip()


def conversations(rng: random.Random, train_topics: Dict[str, str], docs) -> List[dict]:
    """Chat samples: {"messages": [...], "tools": [...] or None}."""
    systems = [None, None, None, "You are a helpful assistant.", "Answer briefly.",
               "You are a helpful assistant trained on Python's documentation."]
    samples = []

    def conv(pairs, tools=None):
        messages = []
        system = rng.choice(systems)
        if system:
            messages.append({"role": "system", "content": system})
        for user, assistant in pairs:
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": assistant})
        samples.append({"messages": messages, "tools": tools})

    qa = []
    for key, text in train_topics.items():
        answer = first_paragraph(text)
        if answer:
            title = topic_title(text)
            for q in (f"What is {title}?", f"Explain {key} in Python.", f"Tell me about {title}."):
                qa.append((q, answer))
    for name, signature, doc in docs:
        answer = first_paragraph(doc, 400)
        if not answer:
            continue
        if signature:
            qa.append((f"What does {name} do?", f"{signature}\n\n{answer}"))
            qa.append((f"How do I use {name}?", f"Call {signature}. {answer}"))
        else:
            qa.append((f"What is the {name} module?", f"The {name} module: {answer}"))
    rng.shuffle(qa)
    for i in range(0, len(qa) - 1, 2):  # one- and two-turn conversations
        conv(qa[i : i + 2] if i % 6 == 0 else qa[i : i + 1])
        if i % 6 != 0:
            conv(qa[i + 1 : i + 2])
    for _ in range(20):
        for pair in GREETINGS:
            conv([pair])

    for _ in range(120):  # tool calls, with the tool's answer and a final reply
        tools = rng.sample(TOOLS, rng.randint(1, len(TOOLS)))
        names = [t["name"] for t in tools]
        kind = rng.choice(names)
        if kind == "get_weather":
            city = rng.choice(CITIES)
            days = rng.choice([None, 1, 2, 3, 5, 7])
            user = f"What's the weather in {city}?" if days is None else f"Weather in {city} for {days} days?"
            call = f'get_weather(city="{city}")' if days is None else f'get_weather(city="{city}", days={days})'
            result = json.dumps({"city": city, "temperature": rng.randint(-5, 35), "sky": rng.choice(["sunny", "cloudy", "rain"])})
            final = f"It is {json.loads(result)['temperature']} degrees and {json.loads(result)['sky']} in {city}."
        elif kind == "search_docs":
            key = rng.choice(sorted(train_topics))
            user = f"Search the docs for {key}."
            call = f'search_docs(query="{key}")'
            result = json.dumps({"title": topic_title(train_topics[key])})
            final = f"I found: {topic_title(train_topics[key])}."
        else:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            user = f"What is {a} plus {b}?"
            call = f"add(a={a}, b={b})"
            result = str(a + b)
            final = f"{a} plus {b} is {a + b}."
        messages = [{"role": "user", "content": user},
                    {"role": "assistant", "content": f"<|tool_call_start|>[{call}]<|tool_call_end|>"},
                    {"role": "tool", "content": result},
                    {"role": "assistant", "content": final}]
        samples.append({"messages": messages, "tools": tools})
    rng.shuffle(samples)
    return samples


def render_chat(template: str, sample: dict) -> str:
    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda v: json.dumps(v, ensure_ascii=False)
    return env.from_string(template).render(
        messages=sample["messages"], tools=sample["tools"], bos_token="<|startoftext|>",
        add_generation_prompt=False)


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def train_tokenizer(texts: List[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(THINK_TOKENS), min_frequency=2, show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in THINK_TOKENS])
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A", pair="<|startoftext|> $A <|startoftext|> $B",
        special_tokens=[("<|startoftext|>", BOS_ID)],
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def tokenizer_config(template: str) -> dict:
    decoder = {}
    ids = list(range(len(SPECIAL_TOKENS))) + [VOCAB_SIZE - 2, VOCAB_SIZE - 1]
    for i, t in zip(ids, SPECIAL_TOKENS + THINK_TOKENS):
        decoder[str(i)] = {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True}
    return {
        "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": decoder,
        "bos_token": "<|startoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|pad|>",
        "clean_up_tokenization_spaces": False, "legacy": False,
        "model_max_length": MAX_CONTEXT, "spaces_between_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": template,
    }


# --------------------------------------------------------------------------------------------
# Model and training
# --------------------------------------------------------------------------------------------


def build_model(hidden: int, ff_dim: int) -> Lfm2ForCausalLM:
    config = Lfm2Config(
        vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=ff_dim, num_hidden_layers=N_LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
        layer_types=["full_attention" if i in ATTENTION_LAYERS else "conv" for i in range(N_LAYERS)],
        block_auto_adjust_ff_dim=False, max_position_embeddings=MAX_CONTEXT, conv_L_cache=3,
        conv_bias=False, norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
    )
    return Lfm2ForCausalLM(config)


def token_stream(tok: Tokenizer, documents: List[str], chats: List[str], rng: random.Random) -> torch.Tensor:
    """All documents (bos text endoftext) and rendered chats (they start with bos), shuffled
    together and concatenated into one stream of token ids."""
    pieces = [tok.encode(d, add_special_tokens=True).ids + [ENDOFTEXT_ID] for d in documents]
    pieces += [tok.encode(c, add_special_tokens=False).ids for c in chats]
    rng.shuffle(pieces)
    return torch.tensor([t for p in pieces for t in p], dtype=torch.long)


def heldout_windows(tok: Tokenizer, text: str, window: int) -> List[List[int]]:
    """The evaluation windows (mirrors lfmrt.demo.perplexity): bos + up to window-1 tokens."""
    ids = tok.encode(text, add_special_tokens=False).ids
    return [[BOS_ID] + ids[i : i + window - 1] for i in range(0, len(ids), window - 1)]


@torch.no_grad()
def perplexity(model: Lfm2ForCausalLM, windows: List[List[int]]) -> float:
    nll, count = 0.0, 0
    for w in windows:
        if len(w) < 2:
            continue
        logits = model(torch.tensor([w]), use_cache=False).logits[0].float()
        nll += float(torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(w[1:]), reduction="sum"))
        count += len(w) - 1
    return math.exp(nll / count)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--hidden", type=int, default=HIDDEN,
                    help=f"hidden size (default {HIDDEN}; a multiple of 256 makes every matrix K-quantizable)")
    ap.add_argument("--ff-dim", type=int, default=FF_DIM, help=f"SwiGLU width (default {FF_DIM})")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    template = TEMPLATE_PATH.read_text(encoding="utf-8")

    train_topics, heldout = pydoc_topics()
    docs = docstrings()
    documents = list(train_topics.values()) + [f"{sig or name}\n\n{doc}" for name, sig, doc in docs]
    chats = [render_chat(template, s) for s in conversations(rng, train_topics, docs)]
    heldout_text = "\n\n".join(heldout.values())

    tok = train_tokenizer(documents + chats)
    stream = token_stream(tok, documents, chats, rng)
    n_chunks = len(stream) // SEQ_LEN
    chunks = stream[: n_chunks * SEQ_LEN].view(n_chunks, SEQ_LEN)
    print(f"corpus: {len(documents)} documents, {len(chats)} chats, {len(stream)} tokens, "
          f"{n_chunks} chunks of {SEQ_LEN}; {args.steps} steps = "
          f"{args.steps * BATCH * SEQ_LEN / len(stream):.2f} epochs", flush=True)

    model = build_model(args.hidden, args.ff_dim)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    generator = torch.Generator().manual_seed(SEED)
    order = torch.randperm(n_chunks, generator=generator)
    start = time.time()
    model.train()
    for step in range(args.steps):
        idx = [int(order[(step * BATCH + b) % n_chunks]) for b in range(BATCH)]
        if (step * BATCH) // n_chunks != ((step + 1) * BATCH - 1) // n_chunks:
            order = torch.randperm(n_chunks, generator=generator)  # a new epoch
        batch = chunks[idx]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  lr {lr_at(step):.2e}  {time.time() - start:.0f}s", flush=True)
    train_seconds = time.time() - start
    model.eval()

    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.to(torch.bfloat16).save_pretrained(str(out))
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(template), indent=2) + "\n", encoding="utf-8")
    # Greedy by default: a model this small answers best with its most likely tokens.
    generation = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID,
                  "do_sample": False, "repetition_penalty": 1.05}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    (out / "heldout.txt").write_text(heldout_text, encoding="utf-8")

    # The reference perplexity: the stored bf16 weights, computed in float32.
    stored = Lfm2ForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    windows = heldout_windows(tok, heldout_text, SEQ_LEN)
    ppl = perplexity(stored, windows)
    report = {
        "parameters": n_params,
        "dtype": "bfloat16",
        "train_steps": args.steps,
        "train_tokens": args.steps * BATCH * SEQ_LEN,
        "corpus_tokens": len(stream),
        "train_seconds": round(train_seconds, 1),
        "final_train_loss": round(float(loss.item()), 4),
        "heldout_topics": sorted(heldout),
        "heldout_tokens": sum(len(w) - 1 for w in windows),
        "heldout_window": SEQ_LEN,
        "heldout_perplexity_f32": round(ppl, 4),
        "versions": {"python": platform.python_version(), "torch": torch.__version__.split("+")[0],
                     "transformers": transformers.__version__,
                     "tokenizers": __import__("tokenizers").__version__},
    }
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
