"""``lfmrt-chat [MODEL]``: chat with an LFM2 model in the terminal.

    lfmrt-chat --demo                               # the bundled demo model, offline
    lfmrt-chat LiquidAI/LFM2.5-350M                 # from the Hugging Face Hub (cached after)
    lfmrt-chat path/to/checkpoint --temperature 0   # a local directory or .gguf file
    lfmrt-chat --demo --prompt "What is a list?"    # one question, one answer, exit
    echo "What is a tuple?" | lfmrt-chat --demo     # piped: all of stdin is one message

Interactive mode (stdin is a terminal): answers stream token by token; line editing and history
come from readline; Ctrl-C stops the answer being written (what was written stays in the
conversation) or clears the line being typed; Ctrl-D quits. A line ending in a backslash
continues on the next line, and a line of three double quotes starts a block that runs until the
next such line. Type /help for the commands. The conversation keeps one session, so each turn
prefills only its new tokens.

Non-interactive mode (``--prompt TEXT``, or stdin not a terminal): the answer goes to stdout,
speeds to stderr, and the exit status is 0 on success.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import Any, Dict, Generator, List, Optional, TextIO

from .. import __version__
from ..errors import LoadError
from ..generation.completion import Completion
from ..model import Model
from ..session import SNAPSHOT_MAGIC
from . import common

PROG = "lfmrt-chat"
SAVE_FORMAT = "lfmrt-chat"
SAVE_VERSION = 1
BLOCK_DELIMITER = '"""'

HELP = f"""\
Commands:
  /help            this text
  /reset           forget the conversation (the system prompt stays)
  /system TEXT     set the system prompt (/system alone shows it, /system - clears it)
  /save FILE       save the conversation and the model's state to FILE (e.g. chat.lfmrt-chat)
  /load FILE       load a conversation saved with /save (from another model: the transcript only)
  /stats           speeds of the last answer, and the session's size
  /quit            quit (Ctrl-D does too)
Input:
  a line ending in \\ continues on the next line;
  a line of {BLOCK_DELIMITER} starts a multi-line block, ended by another {BLOCK_DELIMITER} line;
  a message that starts with / is a command: start it with // to send a literal /.
Keys:
  Ctrl-C stops the answer being written (or clears the line); Ctrl-D quits;
  arrows and the usual readline keys edit the line and walk the history."""


class Conversation:
    """A chat with one model: the messages so far, and the session holding their state.

    Each turn renders the whole conversation with the model's template and continues the same
    session, which reuses the longest common prefix, so a turn costs only its new tokens.
    """

    def __init__(
        self,
        model: Model,
        *,
        system: Optional[str],
        sampling: Dict[str, Any],
        max_tokens: int,
        skip_special_tokens: bool = True,
    ) -> None:
        self.model = model
        self.skip_special_tokens = skip_special_tokens
        self.system = system
        self.sampling = sampling
        self.max_tokens = max_tokens
        self.messages: List[Dict[str, str]] = []
        self.session = model.session()
        self.last: Optional[Completion] = None
        # What /stats says when there is no last answer to report on.
        self.no_answer_note = "no answer yet"

    def _rendered_messages(self) -> List[Dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.messages

    def ask(self, text: str) -> Generator[str, None, Completion]:
        """Adds the user's message and streams the answer; the return value is the Completion.

        If the caller stops early (closes the generator, e.g. on Ctrl-C), call
        :meth:`interrupted` with the text shown so far to keep it in the conversation.
        """
        self.messages.append({"role": "user", "content": text})
        try:
            completion = yield from self.model.chat_stream(
                self._rendered_messages(),
                max_tokens=self.max_tokens,
                session=self.session,
                context_policy="drop_oldest",
                skip_special_tokens=self.skip_special_tokens,
                **self.sampling,
            )
        except (ValueError, LoadError):
            self.messages.pop()  # the turn never happened
            raise
        self.messages.append({"role": "assistant", "content": completion.text})
        self.last = completion
        return completion

    def interrupted(self, partial_text: str) -> None:
        """Records an answer that was stopped after ``partial_text``."""
        self.messages.append({"role": "assistant", "content": partial_text})
        self.last = None
        self.no_answer_note = (
            f"the last answer was interrupted after {len(partial_text)} characters "
            "(speeds are measured on finished answers)"
        )

    def reset(self) -> None:
        """Forgets the messages and the model's state (the system prompt stays)."""
        self.messages.clear()
        self.session.reset()
        self.last = None
        self.no_answer_note = "no answer since /reset"

    def save(self, path: str) -> None:
        """Writes the messages, the system prompt and the session snapshot to ``path`` (JSON)."""
        snapshot = self.session.save()
        assert snapshot is not None
        document = {
            "format": SAVE_FORMAT,
            "version": SAVE_VERSION,
            "system": self.system,
            "messages": self.messages,
            "session": base64.b64encode(snapshot).decode("ascii"),
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(document, f, ensure_ascii=False, indent=1)

    def load(self, path: str) -> Optional[str]:
        """Replaces this conversation with one saved by :meth:`save`.

        Returns:
            ``None``, or why the saved model state could not be used (it was saved with another
            model): the transcript is loaded all the same, and the next answer reads it afresh.

        Raises:
            LoadError: the file is not a saved conversation; the conversation is then unchanged.
        """
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as error:
            raise LoadError(f"{path}: cannot read a saved conversation ({error.strerror})") from None
        if raw.startswith(SNAPSHOT_MAGIC):
            raise LoadError(
                f"{path}: a session snapshot written by Session.save, not a conversation saved with /save "
                "(Model.load_session reads it)"
            )
        try:
            document = json.loads(raw.decode("utf-8"))
        except ValueError as error:
            raise LoadError(f"{path}: not a conversation saved with /save ({error})") from None
        if not isinstance(document, dict) or document.get("format") != SAVE_FORMAT:
            raise LoadError(f"{path}: not a conversation saved by {PROG} (/save)")
        if document.get("version") != SAVE_VERSION:
            raise LoadError(f"{path}: saved conversation version {document.get('version')!r}, expected {SAVE_VERSION}")
        messages = document.get("messages")
        if not (isinstance(messages, list) and all(isinstance(m, dict) for m in messages)):
            raise LoadError(f"{path}: 'messages' must be a list of messages")
        try:
            snapshot = base64.b64decode(document.get("session", ""), validate=True)
        except ValueError:
            raise LoadError(f"{path}: 'session' is not base64 data") from None
        try:
            session, problem = self.model.load_session(snapshot), None
        except LoadError as error:
            session, problem = self.model.session(), str(error)
        self.session, self.messages, self.system = session, messages, document.get("system")
        self.last = None
        self.no_answer_note = f"no answer since /load {path}"
        return problem


def stats_text(conversation: Conversation) -> str:
    """The /stats report."""
    session = conversation.session
    lines = []
    if conversation.last is not None:
        lines.append(common.describe_timings(conversation.last.timings))
    else:
        lines.append(conversation.no_answer_note)
    lines.append(
        f"session: {session.n_tokens} of {conversation.model.max_context} tokens, "
        f"{session.memory_bytes / 2**20:.1f} MiB of state; {len(conversation.messages)} messages"
    )
    return "\n".join(lines)


def stream_answer(conversation: Conversation, text: str, out: TextIO) -> Optional[Completion]:
    """Streams the answer to ``text`` onto ``out``. Ctrl-C stops it (returns None); the
    partial answer stays in the conversation."""
    pieces: List[str] = []
    stream = conversation.ask(text)
    try:
        while True:
            try:
                piece = next(stream)
            except StopIteration as done:
                out.write("\n")
                out.flush()
                return done.value
            pieces.append(piece)
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        stream.close()
        conversation.interrupted("".join(pieces))
        out.write("\n[interrupted]\n")
        out.flush()
        return None


def read_message(read_line) -> Optional[str]:
    """One message from ``read_line(prompt)``, joining continued lines and ``\"\"\"`` blocks;
    None at end of input (EOFError from the first line)."""
    line = read_line(">>> ")
    if line.strip() == BLOCK_DELIMITER:
        lines = []
        while True:
            try:
                line = read_line("... ")
            except EOFError:
                break
            if line.strip() == BLOCK_DELIMITER:
                break
            lines.append(line)
        return "\n".join(lines)
    lines = []
    while line.endswith("\\"):
        lines.append(line[:-1])
        try:
            line = read_line("... ")
        except EOFError:
            line = ""
            break
    lines.append(line)
    return "\n".join(lines)


def run_command(conversation: Conversation, line: str, out: TextIO) -> bool:
    """Runs a /command; returns False when the user asked to quit."""
    name, _, argument = line.strip().partition(" ")
    argument = argument.strip()
    if name in ("/quit", "/exit", "/q"):
        return False
    if name in ("/help", "/?"):
        print(HELP, file=out)
    elif name == "/reset":
        conversation.reset()
        print("[conversation reset]", file=out)
    elif name == "/system":
        if not argument:
            print(f"[system prompt: {conversation.system!r}]", file=out)
        else:
            conversation.system = None if argument == "-" else argument
            print("[system prompt set]" if conversation.system else "[system prompt cleared]", file=out)
    elif name in ("/save", "/load"):
        if not argument:
            print(f"[usage: {name} FILE]", file=out)
            return True
        path = os.path.expanduser(argument)
        try:
            if name == "/save":
                conversation.save(path)
                print(f"[saved {len(conversation.messages)} messages, {conversation.session.n_tokens} tokens to {path}]", file=out)
            else:
                problem = conversation.load(path)
                if problem is None:
                    print(f"[loaded {len(conversation.messages)} messages, {conversation.session.n_tokens} tokens from {path}]", file=out)
                else:
                    print(f"[loaded {len(conversation.messages)} messages from {path}; its model state is not "
                          f"usable here ({problem}), so the next answer reads the conversation afresh]", file=out)
        except (OSError, LoadError) as error:
            print(f"[error: {error}]", file=out)
    elif name == "/stats":
        print(stats_text(conversation), file=out)
    else:
        print(f"[unknown command {name}: /help lists the commands]", file=out)
    return True


def interactive(conversation: Conversation, out: TextIO, banner: str) -> int:
    """The read-answer loop on a terminal."""
    try:
        import readline  # noqa: F401  (importing it gives input() line editing and history)
    except ImportError:  # Windows without pyreadline: plain input() still works
        pass
    print(banner, file=out)
    while True:
        try:
            text = read_message(input)
        except KeyboardInterrupt:
            print("^C (Ctrl-D or /quit to quit)", file=out)
            continue
        except EOFError:
            print(file=out)
            return 0
        if not text.strip():
            continue
        if text.startswith("/") and not text.startswith("//"):
            if not run_command(conversation, text, out):
                return 0
            continue
        if text.startswith("//"):
            text = text[1:]
        try:
            completion = stream_answer(conversation, text, out)
        except (ValueError, LoadError) as error:
            print(f"[error: {error}]", file=out)
            continue
        if completion is not None:
            print(cut_notice(conversation, completion) + f"[{common.describe_timings(completion.timings)}]", file=out)


def cut_notice(conversation: Conversation, completion: Completion) -> str:
    """A line saying the answer was cut (at ``--max-tokens``, or by a full context) rather than
    ended by the model, or ""."""
    if completion.finish_reason != "length":
        return ""
    if len(completion.tokens) < conversation.max_tokens:
        return f"[cut: the conversation filled the context ({conversation.model.max_context} tokens)]\n"
    return f"[cut at --max-tokens {conversation.max_tokens}: the answer did not finish]\n"


def one_shot(conversation: Conversation, text: str) -> int:
    """Answers one message: the answer to stdout, speeds to stderr."""
    try:
        completion = stream_answer(conversation, text, sys.stdout)
    except (ValueError, LoadError) as error:
        return common.fail(PROG, error)
    if completion is None:
        return 130  # interrupted, as shells report SIGINT
    print(cut_notice(conversation, completion) + f"[{common.describe_timings(completion.timings)}]", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Chat with an LFM2 model in the terminal.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_model_arguments(parser, optional=True)
    parser.add_argument("--demo", action="store_true", help="use the demo model bundled with lfmrt (no network)")
    parser.add_argument("--system", "-s", metavar="TEXT", help="the system prompt")
    parser.add_argument("--prompt", "-p", metavar="TEXT", help="answer this one message and exit")
    parser.add_argument("--version", action="version", version=f"{PROG} (lfmrt {__version__})")
    common.add_sampling_arguments(parser, max_tokens=512)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Runs ``lfmrt-chat`` with ``argv`` (default: the process's arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.demo == bool(args.model):
        parser.error("give a MODEL (a path or a Hugging Face repo id) or --demo, not both" if args.demo
                     else "give a MODEL (a path or a Hugging Face repo id), or --demo for the bundled demo model")
    try:
        model = common.load_model(args, "demo" if args.demo else None)
        sampling = common.sampling_from_args(args, model)
    except (LoadError, ValueError) as error:
        return common.fail(PROG, error)
    conversation = Conversation(model, system=args.system, sampling=sampling, max_tokens=args.max_tokens,
                                skip_special_tokens=not args.special_tokens)
    if args.prompt is not None or not sys.stdin.isatty():
        text = args.prompt if args.prompt is not None else sys.stdin.read()
        if not text.strip():
            source = "--prompt" if args.prompt is not None else "stdin"
            return common.fail(PROG, ValueError(f"{source} is empty: there is no message to answer"))
        return one_shot(conversation, text)
    name = "the demo model" if args.demo else args.model
    banner = (
        f"lfmrt-chat: {name} ({model.config.hidden_size}-wide, {len(model.config.layer_types)} layers, "
        f"{model.n_threads} threads). /help for commands, Ctrl-C stops an answer, Ctrl-D quits."
    )
    return interactive(conversation, sys.stdout, banner)


if __name__ == "__main__":
    sys.exit(main())
