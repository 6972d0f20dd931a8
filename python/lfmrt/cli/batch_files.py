"""The files of ``lfmrt batch``: rows read from JSONL or Parquet, and an output written so that a
restarted run skips the rows it already holds.

Rows are identified by an id column when the user names one, else by their position: the output
is written in the input's order, so its first ``n`` rows are the input's first ``n``.

- JSONL output is appended a line per row and flushed as it goes; a restart drops a torn last
  line (a run killed mid-write) and counts the rest.
- Parquet cannot be appended to, so rows go into ``OUT.parts/part-NNNNNN.parquet`` files, each
  written to a temporary name and renamed (a part is whole or absent), and the parts become
  ``OUT`` when every row is done.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

Row = Dict[str, Any]

_PARQUET = (".parquet", ".pq")


def is_parquet(path: str) -> bool:
    """Whether ``path`` names a Parquet file (by its extension; anything else is JSONL)."""
    return path.lower().endswith(_PARQUET)


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:
        raise ImportError(f"Parquet files need pyarrow: pip install pyarrow (or 'lfmrt[ray]') ({error})") from None
    return pyarrow


def count_rows(path: str) -> int:
    """Rows in the input file (Parquet from its footer; JSONL by its non-blank lines)."""
    if is_parquet(path):
        return _pyarrow().parquet.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def read_rows(path: str) -> Iterator[Row]:
    """The input's rows, in order, streamed (a Parquet file a record batch at a time).

    Raises:
        ValueError: a JSONL line that is not a JSON object (naming the file and line).
    """
    if is_parquet(path):
        for batch in _pyarrow().parquet.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
        return
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: not a JSON line ({error})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: a row must be a JSON object, got {type(row).__name__}")
            yield row


class OutputFile:
    """The output of a batch run, resumable (see the module's doc).

    Use ``done`` (rows already written, by position) and ``done_ids`` (their ids, with an id
    column) to skip finished rows, ``write`` for each new row in order, ``flush`` now and then,
    and ``finish`` once every row is in.
    """

    def __init__(self, path: str, id_column: Optional[str] = None, rows_per_part: int = 256) -> None:
        """Opens ``path`` for appending, reading what a previous run left there.

        Raises:
            ValueError: an existing output row lacks ``id_column``.
        """
        self.path = path
        self.id_column = id_column
        self._parquet = is_parquet(path)
        self._rows_per_part = rows_per_part
        self._buffer: List[Row] = []
        self.done_ids: Set[Any] = set()
        if self._parquet:
            self.done = self._resume_parquet()
        else:
            self.done = self._resume_jsonl()
            self._file = open(path, "a", encoding="utf-8")

    @property
    def _parts(self) -> str:
        return self.path + ".parts"

    def _note(self, row: Row, where: str) -> None:
        if self.id_column is None:
            return
        if self.id_column not in row:
            raise ValueError(f"{where}: a row has no id column {self.id_column!r}")
        self.done_ids.add(row[self.id_column])

    def _resume_jsonl(self) -> int:
        if not os.path.exists(self.path):
            return 0
        with open(self.path, "rb+") as f:
            data = f.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):  # a line torn by a killed run: that row runs again
                f.truncate(end)
        lines = [line for line in data[:end].split(b"\n") if line.strip()]
        for line in lines:
            self._note(json.loads(line), self.path)
        return len(lines)

    def _part_files(self) -> List[str]:
        if not os.path.isdir(self._parts):
            return []
        names = sorted(name for name in os.listdir(self._parts) if name.startswith("part-") and name.endswith(".parquet"))
        return [os.path.join(self._parts, name) for name in names]

    def _resume_parquet(self) -> int:
        pq = _pyarrow().parquet
        if os.path.exists(self.path) and not os.path.isdir(self._parts):
            # A finished output (or another run's): it becomes the first part, so rows it lacks
            # are added after it.
            os.makedirs(self._parts)
            shutil.move(self.path, os.path.join(self._parts, "part-000000.parquet"))
        done = 0
        for part in self._part_files():
            if self.id_column is not None:
                table = pq.read_table(part, columns=[self.id_column])
                self.done_ids.update(table.column(self.id_column).to_pylist())
            done += pq.ParquetFile(part).metadata.num_rows
        return done

    def write(self, row: Row) -> None:
        """Appends ``row`` (JSONL: written at once, flushed by :meth:`flush`; Parquet: buffered
        until a part is full)."""
        if self._parquet:
            self._buffer.append(row)
            if len(self._buffer) >= self._rows_per_part:
                self.flush()
        else:
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        """Makes every written row durable: a restart after this skips them."""
        if not self._parquet:
            self._file.flush()
            os.fsync(self._file.fileno())
            return
        if not self._buffer:
            return
        pa = _pyarrow()
        os.makedirs(self._parts, exist_ok=True)
        parts = self._part_files()
        number = int(os.path.basename(parts[-1])[5:11]) + 1 if parts else 0
        final = os.path.join(self._parts, f"part-{number:06d}.parquet")
        pa.parquet.write_table(pa.Table.from_pylist(self._buffer), final + ".tmp")
        os.replace(final + ".tmp", final)
        self._buffer = []

    def finish(self) -> None:
        """Flushes and closes; a Parquet output's parts become the one file ``path``."""
        self.flush()
        if not self._parquet:
            self._file.close()
            return
        pa = _pyarrow()
        parts = self._part_files()
        if not parts:
            return
        # Parts may differ in schema (a column all null in one part); unify them.
        table = pa.concat_tables([pa.parquet.read_table(part) for part in parts], promote_options="permissive")
        pa.parquet.write_table(table, self.path + ".tmp")
        os.replace(self.path + ".tmp", self.path)
        shutil.rmtree(self._parts)

    def close(self) -> None:
        """Flushes and closes without merging (an interrupted run: the next one resumes)."""
        self.flush()
        if not self._parquet:
            self._file.close()


def pending_rows(path: str, output: OutputFile) -> Iterator[Tuple[int, Row]]:
    """``(position, row)`` for each input row not yet in ``output``."""
    for position, row in enumerate(read_rows(path)):
        if output.id_column is None:
            if position < output.done:
                continue
        else:
            if output.id_column not in row:
                raise ValueError(f"{path}: row {position} has no id column {output.id_column!r}")
            if row[output.id_column] in output.done_ids:
                continue
        yield position, row
