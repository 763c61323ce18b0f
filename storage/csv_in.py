"""Reading the CSV files DeviceCare imports: one layer under every importer (roster, device
inventory, insurance enrollments, device coverage, payment portal exports).

What it settles before an importer sees a row:

- **Encoding.** UTF-8, with or without a byte-order mark, or a fallback an importer asks for
  (the payment import accepts Windows-1252). A byte that isn't text in any of them refuses the
  whole file, naming its line; a UTF-16 or UTF-32 file is refused with what to do instead.
- **Header.** The first non-blank record. An empty file, or a header without a column the
  importer needs (or with one of them twice), refuses the file with the columns expected.
- **Rows.** Each record carries the physical line it starts on (the header is line 1 and a
  quoted value's newlines count), as a spreadsheet or editor shows it. A row with a NUL byte or
  another control character, a quote that is never closed, a quoted value that swallows the
  following lines, or a value over the csv module's size limit is reported with its line and a
  reason, and reading goes on with the next line, so one bad row never hides the good ones.

Nothing here touches the database or knows an importer's own rules. A file-level refusal is a
`CsvFileError`; row problems come out of the reader, in file order, as `Problem`s.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from workflows.i18n import _

UTF8 = ("utf-8",)
ENCODING_NAMES = {"utf-8": "UTF-8", "cp1252": "Windows-1252"}
SNIFF_LINES = 20
SNIFF_CHARS = 20_000
# Tab, CR and LF are layout; every other C0/C1 control (NUL included) has no place in a value,
# and PostgreSQL refuses NUL in text outright.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CHUNK = 1 << 20


class CsvFileError(ValueError):
    """The file as a whole can't be used (not text, empty, wrong header): nothing is imported."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A row that could not be imported (or a part of it that was dropped), and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Record:
    """A non-blank row and the physical line it starts on."""

    line: int
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Column:
    """A column an importer reads: `name` in messages, `aliases` also accepted as its header."""

    name: str
    aliases: tuple[str, ...] = ()
    required: bool = True


def header_key(name: str) -> str:
    """Default header comparison: trimmed, without case."""
    return name.strip().casefold()


def find_columns(
    file: str,
    header: Sequence[str],
    columns: Sequence[Column],
    key: Callable[[str], str] = header_key,
) -> dict[str, int]:
    """Each column's position in `header` (an absent optional column is left out).

    Raises CsvFileError naming the expected columns when the file is empty, lacks a required
    column, or has one of them twice (which value would be meant is anyone's guess).
    """
    needed = ", ".join(c.name for c in columns if c.required)
    optional = ", ".join(c.name for c in columns if not c.required)
    expected = (
        _("the columns {needed} (and optionally {optional})", needed=needed, optional=optional)
        if optional
        else _("the columns {needed}", needed=needed)
    )
    if not any(h.strip() for h in header):
        raise CsvFileError(
            _(
                "{file} is empty: it needs a header row with {expected}.",
                file=file,
                expected=expected,
            )
        )
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(header):
        positions.setdefault(key(name), []).append(index)
    found: dict[str, int] = {}
    missing: list[str] = []
    for column in columns:
        for alias in (column.name, *column.aliases):
            at = positions.get(key(alias), [])
            if len(at) > 1:
                raise CsvFileError(
                    _(
                        '{file} has {count} columns named "{column}"; keep one.',
                        file=file,
                        count=len(at),
                        column=header[at[0]].strip(),
                    )
                )
            if at:
                found[column.name] = at[0]
                break
        else:
            if column.required:
                missing.append(column.name)
    if missing:
        shown = ", ".join(h.strip() for h in header if h.strip())
        raise CsvFileError(
            _(
                "{file} has no column {missing}. It needs {expected}; its header is: {shown}.",
                file=file,
                missing=", ".join(missing),
                expected=expected,
                shown=shown,
            )
        )
    return found


def open_csv(
    source: Path | bytes,
    *,
    name: str | None = None,
    encodings: Sequence[str] = UTF8,
    delimiters: str = ",",
) -> CsvReader:
    """A reader over a file (or its bytes), its encoding checked and header read.

    `delimiters` of more than one character are sniffed from the first lines. Raises
    CsvFileError for a file that isn't text; OSError when it can't be opened.
    """
    if isinstance(source, bytes):
        return CsvReader(io.BytesIO(source), name or "the file", encodings, delimiters)
    stream: BinaryIO = source.open("rb")
    try:
        if not stream.seekable():  # a pipe: its bytes are read twice, so keep them
            data = stream.read()
            stream.close()
            stream = io.BytesIO(data)
        return CsvReader(stream, name or source.name, encodings, delimiters)
    except BaseException:
        stream.close()
        raise


class CsvReader:
    """An open CSV file: `header`, then `Record`s and `Problem`s in file order when iterated."""

    def __init__(
        self, stream: BinaryIO, name: str, encodings: Sequence[str], delimiters: str
    ) -> None:
        self.name = name
        self.encoding = _encoding(stream, name, encodings)
        self._text = io.TextIOWrapper(stream, encoding=self.encoding, newline="")
        self._lines = _Lines(self._text, name)
        self.delimiter = self._sniff(delimiters) if len(delimiters) > 1 else delimiters
        self.header: tuple[str, ...] = ()
        self._rows = self._records()
        self.header = self._read_header()

    def __enter__(self) -> CsvReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._text.close()

    def __iter__(self) -> Iterator[Record | Problem]:
        return self._rows

    def column_name(self, index: int) -> str:
        name = self.header[index].strip() if index < len(self.header) else ""
        return name or _("value {number}", number=index + 1)

    def _sniff(self, delimiters: str) -> str:
        # Capped: the sniffer's patterns slow down badly on a huge value.
        sample = self._lines.peek(SNIFF_LINES)[:SNIFF_CHARS]
        try:
            return csv.Sniffer().sniff(sample, delimiters=delimiters).delimiter
        except csv.Error:
            first = sample.splitlines()[0] if sample else ""
            # One column, or a sample the sniffer can't decide on: the most frequent candidate.
            counts = {d: first.count(d) for d in delimiters}
            best = max(counts, key=lambda d: counts[d])
            return best if counts[best] else delimiters[0]

    def _read_header(self) -> tuple[str, ...]:
        first = next(self._rows, None)
        if isinstance(first, Problem):
            raise CsvFileError(
                _(
                    "{file} line {line}, the header, can't be read: {reason}.",
                    file=self.name,
                    line=first.line,
                    reason=first.reason,
                )
            )
        if first is None:
            return ()
        # A second byte-order mark (files glued together) must not become part of a name.
        return tuple(v.replace("\ufeff", "").strip() for v in first.values)

    def _reader(self) -> Iterator[list[str]]:
        return csv.reader(self._lines, delimiter=self.delimiter)

    def _records(self) -> Iterator[Record | Problem]:
        reader = self._reader()
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                lines, _end = self._lines.take()
                yield self._broken(lines, exc)
                reader = self._reader()  # start clean on the next line
                continue
            lines, hit_end = self._lines.take()
            if hit_end:
                # The file ended inside a quoted value: the quote was never closed.
                yield self._unclosed(lines)
                reader = self._reader()
                continue
            start = lines[0][0] if lines else self._lines.number
            if len(lines) > 1 and self._swallows(lines, values):
                yield self._swallowed(lines)
                reader = self._reader()
                continue
            if not any(v.strip() for v in values):
                continue
            bad = _CONTROL.search("".join(values))
            if bad is None:
                yield Record(start, tuple(values))
                continue
            yield Problem(self.name, start, self._control_reason(values))

    def _control_reason(self, values: list[str]) -> str:
        for index, value in enumerate(values):
            found = _CONTROL.search(value)
            if found is None:
                continue
            column = self.column_name(index)
            char = found.group()
            if char == "\x00":
                return _("{column} has a NUL byte", column=column)
            return _(
                "{column} has a control character ({code})",
                column=column,
                code=f"U+{ord(char):04X}",
            )
        return _("a value has a control character")  # pragma: no cover - search found one above

    def _unclosed(self, lines: list[tuple[int, str]]) -> Problem:
        start = lines[0][0]
        opened = _quote_start(lines, self.delimiter) or start
        self._lines.replay([line for line in lines if line[0] > opened])
        reason = (
            _("a quote opened on this line is never closed")
            if opened == start
            else _("a quote opened on line {opened} is never closed", opened=opened)
        )
        return Problem(self.name, start, reason)

    def _swallows(self, lines: list[tuple[int, str]], values: list[str]) -> bool:
        """Whether a record over several lines is a stray quote pairing with a later one: it
        doesn't fit the header, or a quote closes with text right after it (`"a"b`)."""
        if self.header and len(values) != len(self.header):
            return True
        return _quote_scan(lines, self.delimiter)[1]

    def _swallowed(self, lines: list[tuple[int, str]]) -> Problem:
        start, end = lines[0][0], lines[-1][0]
        opened = _quote_start(lines, self.delimiter) or start
        self._lines.replay([line for line in lines if line[0] > opened])
        reason = (
            _(
                "a quote opened on this line closes only on line {end}; "
                "the lines after it are read as rows of their own",
                end=end,
            )
            if opened == start
            else _(
                "a quote opened on line {opened} closes only on line {end}; "
                "the lines after it are read as rows of their own",
                opened=opened,
                end=end,
            )
        )
        return Problem(self.name, start, reason)

    def _broken(self, lines: list[tuple[int, str]], exc: csv.Error) -> Problem:
        start = lines[0][0] if lines else self._lines.number
        limit = csv.field_size_limit()
        opened = _quote_start(lines, self.delimiter)
        if opened is not None:
            self._lines.replay([line for line in lines if line[0] > opened])
            reason = (
                _(
                    "a quote opened on this line isn't closed within {limit} characters",
                    limit=f"{limit:,}",
                )
                if opened == start
                else _(
                    "a quote opened on line {opened} isn't closed within {limit} characters",
                    opened=opened,
                    limit=f"{limit:,}",
                )
            )
        elif "field larger than field limit" in str(exc):
            reason = _("a value is longer than {limit} characters", limit=f"{limit:,}")
        else:
            reason = _("not valid CSV ({error})", error=exc)
        return Problem(self.name, start, reason)


def _quote_start(lines: Sequence[tuple[int, str]], delimiter: str) -> int | None:
    """The line of the first quoted value that runs over a line break (or is left open)."""
    return _quote_scan(lines, delimiter)[0]


def _quote_scan(lines: Sequence[tuple[int, str]], delimiter: str) -> tuple[int | None, bool]:
    """Where the first quoted value running over a line break (or left open) opens, and
    whether any quote closes with text right after it, by the csv module's own rules: a quote
    opens a value only at its start, and "" inside one is a quote."""
    field_start, unquoted, quoted, quote_in_quoted = range(4)
    state = field_start
    opened: int | None = None
    crossing: int | None = None
    malformed = False
    for number, text in lines:
        for ch in text:
            if state == field_start:
                if ch == '"':
                    state, opened = quoted, number
                elif ch != delimiter and ch not in "\r\n":
                    state = unquoted
            elif state == unquoted:
                if ch == delimiter or ch in "\r\n":
                    state = field_start
            elif state == quoted:
                if ch == '"':
                    state = quote_in_quoted
                elif ch in "\r\n" and crossing is None:
                    crossing = opened
            elif ch == '"':
                state = quoted
            elif ch == delimiter or ch in "\r\n":
                state = field_start
            else:
                state, malformed = unquoted, True
    if crossing is None and state == quoted:
        crossing = opened
    return crossing, malformed


class _Lines:
    """The file's physical lines for csv.reader, numbered. The lines of the record being read
    are kept, so after a bad record reading can resume from a line inside it."""

    def __init__(self, text: io.TextIOWrapper, name: str) -> None:
        self._text = text
        self._name = name
        self._replay: deque[tuple[int, str]] = deque()
        self._pending: list[tuple[int, str]] = []
        self._hit_end = False
        self.number = 0  # lines read from the file so far

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._replay:
            item = self._replay.popleft()
        else:
            try:
                line = next(self._text)
            except StopIteration:
                self._hit_end = True
                raise
            except UnicodeDecodeError as exc:  # checked before reading: it changed meanwhile
                raise CsvFileError(_("{file} changed while it was read", file=self._name)) from exc
            self.number += 1
            item = (self.number, line)
        self._pending.append(item)
        return item[1]

    def peek(self, count: int) -> str:
        """The first `count` lines' text, left to be read again."""
        taken: list[tuple[int, str]] = []
        for _step in range(count):
            try:
                next(self)
            except StopIteration:
                break
            taken, self._pending = taken + self._pending, []
        self._hit_end = False
        self._replay.extendleft(reversed(taken))
        return "".join(text for _number, text in taken)

    def take(self) -> tuple[list[tuple[int, str]], bool]:
        """The lines read since the last take, and whether the file ran out during them."""
        lines, hit_end = self._pending, self._hit_end
        self._pending, self._hit_end = [], False
        return lines, hit_end

    def replay(self, lines: list[tuple[int, str]]) -> None:
        self._replay.extendleft(reversed(lines))


def _encoding(stream: BinaryIO, name: str, encodings: Sequence[str]) -> str:
    """The first of `encodings` the whole file decodes in; CsvFileError naming the line of the
    first bad byte otherwise. The file is read through once, a chunk at a time."""
    head = stream.read(4)
    stream.seek(0)
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise CsvFileError(
            _('{file} is UTF-32 text; save it as "CSV UTF-8" and import that.', file=name)
        )
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvFileError(
            _('{file} is UTF-16 text; save it as "CSV UTF-8" and import that.', file=name)
        )
    first_bad: tuple[int, int] | None = None
    for encoding in encodings:
        bad = _first_bad_byte(stream, encoding)
        stream.seek(0)
        if bad is None:
            if encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
                return "utf-8-sig"
            return encoding
        first_bad = first_bad or bad
    assert first_bad is not None
    line, byte = first_bad
    names = _(" or ").join(ENCODING_NAMES.get(e, e) for e in encodings)
    raise CsvFileError(
        _(
            '{file} line {line} is not {encodings} text (byte {byte}); save it as "CSV UTF-8".',
            file=name,
            line=line,
            encodings=names,
            byte=f"0x{byte:02X}",
        )
    )


def _first_bad_byte(stream: BinaryIO, encoding: str) -> tuple[int, int] | None:
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    lines = 1
    while True:
        chunk = stream.read(_CHUNK)
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            # The decoder's buffer is at most a partial character carried over: no newlines.
            before = exc.object[: exc.start]
            return lines + _breaks(bytes(before)), exc.object[exc.start]
        if not chunk:
            return None
        lines += _breaks(chunk)


def _breaks(data: bytes) -> int:
    """Line breaks as the reader counts them: LF, CR LF, or a lone CR."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
