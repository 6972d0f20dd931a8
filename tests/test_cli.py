"""The command-line tools, driven as a user drives them: ``lfmrt-chat`` in a pseudo-terminal
(pexpect: streaming, commands, multi-line input, Ctrl-C, Ctrl-D), piped and one-shot; and the
``lfmrt`` subcommands generate, bench and info."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lfmrt
from lfmrt.cli import main as lfmrt_main
from lfmrt.cli.chat import Conversation, cut_notice, run_command

PACKAGE_ROOT = str(Path(lfmrt.__file__).resolve().parent.parent)
STATS = r"decode \d+ tok at [\d.]+ tok/s"


def cli_env() -> dict:
    """The environment for a child process that imports this same lfmrt."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("LFMRT_ISA", None)
    return env


def chat_command(*args: str) -> list:
    return [sys.executable, "-m", "lfmrt.cli.chat", *args]


# --- lfmrt-chat, interactive -----------------------------------------------------------------


@pytest.fixture
def spawn_chat(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    children = []

    def spawn(*args: str):
        command = chat_command(*args)
        child = pexpect.spawn(command[0], command[1:], env=cli_env(), cwd=str(tmp_path), encoding="utf-8",
                              timeout=60, dimensions=(40, 200))
        children.append(child)
        child.expect(r"/help for commands")
        child.expect_exact(">>> ")
        return child

    yield spawn
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def test_interactive_chat_streams_answers_and_runs_commands(spawn_chat, tiny_model_dir, tmp_path):
    child = spawn_chat(str(tiny_model_dir), "--temperature", "0", "--max-tokens", "12", "--system", "Be brief.")
    child.sendline("Hello there")
    child.expect(STATS)
    child.expect_exact(">>> ")

    child.sendline("/help")
    child.expect_exact("Commands:")
    child.expect_exact("Ctrl-C stops the answer")
    child.expect_exact(">>> ")

    child.sendline("/system")
    child.expect_exact("[system prompt: 'Be brief.']")
    child.expect_exact(">>> ")

    # A trailing backslash continues the message; a """ block holds several lines.
    child.sendline("first line \\")
    child.expect_exact("... ")
    child.sendline("second line")
    child.expect(STATS)
    child.expect_exact(">>> ")
    child.sendline('"""')
    child.expect_exact("... ")
    child.sendline("block one")
    child.expect_exact("... ")
    child.sendline("block two")
    child.expect_exact("... ")
    child.sendline('"""')
    child.expect(STATS)
    child.expect_exact(">>> ")

    child.sendline("/stats")
    child.expect(STATS)
    child.expect(r"session: \d+ of \d+ tokens")
    child.expect_exact(">>> ")

    child.sendline("/save conversation.json")
    child.expect(r"\[saved 6 messages, (\d+) tokens to conversation.json\]")
    saved_tokens = child.match.group(1)
    child.expect_exact(">>> ")
    saved = json.loads((tmp_path / "conversation.json").read_text(encoding="utf-8"))
    assert saved["system"] == "Be brief."
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == [
        "Hello there", "first line \nsecond line", "block one\nblock two"]

    child.sendline("/reset")
    child.expect_exact("[conversation reset]")
    child.expect_exact(">>> ")
    child.sendline("/load conversation.json")
    child.expect_exact(f"[loaded 6 messages, {saved_tokens} tokens from conversation.json]")
    child.expect_exact(">>> ")
    child.sendline("And now?")  # continues the restored session: only the new turn is prefilled
    child.expect(r"prefill \d+ tok at [\d.]+ tok/s \(\d+ reused\)")
    child.expect_exact(">>> ")

    child.sendline("/load missing.json")
    child.expect_exact("[error: missing.json: cannot read a saved conversation")
    child.expect_exact(">>> ")
    child.sendline("/frobnicate")
    child.expect_exact("[unknown command /frobnicate")
    child.expect_exact(">>> ")

    child.sendeof()  # Ctrl-D quits
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 0


def pexpect_eof():
    import pexpect

    return pexpect.EOF


def test_ctrl_c_stops_the_answer_not_the_program(spawn_chat, tiny_model_dir):
    # The end-of-turn token banned, every answer runs to --max-tokens (seconds of output).
    child = spawn_chat(str(tiny_model_dir), "--ignore-eos", "--max-tokens", "4000", "--temperature", "1")
    child.sendline("Tell me everything")
    child.expect_exact("Tell me everything")  # the terminal's echo of the line
    child.expect(r"\S{3}")  # the answer has started streaming
    child.sendintr()
    child.expect_exact("[interrupted]")
    child.expect_exact(">>> ")

    child.sendline("/stats")
    child.expect(r"the last answer was interrupted after \d+ characters")
    child.expect(r"session: \d+ of \d+ tokens, [\d.]+ MiB of state; 2 messages")
    child.expect_exact(">>> ")

    child.sendline("Go on")  # the conversation goes on from the interrupted answer
    child.expect(r"prefill \d+ tok at [\d.]+ tok/s \(\d+ reused\), decode 4000 tok", timeout=120)
    child.expect_exact(">>> ")

    child.sendintr()  # at the prompt, Ctrl-C clears the line and keeps going
    child.expect_exact("Ctrl-D or /quit to quit")
    child.expect_exact(">>> ")
    child.sendline("/quit")
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 0


# --- lfmrt-chat, non-interactive -----------------------------------------------------------


def run_chat(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(chat_command(*args), input=stdin, capture_output=True, text=True, env=cli_env(), timeout=120)


def test_piped_stdin_is_one_message(tiny_model_dir):
    result = run_chat(str(tiny_model_dir), "--max-tokens", "6", "--temperature", "0", stdin="Hello\nthere\n")
    assert result.returncode == 0, result.stderr
    model = lfmrt.Model.load(tiny_model_dir)
    expected = model.chat([{"role": "user", "content": "Hello\nthere\n"}], max_tokens=6, temperature=0).text
    assert result.stdout == expected + "\n"
    assert "tok/s" in result.stderr


def test_one_shot_prompt_with_flags(tiny_model_dir):
    args = [str(tiny_model_dir), "--prompt", "Hi", "--max-tokens", "5", "--temperature", "0.8", "--seed", "3",
            "--top-k", "40", "--top-p", "0.9", "--min-p", "0.05", "--threads", "1", "--system", "Be brief."]
    first, second = run_chat(*args), run_chat(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # the seed fixes the answer
    model = lfmrt.Model.load(tiny_model_dir, n_threads=1)
    expected = model.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                          max_tokens=5, temperature=0.8, seed=3, top_k=40, top_p=0.9, min_p=0.05).text
    assert first.stdout == expected + "\n"


def test_chat_version_and_empty_input():
    version = run_chat("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"lfmrt-chat (lfmrt {lfmrt.__version__})"
    for stdin, args in (("", ()), ("  \n\n", ()), ("", ("--prompt", " "))):
        result = run_chat("--demo", *args, stdin=stdin)
        assert result.returncode == 1 and "is empty: there is no message to answer" in result.stderr
        assert result.stdout == ""


def test_an_answer_cut_by_max_tokens_says_so(tiny_model_dir):
    cut = run_chat(str(tiny_model_dir), "--prompt", "Hi", "--max-tokens", "3", "--ignore-eos", "--temperature", "0")
    assert cut.returncode == 0 and "[cut at --max-tokens 3: the answer did not finish]" in cut.stderr
    model = lfmrt.Model.load(tiny_model_dir)
    conversation = Conversation(model, system=None, sampling={}, max_tokens=3)
    ended = model.chat([{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0, logit_bias={7: 1e4})
    assert ended.finish_reason == "stop" and cut_notice(conversation, ended) == ""


def chat_command_output(conversation: Conversation, line: str) -> str:
    import io

    out = io.StringIO()
    assert run_command(conversation, line, out)
    return out.getvalue()


def test_save_and_load_formats_are_told_apart_and_another_models_transcript_loads(tiny_model_dir, tmp_path):
    model = lfmrt.Model.load(tiny_model_dir)
    conversation = Conversation(model, system="Be brief.", sampling={"temperature": 0}, max_tokens=4)
    for _ in conversation.ask("Hello"):
        pass
    saved = tmp_path / "chat.lfmrt-chat"
    assert "[saved 2 messages" in chat_command_output(conversation, f"/save {saved}")

    snapshot = tmp_path / "state.lfmrt-session"
    conversation.session.save(snapshot)
    wrong_way = chat_command_output(conversation, f"/load {snapshot}")
    assert "a session snapshot written by Session.save, not a conversation saved with /save" in wrong_way
    assert "codec" not in wrong_way
    with pytest.raises(lfmrt.LoadError, match="not a session snapshot .*/save"):
        model.load_session(saved)

    other = Conversation(lfmrt.Model.load("demo"), system=None, sampling={"temperature": 0}, max_tokens=4)
    loaded = chat_command_output(other, f"/load {saved}")
    assert "[loaded 2 messages" in loaded and "another architecture" in loaded
    assert [m["content"] for m in other.messages][0] == "Hello" and other.system == "Be brief."
    assert other.session.n_tokens == 0
    assert f"no answer since /load {saved}" in chat_command_output(other, "/stats")
    for _ in other.ask("And then?"):  # the transcript goes on in the new model
        pass
    assert len(other.messages) == 4 and other.session.n_tokens > 0


def test_demo_chat_offline():
    result = run_chat("--demo", "--prompt", "What does json.dumps do?", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "tok/s" in result.stderr


def test_chat_usage_and_load_errors(tmp_path):
    usage = run_chat()
    assert usage.returncode == 2 and "give a MODEL" in usage.stderr
    missing = run_chat(str(tmp_path / "nope"), "--prompt", "x")
    assert missing.returncode == 1
    assert "lfmrt-chat: error:" in missing.stderr and "no such file or directory" in missing.stderr
    offline = run_chat("nobody/not-cached", "--prompt", "x")
    assert offline.returncode == 1 and "not in the Hugging Face cache" in offline.stderr
    assert "Traceback" not in missing.stderr + offline.stderr


# --- lfmrt generate / bench / info -----------------------------------------------------------


def test_generate(tiny_model_dir, capsys):
    assert lfmrt_main.main(["generate", str(tiny_model_dir), "The model", "-n", "8", "--temperature", "0"]) == 0
    out, err = capsys.readouterr()
    expected = lfmrt.Model.load(tiny_model_dir).generate("The model", max_tokens=8, temperature=0).text
    assert out == expected + "\n"
    assert "tok/s" in err


def test_generate_chat_mode(tiny_model_dir, capsys):
    assert lfmrt_main.main(["generate", str(tiny_model_dir), "Hi", "--chat", "-n", "4", "--temperature", "0"]) == 0
    out, _ = capsys.readouterr()
    model = lfmrt.Model.load(tiny_model_dir)
    assert out == model.chat([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0).text + "\n"


def test_bench_reports_speeds_and_memory(tiny_model_dir, capsys):
    args = ["bench", str(tiny_model_dir), "-p", "32", "-n", "8", "-r", "2", "--threads", "1", "--json"]
    assert lfmrt_main.main(args) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["prefill_tokens_per_s"] > 0 and results["decode_tokens_per_s"] > 0
    assert results["peak_rss_bytes"] > 10 * 2**20
    assert results["threads"] == 1 and results["device"] == "cpu:" + lfmrt.cpu_info()["kernels"]
    memory = results["memory_bytes"]
    # The parts are the model's and session's own counts, and they add up to the peak.
    assert memory["session_state"] > 0 and memory["activations"] > 0 and memory["python_and_libraries"] > 0
    assert sum(v for k, v in memory.items() if k != "peak") == memory["peak"] == results["peak_rss_bytes"]
    assert lfmrt_main.main(["bench", str(tiny_model_dir), "-p", "16", "-n", "4", "-r", "1"]) == 0
    text = capsys.readouterr().out
    assert "prefill" in text and "decode" in text and "peak memory" in text and "session state (KV, conv)" in text


def test_info(tiny_model_dir, capsys):
    assert lfmrt_main.main(["info", str(tiny_model_dir)]) == 0
    text = capsys.readouterr().out
    assert "8 (6 conv, 2 attention: 2, 5)" in text
    assert "BF16" in text and "kernels" in text
    assert lfmrt_main.main(["info", str(tiny_model_dir), "--json", "--tensors"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["hidden_size"] == 64
    assert info["tensor_types"]["BF16"]["bytes"] == sum(t["bytes"] for t in info["tensors"])
    assert {"name": "embed_tokens.weight", "type": "BF16", "shape": [768, 64], "bytes": 768 * 64 * 2} in info["tensors"]
    assert info["cpu"] == lfmrt.cpu_info()


def test_subcommand_errors_are_one_line(tmp_path, capsys):
    assert lfmrt_main.main(["info", str(tmp_path / "missing")]) == 1
    assert lfmrt_main.main(["generate", str(tmp_path / "missing"), "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and "Traceback" not in err


def test_lfmrt_runs_as_a_module(tiny_model_dir):
    result = subprocess.run([sys.executable, "-m", "lfmrt.cli.main", "info", str(tiny_model_dir)],
                            capture_output=True, text=True, env=cli_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "attention" in result.stdout
