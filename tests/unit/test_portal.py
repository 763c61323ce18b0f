import pytest

from workflows.errors import ValidationError
from workflows.portal import check_portal_template, portal_url


def test_portal_url_fills_and_encodes_every_placeholder() -> None:
    url = portal_url(
        "https://pay.example.org/item?ref={invoice_number}&amt={amount}&c={amount_cents}"
        "&sid={student_id}&n={student_name}",
        invoice_number="INV-2026-0007",
        amount_cents=12_350,
        student_id="S 12&3",
        student_name="Ana María",
    )
    assert url == (
        "https://pay.example.org/item?ref=INV-2026-0007&amt=123.50&c=12350"
        "&sid=S%2012%263&n=Ana%20Mar%C3%ADa"
    )


def test_whole_dollars_keep_two_decimals() -> None:
    url = portal_url(
        "https://p.example/{amount}",
        invoice_number="X",
        amount_cents=5000,
        student_id="1",
        student_name="A",
    )
    assert url == "https://p.example/50.00"


@pytest.mark.parametrize(
    "template, message",
    [
        ("ftp://p.example/{invoice_number}", "https://"),
        ("https://p.example/{invoice}", "{invoice}"),
        ("https://p.example/{invoice_number", "broken placeholder"),
    ],
)
def test_bad_templates_are_refused_clearly(template: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        check_portal_template(template)
