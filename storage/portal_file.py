"""Reading a school payment portal's export through the shared CSV layer (`storage.csv_in`).

Portals write UTF-8 or, from a spreadsheet on Windows, Windows-1252, with commas, semicolons or
tabs; the layer decodes and splits the file and refuses rows with control characters or a quote
never closed, which become rejected rows. What the rows mean is `workflows.portal_import`.
"""

from __future__ import annotations

from pathlib import Path

from storage.csv_in import CsvFileError, Problem, open_csv
from workflows.i18n import _
from workflows.portal_import import (
    DELIMITERS,
    ColumnMapping,
    MappingProblem,
    PortalFile,
    open_export,
)

ENCODINGS = ("utf-8", "cp1252")


def read_export(
    source: Path | bytes, mapping: ColumnMapping, *, name: str | None = None
) -> PortalFile:
    """The export's header checked against `mapping` and its rows with their lines.

    Raises MappingProblem when the file can't be used at all (not text, empty, a column missing).
    """
    try:
        with open_csv(source, name=name, encodings=ENCODINGS, delimiters=DELIMITERS) as reader:
            items = list(reader)
            headers, delimiter = reader.header, reader.delimiter
    except CsvFileError as exc:
        raise MappingProblem(str(exc)) from exc
    except OSError as exc:
        raise MappingProblem(
            _("The file can't be read ({error}).", error=exc.strerror or exc)
        ) from exc
    return open_export(
        headers,
        [(r.line, r.values) for r in items if not isinstance(r, Problem)],
        mapping,
        delimiter=delimiter,
        unreadable=[(p.line, p.reason) for p in items if isinstance(p, Problem)],
    )
