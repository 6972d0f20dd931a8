"""``lfmrt batch MODEL IN OUT``: every row of a JSONL or Parquet file through the model.

In-process through the Scheduler by default (``--local``), or on a Ray cluster (``--ray
ADDRESS``) through :mod:`lfmrt.ray`'s actors. Rows in and out use the columns of Ray's vLLM
stage (see :mod:`lfmrt.ray.rows`); the output keeps the input's order and columns, so rows are
matched by position, or by ``--id-column``. A restarted run skips the rows already in the output
(see :mod:`.batch_files`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, Optional, TextIO, Tuple

from ..errors import LoadError
from .batch_files import OutputFile, count_rows, pending_rows
from .common import add_model_arguments, add_sampling_arguments, fail, load_model

NAME = "batch"

Row = Dict[str, Any]


def register(subparsers: Any) -> None:
    """Adds ``batch`` to the ``lfmrt`` parser."""
    parser = subparsers.add_parser(
        NAME,
        help="run every row of a JSONL or Parquet file through the model (in-process or on Ray)",
        description=(
            "Generate for every row of IN (JSONL or Parquet: a 'prompt', 'messages' or "
            "'tokenized_prompt' column, optionally 'sampling_params', or --column) and write OUT "
            "(JSONL or Parquet, by extension) with the input's columns plus generated_text, "
            "generated_tokens, num_input_tokens, num_generated_tokens, ... (Ray's vLLM stage "
            "columns), in the input's order. Rerunning an interrupted command skips the rows "
            "OUT already holds."
        ),
    )
    add_model_arguments(parser)
    parser.add_argument("input", metavar="IN", help="a .jsonl or .parquet file of rows")
    parser.add_argument("output", metavar="OUT", help="the .jsonl or .parquet file to write (appended to on restart)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="run in this process (the default)")
    where.add_argument("--ray", metavar="ADDRESS",
                       help="run on the Ray cluster at ADDRESS ('auto': the one this machine joined; 'local': start one)")
    parser.add_argument("--column", metavar="NAME",
                        help="the column holding each row's prompt: text, or a list of messages (default: "
                        "'messages', 'tokenized_prompt' or 'prompt', whichever the row has)")
    parser.add_argument("--id-column", metavar="NAME",
                        help="a column identifying rows: a restart skips the ids already in OUT (default: rows by position)")
    parser.add_argument("--no-chat-template", action="store_true", help="do not render messages with the chat template")
    parser.add_argument("--max-batch", type=int, default=64, metavar="N",
                        help="sequences stepped together in each model copy (default: 64)")
    parser.add_argument("--stop-on-error", action="store_true",
                        help="stop at the first row that cannot run (default: write its error in "
                        "__inference_error__ and go on)")
    ray_group = parser.add_argument_group("Ray (with --ray)")
    ray_group.add_argument("--actors", type=int, default=1, metavar="N", help="model copies (Ray actors; default: 1)")
    ray_group.add_argument("--batch-size", type=int, default=32, metavar="N", help="rows per Ray batch (default: 32)")
    ray_group.add_argument("--rows-per-run", type=int, default=10000, metavar="N",
                           help="rows read into the driver and run on Ray at a time, so a file of any size fits "
                           "in its memory; each run starts the actors anew (default: 10000)")
    ray_group.add_argument("--ship-model", action="store_true",
                           help="put MODEL's files into Ray's object store (for a small model on a path the workers "
                           "do not see); otherwise each worker loads MODEL itself")
    add_sampling_arguments(parser, max_tokens=256)
    parser.add_argument("--json-schema", metavar="FILE",
                        help="every answer is JSON valid against the JSON schema in FILE (a row's own "
                        "sampling_params structured output takes precedence); needs lfmrt[structured]")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


class BatchProgress:
    """Rows done, output tokens per second and the time left, on one line of ``stream`` (a line
    per tenth of the work when it is not a terminal)."""

    def __init__(self, total: int, done: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.skipped, self.done, self.tokens = total, done, done, 0
        self.stream = stream
        self.interactive = stream.isatty()
        self.start = time.perf_counter()
        self.last_tenth = -1
        self.last_draw = 0.0

    def row_done(self, row: Row) -> None:
        """Counts a written row and its generated tokens; redraws at most 10 times a second."""
        self.done += 1
        self.tokens += int(row.get("num_generated_tokens") or 0)
        now = time.perf_counter()
        tenth = int(10 * self.done / self.total) if self.total else 10
        if self.interactive and (now - self.last_draw > 0.1 or self.done == self.total):
            self.stream.write("\r" + self.line(now).ljust(100))
            self.last_draw = now
        elif not self.interactive and tenth != self.last_tenth:
            self.stream.write(self.line(now) + "\n")
        self.last_tenth = tenth
        self.stream.flush()

    def line(self, now: float) -> str:
        """The progress line: rows, rows/s, tok/s, ETA."""
        seconds = max(now - self.start, 1e-9)
        ran = self.done - self.skipped
        rate = ran / seconds
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left != float("inf") else "--:--:--"
        percent = 100.0 * self.done / self.total if self.total else 100.0
        return (f"rows {self.done}/{self.total} ({percent:.0f}%)  {rate:.1f} rows/s  "
                f"{self.tokens / seconds:.1f} tok/s  ETA {eta}")

    def close(self) -> None:
        """Ends the terminal line."""
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def sampling_defaults(args: argparse.Namespace) -> Dict[str, Any]:
    """The flags' sampling settings in ``sampling_params``' names (under each row's own).

    Raises:
        OSError, ValueError: ``--json-schema``'s file cannot be read, is not JSON or is not a
            schema the grammar engine can follow (naming the file), checked here so that a bad
            schema stops the run before the model loads rather than failing every row.
        ImportError: ``--json-schema`` is given and llguidance is not installed.
    """
    names = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed", "max_tokens")
    defaults: Dict[str, Any] = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    defaults["ignore_eos"] = bool(args.ignore_eos)
    defaults["skip_special_tokens"] = not args.special_tokens
    if args.json_schema is not None:
        from ..text.structured import check_json_schema

        with open(args.json_schema, encoding="utf-8") as f:
            try:
                schema = json.load(f)
            except ValueError as error:
                raise ValueError(f"--json-schema {args.json_schema}: not JSON ({error})") from None
        check_json_schema(schema, f"--json-schema {args.json_schema}")
        defaults["guided_json"] = schema
    return defaults


class PromptColumn:
    """A row's prompt columns as the engine reads them, taken from ``--column``: a list is a
    conversation (``messages``), anything else the ``prompt``."""

    def __init__(self, column: str) -> None:
        self.column = column

    def __call__(self, row: Row) -> Row:
        if self.column not in row:
            return {"prompt": None, "messages": None, "tokenized_prompt": None}  # the row's error says so
        value = row[self.column]
        key = "messages" if isinstance(value, (list, tuple)) else "prompt"
        return {"prompt": None, "messages": None, "tokenized_prompt": None, key: value}


# The prompt columns PromptColumn blanks; the Ray path leaves them out of the output again.
_HIDDEN = frozenset({"prompt", "messages", "tokenized_prompt"})


def _run_local(args: argparse.Namespace, defaults: Dict[str, Any], rows: Iterable[Tuple[int, Row]],
               emit: Callable[[Row], None]) -> None:
    from ..ray.engine import BatchEngine
    from ..ray.rows import finished_row

    model = load_model(args)
    engine = BatchEngine(model, sampling_defaults=defaults,
                         apply_chat_template=not args.no_chat_template, max_batch=args.max_batch)
    select = PromptColumn(args.column) if args.column else None
    continue_on_error = not args.stop_on_error
    # Rows in flight: enough to keep the scheduler full, few enough to write in order promptly.
    window: Deque[Tuple[Row, "Future[Row]"]] = deque()
    limit = 2 * args.max_batch

    def write_head() -> None:
        row, future = window.popleft()
        error = future.exception()
        emit(finished_row(row, error if error is not None else future.result(), continue_on_error))

    try:
        for _, row in rows:
            window.append((row, engine.submit({**row, **select(row)} if select else row)))
            while len(window) >= limit or (window and window[0][1].done()):
                write_head()
        while window:
            write_head()
    finally:
        engine.close()


def _run_ray(args: argparse.Namespace, defaults: Dict[str, Any], rows: Iterable[Tuple[int, Row]],
             emit: Callable[[Row], None]) -> None:
    from ..ray import LfmrtProcessorConfig, build_processor, put_model
    from ..ray.model_source import import_ray

    ray = import_ray()
    ray.init(address=args.ray, ignore_reinit_error=True, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    # Dispatch once every actor has loaded its model: the first one ready would otherwise take
    # max_concurrent_batches batches before the others are up (all of a small file).
    context.wait_for_min_actors_s = max(context.wait_for_min_actors_s, 600)
    source: Any = put_model(args.model, file=args.file, revision=args.revision) if args.ship_model else args.model
    engine_kwargs = {name: getattr(args, name) for name in ("quant", "max_context", "file", "revision")
                     if getattr(args, name) is not None and not (args.ship_model and name in ("file", "revision"))}
    config = LfmrtProcessorConfig(
        model_source=source, device=args.device, threads_per_actor=args.threads or 1, batch_size=args.batch_size,
        concurrency=args.actors, max_batch=args.max_batch, sampling_params=defaults,
        apply_chat_template=not args.no_chat_template, should_continue_on_error=not args.stop_on_error,
        engine_kwargs=engine_kwargs,
    )
    if args.rows_per_run < 1:
        raise ValueError(f"--rows-per-run must be at least 1, got {args.rows_per_run}")
    select = PromptColumn(args.column) if args.column else None
    processor = build_processor(config)
    rows = iter(rows)
    while True:
        items = [{**row, **select(row)} if select else row for _, row in itertools.islice(rows, args.rows_per_run)]
        if not items:
            return
        # A block per Ray batch: from_items' default of a block per row or so would start a task per row.
        blocks = -(-len(items) // args.batch_size)
        dataset = ray.data.from_items(items, override_num_blocks=blocks)
        for row in processor(dataset).iter_rows():
            emit({key: value for key, value in row.items() if not (select and key in _HIDDEN and value is None)})


def run(args: argparse.Namespace) -> int:
    """Runs the rows of ``args.input`` not yet in ``args.output``; returns the exit status."""
    prog = f"lfmrt {NAME}"
    try:
        # The flags first: a bad --json-schema stops the run before OUT is created or opened.
        defaults = sampling_defaults(args)
        total = count_rows(args.input)
        output = OutputFile(args.output, id_column=args.id_column)
    except (OSError, ValueError, ImportError) as error:
        return fail(prog, error)
    progress: Optional[BatchProgress] = None if args.quiet else BatchProgress(total, output.done)
    last_flush = [time.perf_counter()]

    def emit(row: Row) -> None:
        output.write(row)
        if progress is not None:
            progress.row_done(row)
        if time.perf_counter() - last_flush[0] > 1.0:  # a killed run loses at most a second of rows
            output.flush()
            last_flush[0] = time.perf_counter()

    rows: Iterator[Tuple[int, Row]] = pending_rows(args.input, output)
    try:
        (_run_ray if args.ray else _run_local)(args, defaults, rows, emit)
    except KeyboardInterrupt:
        output.close()
        if progress is not None:
            progress.close()
        print(f"{prog}: interrupted; {args.output} holds the rows done so far: run the same command to resume",
              file=sys.stderr)
        return 130
    except (LoadError, OSError, ValueError, TypeError, ImportError, RuntimeError) as error:
        output.close()
        if progress is not None:
            progress.close()
        return fail(prog, error)
    output.finish()
    if progress is not None:
        progress.close()
    return 0
