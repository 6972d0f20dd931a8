#!/usr/bin/env python3
"""Multi-turn chat latency (prefix reuse) against llama.cpp, and batched-decode throughput.

    python bench/bench_sessions.py --gguf bench/models/lfm2-350m-random-f16.gguf \\
        --hf bench/models/lfm2-350m-random --threads 2 --repeats 2
    python bench/bench_sessions.py --quick          # a fast smoke run of both parts

Part 1, ``chat``: a --turns-turn conversation, about --user-tokens new user tokens a turn, on
the *same GGUF file* for lfmrt and llama-cpp-python, the same token ids for both (tokenized
once, here, with the tokenizer lfmrt reads from that GGUF). Two scenarios:

  (a) append   each prompt is the previous prompt + the answer + the next user turn. Each
               runtime answers greedily (--answer-tokens tokens, eos ignored) and its own answer
               goes into its own next prompt. lfmrt: ``Model.generate(ids, session=s)`` (what
               ``Model.chat(messages, session=s)`` runs after rendering the template);
               llama.cpp: ``Llama.generate(ids)`` with the full prompt each turn (what
               ``create_completion`` / ``create_chat_completion`` run after tokenizing), whose
               own prefix-match logic decides what to re-run.
  (b) diverge  each answer is a fixed sequence ``<think> reasoning </think> answer`` (about
               --think-tokens + --answer-tokens tokens) replayed one token at a time as if
               generated (lfmrt ``Session.decode(t)``, llama.cpp ``Llama.eval([t])``); the
               next prompt renders that answer *without* its think part (as LFM2.5 templates
               do), so it diverges from what the runtime holds in the middle of the last turn.
               lfmrt: ``Session.prefill(prompt)`` (longest common prefix, rewind to the nearest
               conv checkpoint); llama.cpp: ``Llama.generate(prompt)`` up to the first token.

Per turn we time the prompt (until the first token can be sampled: "TTFT") and the whole turn
(prompt + answer) and count the tokens each runtime actually ran through the model for the
prompt. At the last turn, each runtime's logits are compared with a fresh run on the same token
sequence (max-abs difference). With --llama-rs-seq N (N > 0) a third runtime, ``llama.cpp+rs``,
is llama-cpp-python with llama.cpp's experimental recurrent-state rollback turned on
(``llama_context_params.n_rs_seq``, which ``Llama()`` does not expose; set here by patching the
default context parameters): what an expert could get today. It keeps conv states for the last
N positions only (and N above ~16 overflows LFM2's graph with n_batch 512 in the vendored
llama.cpp), so it can undo an append of a few tokens, not a ~50-token think + answer.

Part 2, ``batch``: aggregate decode tok/s of ``lfmrt.Scheduler`` (the engine behind
``Model.generate_batch``) at --batch-sizes concurrent sequences, each a --batch-prompt-token
prompt and --batch-gen greedy tokens (eos ignored), for each of --batch-models (the bf16 HF
directory, and Q8_0 / Q4_0: a GGUF file if --q8-gguf/--q4-gguf give one, else quantized on load).
"decode tok/s" counts the steps after the first (the first step prefills every prompt: the
scheduler's prefill_chunk is set to hold them all);
"e2e tok/s" is all generated tokens over the whole run, prefill included.

Every measurement is a fresh subprocess (this script with --child), so runtimes never share the
CPU; repeats are interleaved (lfmrt, llama.cpp, llama.cpp+rs, lfmrt, ...) and tables show
medians. Figures are noisy on a shared 2-core machine: trust ratios from one run, not absolute
numbers across runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_GGUF = HERE / "models" / "lfm2-350m-random-f16.gguf"
DEFAULT_HF = HERE / "models" / "lfm2-350m-random"
CHAT_RUNTIMES = ("lfmrt", "llama.cpp", "llama.cpp+rs")
SCENARIOS = ("append", "diverge")
LLAMA_N_CTX = 8192


# --------------------------------------------------------------------------------------------
# The conversation: token ids made once in the parent, shared by every child.
# --------------------------------------------------------------------------------------------

def corpus_texts(tokenizer, n_pieces: int, n_tokens: int, skip: int = 0) -> list[str]:
    """n_pieces texts of about n_tokens tokens each, cut from Python's pydoc topics."""
    import pydoc_data.topics as topics

    ids: list[int] = []
    need = (n_pieces + skip) * n_tokens
    for key in sorted(topics.topics):
        ids += tokenizer.encode(topics.topics[key], add_special_tokens=False).ids
        if len(ids) >= need:
            break
    ids = ids[skip * n_tokens:]
    texts = []
    for i in range(n_pieces):
        text = tokenizer.decode(ids[i * n_tokens:(i + 1) * n_tokens]).strip()
        texts.append(" ".join(text.split()))  # no stray whitespace at the cut points
    return texts


def build_conversation(gguf: Path, turns: int, user_tokens: int, answer_tokens: int, think_tokens: int) -> dict:
    """Token ids for both scenarios.

    Returns ``first`` (turn 1's prompt), ``suffix[k]`` (what follows the answer of turn k-1 in
    turn k's prompt: end of that answer, the user turn, the generation prompt), and for the
    diverge scenario ``generated[k]`` (think + answer, replayed as if generated) and
    ``rendered[k]`` (the answer as the next prompt renders it, without the think part).
    Checked against the chat template rendered the usual way.
    """
    from lfmrt.text.chat_template import ChatTemplate
    from lfmrt.loaders import load_checkpoint

    ckpt = load_checkpoint(gguf)
    tok = ckpt.tokenizer
    enc = lambda text: tok.encode(text, add_special_tokens=False).ids  # noqa: E731
    users = corpus_texts(tok, turns, user_tokens)
    answers = corpus_texts(tok, turns, answer_tokens, skip=turns * user_tokens // answer_tokens + 1)
    thoughts = corpus_texts(tok, turns, think_tokens, skip=(turns * (user_tokens + answer_tokens)) // think_tokens + 2)

    bos = enc(ckpt.special_tokens.get("bos_token", "<|startoftext|>"))
    first = bos + enc(f"<|im_start|>user\n{users[0]}<|im_end|>\n<|im_start|>assistant\n")
    suffix = [[]] + [enc(f"<|im_end|>\n<|im_start|>user\n{u}<|im_end|>\n<|im_start|>assistant\n") for u in users[1:]]
    rendered = [enc(a) for a in answers]
    generated = [enc(f"<think>\n{t}\n</think>\n\n{a}") for t, a in zip(thoughts, answers)]

    # The diverge scenario's last prompt, assembled from pieces, must be exactly what the chat
    # template renders for the same messages (answers without their think part).
    prompt = list(first)
    messages = [{"role": "user", "content": users[0]}]
    for k in range(1, turns):
        prompt += rendered[k - 1] + suffix[k]
        messages += [{"role": "assistant", "content": answers[k - 1]}, {"role": "user", "content": users[k]}]
    template = ChatTemplate(ckpt.chat_template, ckpt.special_tokens.get("bos_token", ""),
                            ckpt.special_tokens.get("eos_token", ""))
    via_template = enc(template.render(messages, add_generation_prompt=True))
    return dict(first=first, suffix=suffix, rendered=rendered, generated=generated,
                template_matches=via_template == prompt, last_prompt_tokens=len(prompt))


# --------------------------------------------------------------------------------------------
# Chat children: one runtime, one scenario, all turns; one RESULT line of JSON on stdout.
# --------------------------------------------------------------------------------------------

def chat_lfmrt(args: argparse.Namespace, conv: dict) -> dict:
    import numpy as np
    import lfmrt

    model = lfmrt.Model.load(str(args.gguf), n_threads=args.threads)
    model.generate(conv["first"][:32], max_tokens=4, temperature=0, ignore_eos=True)  # page weights in
    session = model.session()
    turns, prompt, answer = [], list(conv["first"]), []
    for k in range(args.turns):
        if k > 0:
            prompt = prompt + answer + conv["suffix"][k]
        if args.scenario == "append":
            t0 = time.perf_counter()
            c = model.generate(prompt, session=session, max_tokens=args.answer_tokens, temperature=0, ignore_eos=True)
            total = time.perf_counter() - t0
            ttft, ran, answer = c.timings.prefill_seconds, c.timings.prefilled_tokens, list(c.tokens)
            if k == args.turns - 1:
                held, got = session.tokens, np.array(session.last_logits)
        else:
            t0 = time.perf_counter()
            ran = session.prefill(prompt)
            int(np.argmax(session.last_logits))  # what sampling the first token would look at
            ttft = time.perf_counter() - t0
            if k == args.turns - 1:
                tc = time.perf_counter()
                held, got = list(prompt), np.array(session.last_logits)
                t0 += time.perf_counter() - tc  # the copy is not part of the turn
            for t in conv["generated"][k]:
                session.decode(t)
            session.checkpoint()  # the end of a turn, as Model.chat does
            total = time.perf_counter() - t0
            answer = conv["rendered"][k]
        turns.append(dict(prompt_tokens=len(prompt), ran=ran, ttft_s=ttft, total_s=total))
    fresh = model.session().append(held)
    return dict(turns=turns, max_abs_vs_fresh=float(np.max(np.abs(fresh - got))), last_top1=int(np.argmax(got)),
                n_checkpoints=session.n_checkpoints, memory_mb=session.memory_bytes / 2**20)


def chat_llama_cpp(args: argparse.Namespace, conv: dict) -> dict:
    import numpy as np
    import llama_cpp
    import llama_cpp.llama_cpp as capi

    if args.child == "llama.cpp+rs":  # turn on llama.cpp's experimental recurrent-state rollback
        default_params = capi.llama_context_default_params

        def with_rollback():
            params = default_params()
            params.n_rs_seq = args.llama_rs_seq
            return params

        capi.llama_context_default_params = with_rollback
    llm = llama_cpp.Llama(model_path=str(args.gguf), n_ctx=LLAMA_N_CTX, n_threads=args.threads,
                          n_threads_batch=args.threads, n_batch=512, verbose=False)
    n_vocab = llm.n_vocab()
    rs_seq = capi.llama_n_rs_seq(llm.ctx)

    ran = [0]
    plain_eval = llm.eval

    def counting_eval(tokens):  # Llama.generate calls self.eval: count what it really runs
        ran[0] += len(tokens)
        return plain_eval(tokens)

    llm.eval = counting_eval

    def last_logits():
        return np.ctypeslib.as_array(capi.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,)).copy()

    warm = llm.generate(conv["first"][:32], temp=0.0)
    for _ in range(4):
        next(warm)
    warm.close()
    llm.reset()

    turns, prompt, answer, got = [], list(conv["first"]), [], None
    for k in range(args.turns):
        if k > 0:
            prompt = prompt + answer + conv["suffix"][k]
        ran[0] = 0
        t0 = time.perf_counter()
        gen = llm.generate(prompt, temp=0.0)
        first = next(gen)  # prompt processed (with generate's prefix-match logic), one token sampled
        ttft = time.perf_counter() - t0
        n_ran = ran[0]
        if k == args.turns - 1:
            tc = time.perf_counter()
            got = last_logits()
            t0 += time.perf_counter() - tc  # the copy is not part of the turn
        if args.scenario == "append":
            answer = [first]
            for tok in gen:
                answer.append(tok)
                if len(answer) == args.answer_tokens:
                    break
            gen.close()
        else:
            gen.close()
            for t in conv["generated"][k]:
                llm.eval([t])
            answer = conv["rendered"][k]
        total = time.perf_counter() - t0
        turns.append(dict(prompt_tokens=len(prompt), ran=n_ran, ttft_s=ttft, total_s=total))
    # Correctness of what llama.cpp served at the last turn: the same prompt from scratch.
    llm.reset()
    plain_eval(prompt)
    fresh = last_logits()
    return dict(turns=turns, max_abs_vs_fresh=float(np.max(np.abs(fresh - got))), last_top1=int(np.argmax(got)),
                n_rs_seq=int(rs_seq))


# --------------------------------------------------------------------------------------------
# Batch child: one model, every batch size.
# --------------------------------------------------------------------------------------------

def batch_lfmrt(args: argparse.Namespace) -> dict:
    import lfmrt

    path, quant = args.batch_model.split("::") if "::" in args.batch_model else (args.batch_model, None)
    model = lfmrt.Model.load(path, n_threads=args.threads, quant=quant or None)
    ids = json.loads(Path(args.data_file).read_text())["batch_ids"]
    n = args.batch_prompt
    prompts = [[ids[0]] + ids[1 + i * n: (i + 1) * n] for i in range(max(args.batch_sizes))]
    model.generate_batch(prompts[:2], max_tokens=4, temperature=0, ignore_eos=True)  # page weights in
    results = {}
    for size in args.batch_sizes:
        # Every prompt in the first step, so that the later steps are decode alone.
        scheduler = lfmrt.Scheduler(model, max_batch=size, prefill_chunk=sum(map(len, prompts[:size])))
        requests = [scheduler.submit(p, max_tokens=args.batch_gen, temperature=0, ignore_eos=True)
                    for p in prompts[:size]]
        t0 = time.perf_counter()
        scheduler.step()  # admits (prefills) every request, samples and runs one token each
        t1 = time.perf_counter()
        while scheduler.active:
            scheduler.step()
        t2 = time.perf_counter()
        assert all(len(r.completion.tokens) == args.batch_gen for r in requests)
        results[str(size)] = dict(decode_tok_s=size * (args.batch_gen - 1) / (t2 - t1),
                                  e2e_tok_s=size * args.batch_gen / (t2 - t0), prefill_s=t1 - t0)
    return dict(sizes=results, model=repr(model))


def run_child(args: argparse.Namespace) -> int:
    conv = json.loads(Path(args.data_file).read_text())
    if args.child == "batch":
        result = batch_lfmrt(args)
    elif args.child == "lfmrt":
        result = chat_lfmrt(args, conv)
    else:
        result = chat_llama_cpp(args, conv)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# Parent.
# --------------------------------------------------------------------------------------------

def spawn(args: argparse.Namespace, child: str, extra: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", child, "--data-file", str(args.data_file),
           "--gguf", str(args.gguf), "--threads", str(args.threads), "--turns", str(args.turns),
           "--answer-tokens", str(args.answer_tokens), "--llama-rs-seq", str(args.llama_rs_seq),
           "--batch-sizes", ",".join(map(str, args.batch_sizes)), "--batch-prompt", str(args.batch_prompt),
           "--batch-gen", str(args.batch_gen)] + extra
    load = os.getloadavg()[0]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            res["loadavg_before"] = load
            return res
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-20:])
    raise RuntimeError(f"{child} {' '.join(extra)} failed (exit {r.returncode}):\n{tail}")


def med(values) -> float:
    return statistics.median(values)


def report_turns(turns: list[int], n_turns: int) -> list[int]:
    return sorted({t for t in turns if 1 <= t <= n_turns} | {n_turns})


def print_chat(results: dict, args: argparse.Namespace, conv: dict) -> dict:
    """Per-scenario table of TTFT and whole-turn latency at selected turns; returns the ratios."""
    shown = report_turns([1, 5, 10, 20], args.turns)
    ratios = {}
    for scenario in SCENARIOS:
        runs = results.get(scenario)
        if not runs:
            continue
        names = [rt for rt in args.runtimes if runs.get(rt)]
        print()
        print(f"({'a' if scenario == 'append' else 'b'}) {scenario}: {args.turns} turns, ~{args.user_tokens} user tokens/turn, "
              + (f"{args.answer_tokens}-token greedy answers" if scenario == "append" else
                 f"answers = <think> ~{args.think_tokens} tokens </think> + ~{args.answer_tokens} tokens, replayed")
              + f"; {args.threads} threads; median of {len(runs[names[0]])}")
        header = f"{'turn':>5}{'prompt':>8}" + "".join(
            f"{n + ' ran':>16}{n + ' TTFT s':>19}{n + ' turn s':>19}" for n in names)
        print(header)
        print("-" * len(header))
        for t in shown:
            i = t - 1
            line = f"{t:5d}{runs[names[0]][0]['turns'][i]['prompt_tokens']:8d}"
            for n in names:
                line += f"{med(r['turns'][i]['ran'] for r in runs[n]):16.0f}"
                line += f"{med(r['turns'][i]['ttft_s'] for r in runs[n]):19.3f}"
                line += f"{med(r['turns'][i]['total_s'] for r in runs[n]):19.3f}"
            print(line)
        last = args.turns - 1
        for n in names:
            if n == "lfmrt":
                continue
            ttft = med(r["turns"][last]["ttft_s"] for r in runs[n]) / med(r["turns"][last]["ttft_s"] for r in runs["lfmrt"])
            total = med(r["turns"][last]["total_s"] for r in runs[n]) / med(r["turns"][last]["total_s"] for r in runs["lfmrt"])
            ratios[f"{scenario}/{n}"] = dict(ttft=ttft, total=total)
            print(f"  turn {args.turns}: {n} / lfmrt latency = {ttft:.1f}x (TTFT), {total:.1f}x (whole turn)"
                  f"   [target: >= 5x]")
        for n in names:
            diffs = ", ".join(f"{r['max_abs_vs_fresh']:.2e}" for r in runs[n])
            extra = f"; {runs[n][0]['n_checkpoints']} checkpoints, {runs[n][0]['memory_mb']:.0f} MiB state" if n == "lfmrt" else ""
            extra += f"; n_rs_seq={runs[n][0]['n_rs_seq']}" if "n_rs_seq" in runs[n][0] else ""
            total_ran = med(sum(t["ran"] for t in r["turns"]) for r in runs[n])
            print(f"  {n}: turn-{args.turns} logits vs a fresh run on the same tokens, max-abs diff {diffs}; "
                  f"{total_ran:.0f} prompt tokens run over all turns{extra}")
        if "lfmrt" in names:
            tops = {n: runs[n][0]["last_top1"] for n in names}
            print(f"  turn-{args.turns} top-1 token per runtime (informational): {tops}")
    if "diverge" in results:
        print(f"  (diverge prompts assembled from pieces {'==' if conv['template_matches'] else '!='} "
              f"the chat template's rendering; last prompt {conv['last_prompt_tokens']} tokens)")
    return ratios


def print_batch(results: dict, args: argparse.Namespace) -> dict:
    ratios = {}
    print()
    print(f"batched decode (lfmrt.Scheduler = Model.generate_batch): {args.batch_prompt}-token prompts, "
          f"{args.batch_gen} greedy tokens each, ignore_eos, {args.threads} threads, median of {args.repeats}")
    header = f"{'model':10}{'seqs':>6}{'decode tok/s':>14}{'x 1 seq':>9}{'e2e tok/s':>11}{'prefill s':>11}"
    print(header)
    print("-" * len(header))
    for name, runs in results.items():
        base = med(r["sizes"][str(args.batch_sizes[0])]["decode_tok_s"] for r in runs)
        for size in args.batch_sizes:
            key = str(size)
            dec = med(r["sizes"][key]["decode_tok_s"] for r in runs)
            print(f"{name:10}{size:6d}{dec:14.1f}{dec / base:8.2f}x{med(r['sizes'][key]['e2e_tok_s'] for r in runs):11.1f}"
                  f"{med(r['sizes'][key]['prefill_s'] for r in runs):11.2f}")
            ratios[f"{name}/{size}"] = dec / base
        if "16" in {str(s) for s in args.batch_sizes} and args.batch_sizes[0] == 1:
            print(f"  {name}: 16 sequences = {ratios[f'{name}/16']:.2f}x one sequence   [target: >= 6x]")
    return ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF, help="GGUF file for part 1, both runtimes (default: %(default)s)")
    ap.add_argument("--hf", type=Path, default=DEFAULT_HF, help="bf16 HF directory for part 2 (default: %(default)s)")
    ap.add_argument("--q8-gguf", type=Path, default=None, help="a Q8_0 GGUF for part 2 (default: quantize --hf on load)")
    ap.add_argument("--q4-gguf", type=Path, default=None, help="a Q4_0 GGUF for part 2 (default: quantize --hf on load)")
    ap.add_argument("--parts", default="chat,batch", help="comma-separated: chat, batch (default both)")
    ap.add_argument("--scenarios", default="append,diverge", help="comma-separated: append, diverge")
    ap.add_argument("--runtimes", default=",".join(CHAT_RUNTIMES), help="part 1 runtimes (default: %(default)s)")
    ap.add_argument("--batch-models", default="bf16,q8_0,q4_0", help="part 2 models: bf16, q8_0, q4_0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--user-tokens", type=int, default=100)
    ap.add_argument("--answer-tokens", type=int, default=16)
    ap.add_argument("--think-tokens", type=int, default=30)
    ap.add_argument("--llama-rs-seq", type=int, default=0,
                    help="add the llama.cpp+rs runtime with this n_rs_seq (default 0: leave it out; 16 works)")
    ap.add_argument("--batch-sizes", default="1,4,16,64")
    ap.add_argument("--batch-prompt", type=int, default=32)
    ap.add_argument("--batch-gen", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats (default 2)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 4 turns, batch sizes 1,4,16 x 16 tokens, bf16 only, 1 repeat")
    ap.add_argument("--json", type=Path, default=None, help="also write every result here")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per child (default 1800)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--scenario", help=argparse.SUPPRESS)
    ap.add_argument("--batch-model", help=argparse.SUPPRESS)
    ap.add_argument("--data-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.batch_sizes = [int(s) for s in str(args.batch_sizes).split(",") if s]
    if args.child:
        return run_child(args)

    if args.quick:
        args.turns, args.repeats, args.batch_gen = 4, 1, 16
        args.batch_sizes, args.batch_models = [1, 4, 16], "bf16"
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if args.llama_rs_seq <= 0 and "llama.cpp+rs" in args.runtimes:
        args.runtimes.remove("llama.cpp+rs")
    bad = (parts - {"chat", "batch"}) | (set(scenarios) - set(SCENARIOS)) | (set(args.runtimes) - set(CHAT_RUNTIMES))
    if bad:
        ap.error(f"unknown part/scenario/runtime: {', '.join(sorted(bad))}")
    if "chat" in parts and not args.gguf.is_file():
        ap.error(f"{args.gguf} is missing (make it: bench/make_model.py, then bench/convert_to_gguf.py)")
    if any(r.startswith("llama") for r in args.runtimes):
        ok = subprocess.run([sys.executable, "-c", "import llama_cpp"], capture_output=True).returncode == 0
        if not ok:
            print("[bench] llama_cpp does not import: measuring lfmrt alone")
            args.runtimes = ["lfmrt"]

    conv = build_conversation(args.gguf, args.turns, args.user_tokens, args.answer_tokens, args.think_tokens)
    from lfmrt.loaders import load_checkpoint

    tok = load_checkpoint(args.gguf).tokenizer
    need = max(args.batch_sizes) * args.batch_prompt
    batch_ids = [tok.token_to_id("<|startoftext|>") or 1]
    for text in corpus_texts(tok, need // 200 + 2, 200, skip=5):
        batch_ids += tok.encode(text, add_special_tokens=False).ids
    conv["batch_ids"] = batch_ids
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    args.data_file = out_dir / f"sessions-{os.getpid()}.json"
    args.data_file.write_text(json.dumps(conv))

    output: dict = dict(meta={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()})
    try:
        if "chat" in parts:
            chat: dict = {s: {rt: [] for rt in args.runtimes} for s in scenarios}
            for rep in range(args.repeats):
                for scenario in scenarios:
                    for rt in args.runtimes:
                        res = spawn(args, rt, ["--scenario", scenario])
                        chat[scenario][rt].append(res)
                        last = res["turns"][-1]
                        print(f"[bench] {rep + 1}/{args.repeats} {scenario:7} {rt:12}: turn {args.turns} "
                              f"TTFT {last['ttft_s']:.3f} s, turn {last['total_s']:.3f} s, ran {last['ran']} tokens "
                              f"(load avg {res['loadavg_before']:.1f})", flush=True)
            output["chat"] = chat
            output["chat_ratios"] = print_chat(chat, args, conv)
        if "batch" in parts:
            models = {"bf16": str(args.hf),
                      "q8_0": str(args.q8_gguf) if args.q8_gguf else f"{args.hf}::q8_0",
                      "q4_0": str(args.q4_gguf) if args.q4_gguf else f"{args.hf}::q4_0"}
            names = [m.strip() for m in args.batch_models.split(",") if m.strip()]
            batch: dict = {n: [] for n in names}
            for rep in range(args.repeats):
                for name in names:
                    res = spawn(args, "batch", ["--batch-model", models[name]])
                    batch[name].append(res)
                    print(f"[bench] {rep + 1}/{args.repeats} batch {name}: " + ", ".join(
                        f"{s}: {v['decode_tok_s']:.1f}" for s, v in res["sizes"].items())
                        + f" tok/s (load avg {res['loadavg_before']:.1f})", flush=True)
            output["batch"] = batch
            output["batch_ratios"] = print_batch(batch, args)
    finally:
        args.data_file.unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps(output, indent=1) + "\n")
        print(f"[bench] wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
