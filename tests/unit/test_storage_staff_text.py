"""What storage and the services tell staff (import problems, report text) reads in the staff
language, English unchanged."""

from __future__ import annotations

import pytest

from storage.csv_in import Column, CsvFileError, find_columns, open_csv
from storage.notice_queries import delivery_summary
from storage.roster_files import too_long
from workflows.i18n import staff_reading

COLUMNS = [Column("student_id"), Column("policy"), Column("waiver_reason", required=False)]


def _refusal(header: list[str]) -> str:
    with pytest.raises(CsvFileError) as refused:
        find_columns("enroll.csv", header, COLUMNS)
    return str(refused.value)


def test_a_missing_column_is_refused_in_the_staff_language() -> None:
    english = _refusal(["student_id"])
    assert english == (
        "enroll.csv has no column policy. It needs the columns student_id, policy (and "
        "optionally waiver_reason); its header is: student_id."
    )
    with staff_reading("es"):
        spanish = _refusal(["student_id"])
    with staff_reading("vi"):
        vietnamese = _refusal(["student_id"])
    assert spanish.startswith("enroll.csv no tiene la columna policy.")
    assert "(y opcionalmente waiver_reason)" in spanish
    assert vietnamese.startswith("enroll.csv không có cột policy.")


def test_a_bad_row_is_reported_in_the_staff_language() -> None:
    data = b'student_id,policy\ns1,"open\n'
    with staff_reading("es"), open_csv(data, name="enroll.csv") as reader:
        problems = [str(item) for item in reader]
    assert problems == ["enroll.csv:2: unas comillas abiertas en esta línea nunca se cierran"]
    assert too_long({"email": "x" * 5}, {"email": 3}) == "email is longer than 3 characters"
    with staff_reading("vi"):
        assert too_long({"email": "x" * 5}, {"email": 3}) == "email dài hơn 3 ký tự"


def test_the_delivery_line_reads_in_the_staff_language() -> None:
    assert delivery_summary([]) == "No email notices yet."
    with staff_reading("es"):
        assert delivery_summary([]) == "Aún no hay avisos por correo electrónico."
