"""``lfmrt generate MODEL PROMPT``: continue a prompt and stream the text to stdout.

The prompt is plain text (tokenized with a leading bos), not a chat: use ``--chat`` to wrap it
in the model's chat template as one user message, or ``lfmrt-chat --prompt`` for a chat answer.
Speeds go to stderr.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import LoadError
from . import common

NAME = "generate"


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Adds ``lfmrt generate``."""
    parser = subparsers.add_parser(NAME, help="continue a prompt", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_model_arguments(parser)
    parser.add_argument("prompt", metavar="PROMPT", help="the text to continue ('-' reads stdin)")
    parser.add_argument("--chat", action="store_true", help="send PROMPT as a user message through the chat template")
    parser.add_argument("--stop", action="append", metavar="TEXT", help="end at this text (repeatable)")
    common.add_sampling_arguments(parser, max_tokens=256)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Streams the continuation of ``args.prompt``; returns the exit status."""
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    try:
        model = common.load_model(args)
        sampling = common.sampling_from_args(args, model)
        if args.chat:
            stream = model.chat_stream([{"role": "user", "content": prompt}], max_tokens=args.max_tokens,
                                       stop=args.stop, skip_special_tokens=not args.special_tokens, **sampling)
        else:
            stream = model.stream(prompt, max_tokens=args.max_tokens, stop=args.stop,
                                  skip_special_tokens=not args.special_tokens, **sampling)
        while True:
            try:
                piece = next(stream)
            except StopIteration as done:
                completion = done.value
                break
            sys.stdout.write(piece)
            sys.stdout.flush()
    except (LoadError, ValueError) as error:
        return common.fail(f"lfmrt {NAME}", error)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    sys.stdout.write("\n")
    if completion is not None:
        print(f"[{common.describe_timings(completion.timings)}]", file=sys.stderr)
    return 0
