"""What a parent's reply says: a payment made, a payment-plan request, a dispute, a request
for a new link to the family's invoice page, a question.

Pure text rules over the new part of a reply, in English and Spanish. Nothing here moves money:
a reported payment only becomes a pending payment that billing staff confirm. The reading is
deliberately cautious — a payment needs a past-tense report ("I mailed", "paid", "pagué"), not
a promise ("I will pay") or a negation ("we haven't paid") — and the confidence says how much
of the report was found (amount, method, check number, date). The invoice numbers a reply
names are read too, so a reply about several invoices can be matched to them.

How well this reads real replies is measured over a labelled corpus (tests/fixtures/replies,
bench/reply_understanding.py); a rule added here should come with corpus replies it fixes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import TypeVar

from workflows.errors import ValidationError
from workflows.money import parse_amount

T = TypeVar("T")
MAX_TEXT = 5_000  # characters read; a parent's new text is short, quoted history is gone
DEFAULT_INVOICE_PREFIX = "INV"  # storage.models.DistrictSettings.invoice_prefix's default


class Intent(StrEnum):
    PAYMENT = "payment"
    PAYMENT_PLAN = "payment_plan"
    DISPUTE = "dispute"
    NEW_LINK = "new_link"  # a fresh link to the family page (the old one expired or was lost)
    QUESTION = "question"
    OTHER = "other"


@dataclass(frozen=True)
class ReportedPayment:
    amount_cents: int | None
    method: str | None  # "check", "cash", "card", "online" (workflows.payments.PaymentMethod)
    check_number: str | None
    paid_on: date | None


@dataclass(frozen=True)
class ReadIntent:
    intent: Intent
    payment: ReportedPayment | None
    confidence: float
    # The invoice numbers the text names, in order and without repeats, as the store keeps
    # them ("INV-000123"); empty when it names none.
    invoice_numbers: tuple[str, ...] = ()


# -- text preparation ------------------------------------------------------------------------


def _fold_char(char: str) -> str:
    if char.isascii():
        return char
    if char in "\u2019\u2018\u02bc":
        return "'"
    if char in "\u201c\u201d":
        return '"'
    base = unicodedata.normalize("NFKD", char)[:1]
    return base if base and base.isascii() else char


def _fold(text: str) -> str:
    """Lower-case without accents, one character for one, so offsets stay aligned."""
    return "".join(_fold_char(char) for char in text.lower())


_ABBREVIATIONS = frozenset(
    {
        "no",
        "nr",
        "num",
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "ck",
        "chk",
        "approx",
        "etc",
        "vs",
        "sra",
        "sr",
        "srta",
        "p",
        "a",
        "m",
    }
)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s)|\n+")


def _sentences(folded: str) -> list[tuple[int, int]]:
    """(start, end) spans of sentences; abbreviations like "no." and "Mar." don't end one."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(folded):
        token = match.group()
        if token.startswith("."):
            word = re.search(r"([a-z]+)$", folded[start : match.start()])
            if word and word.group(1) in _ABBREVIATIONS:
                continue
        end = match.start() if token.startswith("\n") else match.end()
        if folded[start:end].strip():
            spans.append((start, end))
        start = match.end()
    if folded[start:].strip():
        spans.append((start, len(folded)))
    return spans


# -- payment report --------------------------------------------------------------------------

_PAYMENT_OBJECT = (
    r"(?:check|cheque|chek\b|chk\b|ck\b|payment|pmt\b|pymt\b|pymnt\b|money\s+order|money|cash|\$|"
    r"dollars|amount|balance|fee|venmo|zelle|paypal|cash\s?app|"
    r"pago|dinero|efectivo|dolares|cantidad)"
)
# Short forms parents type on phones: "pd", "pmt", "pymt" ("pd online", "pmt sent").
_PMT = r"(?:payment|pmt|pymt|pymnt)"
# Up to 40 characters of the same sentence; a decimal point ("$125.00") doesn't end it.
_SAME_SENTENCE = r"(?:[^.?!\n]|\.(?=\d))"
_PAID = re.compile(
    r"\b(?:paid|pd|have\s+paid|has\s+been\s+paid|was\s+paid|payed|"
    r"made\s+(?:a|the|my|our|an?\s+online)\s+payment|"
    # "I did the online payment", "completed a partial payment"
    r"(?:made|did|completed)\s+(?:a|an|the|my|our)\s+(?:[\w-]+\s+){0,2}?payment(?!\s+plan)|"
    # Payment apps as verbs: "Venmo'd the school $125", "zelled it"
    r"venmo'?e?d|zelle'?e?d|paypal'?e?d|cash\s?app'?e?d|"
    r"cut\s+(?:you\s+|them\s+)?(?:a|the)\s+che(?:ck|que)|"
    rf"{_PMT}'s\s+been\s+(?:made|sent|mailed|submitted|processed|posted)|"
    rf"{_PMT}(?:\s+(?:of|for|in\s+full)\b{_SAME_SENTENCE}{{0,40}}?)?\s+"
    r"(?:(?:was|has\s+been|is|were)\s+)?(?:made|sent|mailed|submitted|dropped\s+off|completed|"
    r"processed|posted|approved|went\s+through)|"
    r"pago\s+(?:fue|ya\s+fue|esta|quedo)\s+(?:aprobado|procesado|aplicado|realizado|hecho)|"
    # "Took care of this today at the front office", "settled the balance"
    r"took\s+care\s+of\s+(?:it|this|that|the\s+(?:bill|invoice|balance|payment|fee))|"
    r"settled\s+(?:it|this|the\s+(?:bill|invoice|balance|account))|"
    r"here\s+is\s+(?:my|our|the)\s+payment|enclosed\s+(?:is|please\s+find)|"
    r"ya\s+pag(?:ue|amos|o)|pague|pagamos|(?:he|hemos|ya\s+(?:esta|fue))\s+pagad[oa]|"
    # "ya les había pagado", "ya quedó pagado", "ya se pagó con el cheque"
    r"(?:(?:le|les|lo|la|se)\s+)?(?:habia|habiamos)\s+pagad[oa]|quedo\s+pagad[oa]|ya\s+se\s+pago|"
    # "ya lo pagué"; "lo pagó mi esposo" (folded, "pagó" reads like "pago": the person after it
    # makes it a past report, not "I pay it")
    r"ya\s+(?:lo|la)\s+pag(?:ue|amos|o)|(?:lo|la)\s+pago\s+(?:mi|su)\s+(?:esposo|esposa|marido|"
    r"mama|papa|abuela|abuelo|hermano|hermana|hijo|hija|tia|tio)|"
    r"se\s+(?:hizo|realizo|efectuo|envio|mando)\s+(?:el|un|mi|nuestro)\s+pago|"
    # "un abono" is a part payment: "hice un abono de $50", "abonamos cuarenta dólares"
    r"(?:hice|hicimos|realice|realizamos|deje|dejamos)\s+(?:un|el|mi|nuestro)\s+abono|"
    r"abone|abonamos|"
    # "ya cubrimos la factura", "liquidé la cuenta", "covered the bill", "cleared the balance"
    r"(?:cubrimos|cubri|liquidamos|liquide|saldamos|salde)\s+"
    r"(?:la|el|esa|ese|esta|este|nuestra|mi)\s+(?:factura|cuenta|deuda|saldo|cobro|cargo)|"
    r"(?:covered|cleared|settled)\s+(?:the|this|that|our|my)\s+(?:bill|invoice|balance|account)|"
    # "Did you get my payment of $50?", "¿recibieron mi pago de cincuenta dólares?": asking
    # whether it arrived says it was sent (a question counts only with an amount or number).
    r"(?:(?:did|have|has)\s+)?(?:you|the\s+office|the\s+school)\s+(?:get|got|receive|received)\s+"
    r"(?:my|our|the)\s+(?:[\w$.,]+\s+){0,2}?(?:payment|pmt|check|cheque|cash|money)|"
    r"(?:(?:usted|ustedes)\s+)?(?:recibieron|recibio|recibiste|les\s+llego|le\s+llego)\s+"
    r"(?:mi|nuestro)\s+(?:pago|cheque)|"
    rf"pago\b{_SAME_SENTENCE}{{0,40}}?\bse\s+(?:realizo|hizo|efectuo|envio|mando)|"
    r"pago\s+(?:realizado|hecho|enviado)|"
    r"(?:hice|hicimos|realice|realizamos|mande|mandamos|envie|enviamos)\s+(?:el|un|mi|nuestro)\s+"
    r"pago)\b"
)
_OBJECT_FOLLOWS = re.compile(r"\W*(?:[\w']+\W+){0,4}?" + _PAYMENT_OBJECT)
_OBJECT_BEFORE = re.compile(
    _PAYMENT_OBJECT + r"\w*\W+(?:[\w']+\W+){0,2}?(?:i|we|yo)\s+$"
    # "El cheque #2290 por $125 lo dejé en la oficina": the object, then a pronoun for it.
    r"|\b(?:cheque|pago|dinero|efectivo)\b(?:\W+[\w$.#]+){0,4}?\W+(?:lo|la|los|las)\s+$"
)
# "The check for $50 is in the mail", "el cheque fue enviado": the object comes first.
_PASSIVE = re.compile(
    r"\b(?:is|was|were|has\s+been|have\s+been|fue|ya\s+fue|esta)\s+(?:in\s+the\s+mail|mailed|"
    r"on\s+(?:its|the|their)\s+way|en\s+camino|handed\s+(?:in|to|over)|turned\s+in|given\s+to|"
    r"left\s+(?:at|with)|"
    r"sent|dropped\s+off|delivered|submitted|deposited|enviad[oa]|entregad[oa]|depositad[oa])\b"
)
_OBJECT_EARLIER = re.compile(_PAYMENT_OBJECT + _SAME_SENTENCE + r"{0,40}$")
# "Check #881 for INV-000482 and check #882 … went out this morning": no auxiliary needed.
_WENT_OUT = re.compile(r"\b(?:went|go(?:es)?)\s+out\b|\bsali(?:o|eron)\b")
# Telegraphic reports: "chk mailed today", "Chk #1402 mailed 3/1", "check in the mail",
# "cash pd to front office", "the check went out in the mail", "el cheque ya va en el correo".
_RUNNING_TOTAL = re.compile(
    r"\b(?:so\s+far|to\s+date|until\s+now|in\s+all\s+so\s+far|hasta\s+ahora|hasta\s+el\s+momento)\b"
)
_TERSE = re.compile(
    rf"\b(?:check|cheque|chk|ck|{_PMT}|money\s+order|cash|efectivo|pago|dinero)\b\.?"
    r"(?:\s*(?:#|no\.?|number|numero)?\s*\d+)?"
    r"(?:\s+(?:for|por|de)\s+\$?\d[\d,.]*(?:\s*(?:dollars|dolares))?)?\s*,?\s*"
    r"(?:(?:is|was|has\s+been|were|got|went)\s+)?(?:(?:already|just)\s+)?"
    r"(?:mailed|sent|pd|dropped\s+off|deposited|submitted|went\s+out|"
    r"left\s+(?:at|with|w\b)|handed\s+(?:in|to|over)|"
    r"turned\s+in|"
    r"enviad[oa]|mandad[oa]|depositad[oa]|entregad[oa]|"
    r"(?:in|into)\s+(?:the\s+|today'?s\s+|this\s+morning'?s\s+|\w+day'?s\s+)?mail)\b"
    r"|\b(?:cheque|pago|dinero)\b(?:\s+\w+){0,2}?\s+(?:ya\s+)?(?:va|iba|esta|fue)\s+(?:en|por)\s+"
    r"(?:el\s+)?correo\b"
)
_HANDED_OVER = re.compile(
    r"\b(?:sent|mailed|dropped\s+off|dropped|left|gave|brought|turned\s+in|handed\s+in|handed|"
    r"submitted|deposited|put|wrote|issued|"
    r"envie|enviamos|mande|mandamos|deje|dejamos|entregue|entregamos|deposite|depositamos|"
    r"di|dimos)\b"
)
_NOT_DONE = re.compile(
    r"(?:\b(?:not|never|nunca|todavia\s+no|aun\s+no)|n't)\W+(?:\w+\W+){0,2}$"
    r"|\bno\s+(?:\w+\s+)?$"
    r"|\b(?:will|would|should|could|can|must|to|be|been|going\s+to|if|may|might|until|till|"
    r"once)\s+(?:(?:i|we|you|he|she|they|it|it's|it\s+is|this\s+is)\s+)?"
    r"(?:have\s+|be\s+|been\s+|fully\s+)?$"
    r"|\b(?:get|gets|getting|got)\s+$"  # "I get paid on the 20th": wages, not a payment
    # "para que lo entregue mañana" (folded like "entregué"), "so he can drop it off"
    r"|\b(?:para\s+que|so\s+(?:that|he|she|they|we|i)(?:\s+can|\s+could|\s+will)?)\s+"
    r"(?:\w+\s+){0,2}$"
)
_NOT_FOR_US = re.compile(
    r"^\W*(?:for\s+(?:the\s+)?(?:insurance|coverage|protection\s+plan)|the\s+insurance|"
    r"(?:a|the|an|your|this)\s+(?:bill|invoice|notice|letter|email|e-mail|message|form))"
)
# "I'll put a check in the mail", "voy a dejar el cheque": a promise a few words before the cue.
_FUTURE_BEFORE = re.compile(
    r"(?:'ll|\bwill|\bgonna|\bgoing\s+to|\bvoy\s+a|\bvamos\s+a|\bva\s+a)\s+"
    r"(?:(?!(?:but|and|because|since|pero|y)\b)[\w$#.]+\s+){0,2}$"
)
# "el seguro que pagamos", "the insurance we paid for": what was paid is the insurance.
_INSURANCE_BEFORE = re.compile(
    r"\b(?:seguro|insurance|cobertura|poliza|protection\s+plan)\s+(?:que\s+|that\s+)?"
    r"(?:(?:we|i|yo|nosotros)\s+)?(?:already\s+|ya\s+)?$"
)
_YOU_BEFORE = re.compile(r"(?<!thank )\b(?:you|they|school|district|usted|ustedes)\W+$")

_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)"
_AMOUNT = re.compile(
    r"(?<![\w#.,$])\$\s?(?P<a>" + _NUMBER + r")(?P<af>\.\d{1,2})?(?![\d,]*\d)"
    r"|(?<![\w#$.,/:])(?P<b>" + _NUMBER + r")(?P<bf>\.\d{2})?\s*(?:\$|dollars?\b|dolares?\b|"
    r"usd\b|bucks\b)"
    r"|\busd\s?(?P<c>" + _NUMBER + r")(?P<cf>\.\d{2})?\b"
    r"|(?<![\w#$.,/:])(?P<d>" + _NUMBER + r")(?P<df>\.\d{2})(?![\d/.])"
)
_CHECK_NUMBER = re.compile(
    r"\b(?:check|cheque|chek|ck|chk)\.?"
    r"(?:,?\s*\(?(?:#|no\.?|n[o°º]\.?|number|num\.?|nbr|numero))?\s*#?\s*"
    r"(?P<n>\d{2,12})\b(?!\s*(?:dollars?|dolares?|usd|\$)|\.\d|/)"
)
_NUMBER_MARK = re.compile(
    r"(?:#|\bn(?:o|um|umber|umero|ro)\b\.?)\s*#?\s*(?P<n>\d{2,7})\b"
    r"(?![-/.]\d|\s*(?:dollars?|dolares?|usd|\$))"
)
_OTHER_NUMBER_BEFORE = re.compile(
    r"\b(?:receipt|confirmation|conf|order|transaction|reference|ref|invoice|inv|factura|recibo|"
    r"confirmacion|phone|cell|tel|telefono|account|acct|case|ticket|tracking|apt|suite|unit|box|"
    r"room|student|id|asset|tag|serial)\W*(?:\w+\W+)?$"
)
# Amounts in words, English and Spanish, before "dollars"/"dólares" (text is folded).
_NUMBER_WORDS = {
    word: value
    for value, words in enumerate(
        [
            "zero cero",
            "one un uno una",
            "two dos",
            "three tres",
            "four cuatro",
            "five cinco",
            "six seis",
            "seven siete",
            "eight ocho",
            "nine nueve",
            "ten diez",
            "eleven once",
            "twelve doce",
            "thirteen trece",
            "fourteen catorce",
            "fifteen quince",
            "sixteen dieciseis",
            "seventeen diecisiete",
            "eighteen dieciocho",
            "nineteen diecinueve",
        ]
    )
    for word in words.split()
} | {
    word: value
    for value, words in [
        (20, "twenty veinte"),
        (21, "veintiuno veintiun"),
        (22, "veintidos"),
        (23, "veintitres"),
        (24, "veinticuatro"),
        (25, "veinticinco"),
        (26, "veintiseis"),
        (27, "veintisiete"),
        (28, "veintiocho"),
        (29, "veintinueve"),
        (30, "thirty treinta"),
        (40, "forty fourty cuarenta"),
        (50, "fifty cincuenta"),
        (60, "sixty sesenta"),
        (70, "seventy setenta"),
        (80, "eighty ochenta"),
        (90, "ninety noventa"),
        (100, "cien ciento"),
        (200, "doscientos"),
        (300, "trescientos"),
        (400, "cuatrocientos"),
        (500, "quinientos"),
        (600, "seiscientos"),
        (700, "setecientos"),
        (800, "ochocientos"),
        (900, "novecientos"),
    ]
    for word in words.split()
}
_NUMBER_WORD = (
    r"(?:"
    + "|".join(sorted((*_NUMBER_WORDS, "hundred", "thousand", "mil"), key=len, reverse=True))
    + r"|a(?=\s+(?:hundred|thousand)))"
)
_WORD_AMOUNT = re.compile(
    rf"\b(?P<words>{_NUMBER_WORD}(?:(?:\s+|-)(?:(?:and|y)\s+)?{_NUMBER_WORD})*)\s+"
    r"(?:dollars?|dolares?|bucks)\b"
)
# "Paid twenty five today": a number in words right after the verb is the amount, unless it
# counts something else ("paid two invoices", "pagué tres meses").
_PAID_WORD_AMOUNT = re.compile(
    rf"\b(?:paid|pd|pague|pagamos|abone|abonamos)\s+(?P<words>{_NUMBER_WORD}"
    rf"(?:(?:\s+|-)(?:(?:and|y)\s+)?{_NUMBER_WORD})*)\b"
    r"(?!\s+(?:of|days?|weeks?|months?|years?|times?|kids?|children|invoices?|bills?|payments?|"
    r"installments?|hijos?|dias|semanas|meses|anos|veces|facturas|pagos|cuotas|de\s+los))"
)
# "..., 125" / "for 125" at the end of a sentence: a bare number closing a payment report.
_BARE_AMOUNT = re.compile(
    r"(?:[,:]|\s-|\bfor|\bpor)\s+(?P<n>\d{1,4})(?P<f>\.\d{2})?\s*(?=$|[.!;)\n])"
)
_METHODS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "check",
        re.compile(
            r"\bcheques?\b|\bmoney\s+order\b|\b(?:ck|chk|chek)\b|"
            r"\bchecks?\s*\(?\s*(?:#|no\b|number|num\b|nbr|for\b|\d)|"
            r"\bchecks?\s+(?:is\s+|was\s+)?(?:in|into)\s+the\s+mail\b|"
            r"\b(?:a|the|my|our|by|with|via|one|personal|cashier'?s|paper|this|that|in|per|"
            r"mailed|sent|wrote|written|send|mail)\s+checks?\b"
        ),
    ),
    (
        "online",
        re.compile(
            r"\bonline\b|\bon-?\s?line\b|\bportal\b|\bpaypal\b|\bweb\s?site\b|\bweb\s?page\b|"
            r"\bthe\s+link\b|\ben\s+linea\b|\bpor\s+internet\b|\b(?:pagina|sitio)\s+web\b|"
            r"\bvenmo\b|\bzelle\b|\bcash\s?app\b"
        ),
    ),
    ("cash", re.compile(r"\bcash\b(?!\s?app)|\befectivo\b")),
    (
        "card",
        re.compile(
            r"\b(?:credit|debit)\b|\bcard\b|\bvisa\b|\bmaster\s?card\b|\bamex\b|"
            r"\bamerican\s+express\b|\btarjeta\b|\bcredito\b|\bdebito\b"
        ),
    ),
)

# -- dates -------------------------------------------------------------------------------------

_WEEKDAYS = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
    "lunes": 0,
    "martes": 1,
    "miercoles": 2,
    "jueves": 3,
    "viernes": 4,
    "sabado": 5,
    "domingo": 6,
}
_MONTHS = {
    "january": 1,
    "jan": 1,
    "february": 2,
    "feb": 2,
    "march": 3,
    "mar": 3,
    "april": 4,
    "apr": 4,
    "may": 5,
    "june": 6,
    "jun": 6,
    "july": 7,
    "jul": 7,
    "august": 8,
    "aug": 8,
    "september": 9,
    "sept": 9,
    "sep": 9,
    "october": 10,
    "oct": 10,
    "november": 11,
    "nov": 11,
    "december": 12,
    "dec": 12,
    "enero": 1,
    "febrero": 2,
    "marzo": 3,
    "abril": 4,
    "mayo": 5,
    "junio": 6,
    "julio": 7,
    "agosto": 8,
    "septiembre": 9,
    "setiembre": 9,
    "octubre": 10,
    "noviembre": 11,
    "diciembre": 12,
}
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_RELATIVE = re.compile(
    r"\b(?P<before>day\s+before\s+yesterday|anteayer|antier|antes\s+de\s+ayer)\b"
    r"|\b(?P<yesterday>yesterday|last\s+night|ayer|anoche)\b"
    r"|\b(?P<today>today|this\s+(?:morning|afternoon)|earlier\s+today|hoy|esta\s+(?:manana|tarde))\b"
)
_WEEKDAY = re.compile(r"\b(?P<w>" + "|".join(_WEEKDAYS) + r")\b")
_ISO_DATE = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")
_SLASH_DATE = re.compile(
    r"(?<![\d/$#.,])(?P<a>\d{1,2})/(?P<b>\d{1,2})(?:/(?P<y>\d{4}|\d{2}))?(?![\d/])"
)
_MONTH_DAY = re.compile(
    r"\b(?P<m>" + _MONTH_NAMES + r")\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y>\d{4}))?"
)
_DAY_MONTH = re.compile(
    r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?:de\s+|of\s+)?(?P<m>" + _MONTH_NAMES + r")\b"
    r"(?:\.?,?\s+(?:de\s+|del\s+)?(?P<y>\d{4}))?"
)
_ORDINAL_DAY = re.compile(
    r"\bthe\s+(?P<d>\d{1,2})(?:st|nd|rd|th)\b|\bel\s+dia\s+(?P<e>\d{1,2})\b(?!\s*[/$])"
)

# -- other intents -------------------------------------------------------------------------------

_PLAN = re.compile(
    r"\bpayment\s+plans?\b|\bpay(?:ment)?s?\s+(?:it\s+)?in\s+(?:monthly\s+)?install?ments?\b|"
    r"\binstall?ments?\b|\bmonthly\s+payments?\b|\bpartial\s+payments?\b|"
    r"\bpay\s+(?:it\s+|this\s+|that\s+|the\s+\w+\s+)?(?:off\s+)?(?:over|in)\s+"
    r"(?:\d+|two|three|four|five|six|several|a\s+few)\s+"
    r"(?:months|payments|parts|weeks|paychecks)\b|"
    r"\bpay\s+(?:you\s+)?(?:\$\s?\d[\d,]*(?:\.\d{2})?|\d[\d,]*(?:\.\d{2})?\s*dollars)\s+"
    r"(?:a|per|each|every)\s+(?:month|week|paycheck|payday)\b|"
    r"\bsplit\s+(?:it|the\s+(?:payment|cost|bill|balance|amount))\b|"
    r"\bpay\s+(?:a\s+little|some)\s+(?:at\s+a\s+time|each\s+month|every\s+month)\b|"
    r"\bplan\s+de\s+pagos?\b|\bpagos?\s+mensuales\b|\ben\s+(?:cuotas|plazos|partes)\b|"
    r"\ba\s+plazos\b|\bmensualidades\b|\bpoco\s+a\s+poco\b|"
    r"\bpagar\s+(?:\$\s?\d[\d,]*(?:\.\d{2})?|\d+\s*dolares)\s+(?:al|por|cada)\s+mes\b|"
    # An amount with a period: "$25 a month", "$10 every two weeks", "$20 cada quincena".
    r"(?:\$\s?\d[\d,]*(?:\.\d{2})?|\b\d+\s*(?:dollars|dolares|bucks))\s+(?:a|per|each|every|"
    r"every\s+other|al|por|cada)\s+(?:two\s+weeks|other\s+week|month|week|paycheck|payday|"
    r"mes|semana|quincena)\b|"
    # "half now and half next month", "$60 now and $65 next month", "la mitad ahora"
    r"(?:\b(?:half|some|part)|\$\s?\d[\d,.]*|\b\d+\s*dollars)\s+(?:now|today|this\s+month)\s+"
    r"and\s+"
    r"(?:the\s+(?:rest|remainder|other\s+half)|half|\$\s?\d[\d,.]*|\d+\s*dollars)\s+"
    r"(?:next|in|on|at|by|later)\b|\bla\s+mitad\s+ahora\b|"
    # "can I make payments", "hacer pagos pequeños cada mes", "a little at a time"
    r"\b(?:make|do|set\s+up|arrange)\s+(?:small\s+|monthly\s+|weekly\s+)?payments\b|"
    r"\bhacer\s+pagos\b|\bpagos\s+(?:pequenos|chicos|semanales|quincenales)\b|"
    r"\ba\s+little\s+at\s+a\s+time\b|"
    r"\bpay\s+(?:it|this|that)?\s*(?:off\s+)?over\s+(?:the\s+)?(?:next\s+)?(?:few|couple(?:\s+of)?|"
    r"several|\d+|two|three|four|five|six)\s+(?:months|weeks|paychecks)\b|"
    r"\b(?:arreglo|acuerdo|convenio)\s+de\s+pagos?\b|\bpayment\s+arrangements?\b|"
    # "in 5 payments of $25", "en dos partes"
    r"\b(?:in|into)\s+(?:\d+|two|three|four|five|six|several|a\s+few)\s+"
    r"(?:payments|installments|parts)\b|"
    # "$40 on the 1st of every month", "la mitad este mes y la otra mitad en abril"
    r"(?:\$\s?\d[\d,]*(?:\.\d{2})?|\b\d+\s*(?:dollars|dolares))(?:\s+[\w']+){0,5}?\s+(?:of\s+)?"
    r"(?:every|each|cada)\s+(?:two\s+weeks|other\s+week|month|week|paycheck|payday|mes|semana|"
    r"quincena|dos\s+semanas|quince\s+dias)\b|\bla\s+otra\s+mitad\b|"
    # "$25 monthly", "auto pay of $25 monthly", "$30 mensuales"
    r"(?:\$\s?\d[\d,]*(?:\.\d{2})?|\b\d+\s*(?:dollars|dolares))\s+(?:monthly|weekly|bi-?weekly|"
    r"mensuales?|semanales?|quincenales?)\b|"
    # "pay half today", "pagar una parte ahora y otra parte después"
    r"\bpay(?:ing)?\s+(?:half|part|some)\s+(?:of\s+it\s+)?(?:now|today|this\s+week|this\s+month)\b|"
    r"\buna\s+parte\s+(?:ahora|hoy)\b|\botra\s+parte\s+(?:despues|luego|el\s+proximo)\b|"
    # "$40 is going in with Jaden tomorrow and the balance on the 15th"
    r"(?:\$\s?\d[\d,.]*|\b\d+\s*dollars)(?:\s+[\w']+){0,5}?\s+(?:today|tomorrow|this\s+week)\s+"
    r"and\s+the\s+(?:rest|remainder|balance)\s+(?:next|in|on|at|by|later)\b|"
    r"\ben\s+(?:\d+|dos|tres|cuatro|cinco|seis|varias|varios)\s+(?:partes|pagos|cuotas|plazos)\b"
)
_DISPUTE = re.compile(
    r"\bnot\s+(?:our|my|his|her|their|the\s+student'?s|(?:my|our)\s+(?:son|daughter|child|kid)'?s)"
    r"\s+fault\b|"
    r"\b(?:shouldn'?t|should\s+not|won'?t|will\s+not|refuse\s+to|not\s+going\s+to)\s+"
    r"(?:have\s+to\s+)?pay\b|"
    r"\b(?:shouldn'?t|should\s+not)\s+be\s+(?:charged|responsible|billed)\b|"
    r"\bnot\s+(?:be\s+)?responsible\b|\balready\s+(?:broken|damaged|cracked)\b|"
    r"\b(?:came|arrived|was\s+given\s+to\s+(?:us|him|her))\s+(?:already\s+)?"
    r"(?:broken|damaged|cracked)\b|\bwas\s+like\s+that\s+when\b|"
    r"\b(?:i|we)\s+(?:dispute|contest|disagree|object)\b|\bdispute\s+(?:this|the|these)\b|"
    r"\bdisputing\b|"
    r"\bnot\s+aware\s+of\s+any\s+damage\b|"
    r"\b(?:was|were|is|must\s+have\s+been|must\s+be)\s+(?:already\s+)?(?:defective|faulty)\b|"
    r"\b(?:was|were)\s+never\s+(?:given|issued|assigned)\b|"
    r"\bnunca\s+(?:se\s+)?(?:la|lo|le)\s+(?:dieron|entregaron|asignaron)\b|"
    r"\b(?:their|her|his)\s+family\s+should\s+pay\b|"
    r"\b(?:wasn'?t|isn'?t|was\s+not|is\s+not)\s+(?:our|my|his|her|their)\s+fault\b|"
    r"\bno\s+(?:tuvo|tiene|tuvimos|tenemos|tuve|tengo)\s+(?:la\s+)?culpa\b|\bdesde\s+antes\b|"
    r"\b(?:from|since)\s+(?:the\s+)?(?:very\s+)?(?:first\s+day|day\s+one)\b|"
    r"\bwhy\s+(?:do|should|would)\s+(?:i|we)\s+(?:have\s+to\s+)?pay\b|"
    r"\bpor\s+que\s+(?:tengo|tenemos|debo|debemos)\s+que\s+pagar\b|"
    r"\b(?:don'?t|do\s+not)\s+(?:believe|think|feel)\s+(?:we|i|he|she|they)\s+should\s+"
    r"(?:be\s+(?:responsible|charged|billed)|have\s+to\s+pay|pay)\b|"
    r"\bno\s+(?:creo\s+que\s+)?(?:es|sea)\s+justo\b|"
    r"\bpor\s+que\s+(?:me|nos)\s+(?:cobran|estan\s+cobrando|cobraron|quieren\s+cobrar)\b|"
    r"\b(?:i'?m|we'?re|i\s+am|we\s+are)\s+not\s+(?:going\s+to\s+)?pay(?:ing)?\s+(?:for\s+)?"
    r"(?:this|that|it)\b|"
    r"\b(?:district|school|insurance)\s+should\s+(?:cover|pay)\b|"
    r"\bdon'?t\s+think\s+(?:this|that|it)\s+is\s+(?:right|fair)\b|"
    r"\bwas\s+(?:already\s+)?there\s+when\s+(?:she|he|we|they|i)\s+(?:got|received|picked)\b|"
    r"\b(?:didn'?t|did\s+not|never)\s+do\s+(?:it|this|that)\b|"
    r"\bno\s+(?:pagaremos|pagare)\b|\bdefecto\s+de\s+fabrica\b|"
    r"\bno\s+(?:lo\s+|la\s+)?(?:rompimos|danamos|tiramos)\b|\bya\s+estaba\s+asi\b|"
    r"\b(?:contest|appeal)\s+(?:this|the|these)\s+(?:charge|fee|invoice|bill)|"
    r"\b(?:not|isn'?t|is\s+not)\s+fair\b|\bunfair\b|"
    r"\b(?:didn'?t|did\s+not|never)\s+(?:break|broke|damage|damaged|drop|dropped|lose|lost)\b|"
    r"\bwasn'?t\s+(?:us|him|her|me|them)\b|\bwrong\s+(?:student|charge|amount|person|family)\b|"
    r"\bcharged\s+(?:twice|by\s+mistake|in\s+error)\b|\bwhy\s+(?:am\s+i|are\s+we|is\s+(?:my|our))\s+"
    r"(?:\w+\s+)?(?:being\s+)?(?:charged|billed)\b|\bshould\s+be\s+covered\b|"
    r"\bno\s+es\s+justo\b|\binjust[oa]\b|\bno\s+(?:fue|es)\s+(?:su|mi|nuestra)\s+culpa\b|"
    r"\bya\s+(?:estaba|venia|vino|llego)\s+(?:roto|rota|danad[oa]|quebrad[oa]|rajad[oa])\b|"
    r"\bno\s+(?:vamos|voy)\s+a\s+pagar\b|"
    r"\bno\s+(?:debemos|deberiamos|debo|deberia|tenemos\s+que|tengo\s+que)\s+pagar\b|"
    r"\bno\s+(?:estoy|estamos)\s+de\s+acuerdo\b|\bdisput(?:o|amos)\b|"
    r"\bno\s+(?:lo|la)\s+rompi(?:o|mos)?\b|\bel\s+seguro\s+(?:debe|deberia)\s+cubrir"
)
# Someone other than the student did it: "my other son broke it", "his older brother had the
# computer", "it was her cousin", "another kid knocked it off", "fue su hermano el que la rompió".
_SOMEONE_ELSE = (
    r"(?:(?:my|our|his|her|their)\s+(?:son|daughter|child|kid)'?s\s+(?:friend|classmate|cousin)|"
    r"(?:my|our|his|her|their)\s+(?:other|older|younger|twin|step)\s*(?:son|daughter|child|kid|"
    r"brother|sister)|(?:his|her|their)\s+(?:(?:older|younger|big|little|baby)\s+)?(?:brother|"
    r"sister|cousin|friend|sibling)|(?:my|our)\s+(?:nephew|niece)|"
    r"another\s+(?:kid|child|student|boy|girl|classmate)|someone\s+else|somebody\s+else|"
    r"(?:a|one|some)\s+(?:boy|girl|kid|student|classmate)s?\b(?:\s+in\s+(?:his|her|their|the)\s+"
    r"class)?|other\s+(?:kid|student|child|boy|girl)s?|"
    r"(?:mi|su|sus)\s+(?:otro|otra)\s+(?:hijo|hija|nino|nina)|"
    r"(?:su|mi)\s+(?:hermano|hermana|primo|prima|amigo|amiga)(?:\s+(?:mayor|menor))?|"
    r"otro\s+(?:nino|alumno|estudiante|companero|muchacho)|"
    r"otra\s+(?:nina|alumna|estudiante|companera|muchacha)|alguien\s+mas|"
    r"un[a]?\s+(?:companer[oa]|nin[oa]|alumn[oa]|estudiante|muchach[oa])|"
    r"(?:mi|su)\s+(?:sobrin[oa]|tio|tia))"
)
_DAMAGED_IT = (
    r"(?:broke|broken|damaged|dropped|threw|thrown|cracked|knocked|grabbed|stepped\s+on|sat\s+on|"
    r"borrowed|had\s+(?:the|it|his|her)|was\s+using|did\s+(?:it|this)|pushed|spilled|"
    r"rompio|rompieron|quebro|tiro|tumbo|estrello|quito|dano|empujo|empujaron|la\s+tenia|"
    r"lo\s+tenia)"
)
_BLAME = re.compile(
    rf"\b{_SOMEONE_ELSE}\b(?:\s+\w+){{0,4}}?\s+(?:(?:se|la|lo|le)\s+)*{_DAMAGED_IT}\b"
    rf"|\b(?:broken|damaged|dropped|cracked|done)\s+by\s+{_SOMEONE_ELSE}\b"
    # Spanish puts the subject after the verb: "la rompió un compañero de mi hijo".
    r"|\b(?:la|lo)\s+(?:rompio|quebro|tiro|tumbo|estrello|dano)\s+(?:\w+\s+)?"
    rf"{_SOMEONE_ELSE}\b"
    rf"|\b(?:it\s+was|fue)\s+{_SOMEONE_ELSE}\b|\b(?:it\s+was|fue)\s+(?:my|mi)\s+"
    r"(?:nephew|niece|sobrin[oa])\b"
    r"|\bnot\s+the\s+one\s+(?:who|that)\s+(?:broke|damaged|dropped|did)\b"
    rf"|\b{_SOMEONE_ELSE}\s+was\s+the\s+one\b"
    r"|\b(?:mi|su)\s+(?:hijo|hija)\s+no\s+fue\b|\bno\s+fue\s+(?:mi|su)\s+(?:hijo|hija)\b"
)
_OWN_FAULT = re.compile(
    r"\b(?:it'?s|it\s+is|it\s+was|that'?s)\s+(?:our|my)\s+(?:fault|responsibility)\b|"
    r"\b(?:es|fue)\s+(?:nuestra|mi)\s+culpa\b|\bwe'?ll\s+cover\s+it\b"
)
_CHARGE = r"(?:charges?|fees?|bill|invoice|balance|cobros?|cargos?|factura|multa|deuda)"
# "Please remove the charge", "take it off", "I want this charge removed", "quiten el cargo".
_REMOVE = re.compile(
    r"\b(?:remove|waive|cancel|drop|reverse|delete|erase)\s+(?:(?:the|this|that|these|our|my|his|"
    rf"her|its)\s+)?(?:\w+\s+)?{_CHARGE}\b"
    r"|\bremove\s+(?:it|this|that)\s+from\b"
    rf"|\b{_CHARGE}\s+(?:to\s+be\s+|be\s+)?(?:removed|waived|cancell?ed|dropped|taken\s+off|"
    r"reversed|erased)\b"
    r"|\btake\s+(?:it|this|that|the\s+(?:charge|fee|bill))\s+off\b"
    r"|\b(?:waive|forgive)\s+(?:it|this|that)\b|\b(?:don'?t|do\s+not)\s+charge\s+(?:us|me)\b"
    r"|\bno\s+(?:nos|me)\s+(?:cobren|cobre|deben\s+cobrar|deberian\s+cobrar)\b"
    r"|\bno\s+nos\s+(?:hagan|obliguen\s+a)\s+pagar\b"
    r"|\b(?:don'?t|do\s+not)\s+make\s+(?:us|me)\s+pay\b"
    r"|\b(?:be|been|get|gets)\s+voided\b|\bvoid\s+(?:it|this|the\s+(?:charge|invoice|bill))\b"
    r"|\b(?:quiten|quitar|quite|quitarnos|retiren|retirar|retire|cancelen|cancelar|eliminen|"
    r"eliminar|borren|anulen|anular)\s+(?:(?:el|este|ese|la|esta|los|las)\s+)?"
    r"(?:cargo|cobro|factura|multa|deuda)s?\b"
)
_LINK = r"(?:link|enlace|vinculo|liga)s?"
_LINK_ES = r"(?:enlace|vinculo|link|liga)"
_FOR = r"(?:payment\s+|invoice\s+)?"
_NEW_LINK = re.compile(
    "|".join(
        [
            # "send me a new link", "can I get another link", "please resend the link"
            rf"\b(?:new|another|fresh|updated|different|working)\s+{_FOR}{_LINK}\b",
            rf"\bre-?send\s+(?:me\s+|us\s+)?(?:the|a|my|our|that)\s+{_FOR}{_LINK}\b",
            rf"\bsend\s+(?:me|us)\s+(?:the|a|my|our)\s+{_FOR}{_LINK}\b",
            # "the link expired", "the link doesn't work", "link is broken", "an expired link"
            rf"\b{_LINK}\s+(?:(?:has|had|is|was|seems|appears)\s+(?:to\s+be\s+)?)?"
            r"(?:expired|broken|dead|invalid)\b",
            rf"\b{_LINK}\s+(?:(?:does|did|do|is|was|will|would)\s*(?:not|n't)\s+|not\s+|"
            r"won'?t\s+|wont\s+|doesnt\s+|isn't\s+|can'?t\s+|stopped\s+)"
            r"(?:work(?:s|ed|ing)?|open(?:s|ing)?|load(?:s|ing)?)\b",
            rf"\b(?:expired|broken|dead|invalid)\s+{_FOR}{_LINK}\b",
            # "I clicked the link and it said it had expired"
            rf"\b{_LINK}\b[^.?!\n]{{0,40}}\b(?:expired|expiro|vencio|caduco|vencid[oa]|"
            r"caducad[oa]|expirad[oa])\b",
            r"\b(?:can't|cannot|can\s+not|couldn't|could\s+not|unable\s+to)\s+"
            rf"(?:open|find|use|get\s+into)\s+(?:the|my|your|that)\s+{_LINK}\b",
            # "the link says page not found", "keeps timing out", "me manda a una página en blanco"
            rf"\b{_LINK}\b[^.?!\n]{{0,40}}\b(?:isn'?t|is\s+not|doesn'?t|does\s+not|won'?t|wont|"
            r"not)\s+(?:work|open|load)(?:s|ing)?\b",
            r"\bno\s+(?:me|nos)\s+deja\s+(?:pagar|entrar|abrir)\s+(?:en|con|desde)\s+(?:el|la)\s+"
            rf"{_LINK_ES}\b",
            rf"\b{_LINK}\s+that\s+(?:works|work|actually\s+works)\b",
            # "can I get the link texted to me", "text me the link"
            rf"\b{_LINK}\s+(?:texted|sent|emailed|re-?sent)\s+to\s+(?:me|us)\b",
            rf"\b(?:text|email)\s+(?:me|us)\s+(?:the|a|my|our)\s+{_FOR}{_LINK}\b",
            # "the link asks for a code I don't have", "el enlace me pide una contraseña"
            rf"\b{_LINK}\b[^.?!\n]{{0,30}}\b(?:asks?\s+(?:me\s+)?for|pide|requires?|wants?)\s+"
            r"(?:a|an|una|un|my|mi)\s+(?:code|password|pin|login|contrasena|codigo|clave)\b",
            r"\b(?:page|site|website|portal|link)\s+won'?t\s+let\s+me\s+(?:in|pay|open\s+it)\b",
            rf"\b{_LINK}\b[^.?!\n]{{0,40}}\b(?:no\s+longer\s+(?:valid|active|works?|working)|"
            r"goes\s+nowhere|leads\s+nowhere|not\s+found|error|invalid|"
            r"time[sd]?\s+out|timing\s+out|404|en\s+blanco|no\s+(?:carga|abre|funciona|sirve)|"
            r"won'?t\s+load)\b",
            # "can u send the link again", "can you resend it", "me lo pueden mandar otra vez"
            r"\b(?:send|email|text)\s+(?:me\s+|us\s+)?(?:the|a|my|that)\s+"
            rf"{_FOR}{_LINK}\s+again\b",
            rf"\b{_LINK}\b[^.?!\n]{{0,40}}\bre-?send\b",
            # "I never got a link", "no me llegó ningún enlace"
            r"\b(?:never|didn'?t|did\s+not|haven'?t)\s+(?:got|get|gotten|received?)\s+"
            rf"(?:a|the|any)\s+{_FOR}{_LINK}\b",
            r"\bno\s+(?:me\s+|nos\s+)?(?:llego|ha\s+llegado|recibi|recibimos)\s+"
            rf"(?:ningun|el|un|una|la)\s+{_LINK_ES}\b",
            # "nuevo enlace", "otro enlace", "el enlace no funciona / expiró / venció"
            rf"\b(?:nuevo|nueva|otro|otra)\s+{_LINK_ES}\b",
            rf"\b{_LINK_ES}\s+(?:nuevo|nueva)\b",
            rf"\b{_LINK_ES}\s+(?:ya\s+)?(?:no\s+(?:funciona|sirve|abre|jala)|"
            r"(?:ha\s+|ya\s+)?(?:expiro|vencio|caduco)|"
            r"(?:esta|estaba)\s+(?:vencid[oa]|caducad[oa]|expirad[oa]|rot[oa]))\b",
            r"\bno\s+(?:puedo|podemos|pude|pudimos)\s+(?:abrir|usar|encontrar|entrar\s+(?:a|en))"
            rf"\s+(?:el|la|al|su)\s+{_LINK_ES}\b",
            r"\b(?:reenvi|mand|envi)(?:e|en|ar|arme|arnos|enme|eme)\s+(?:(?:me|nos)\s+)?"
            rf"(?:el|un|otro|la|una|otra|mi)\s+{_LINK_ES}\b",
        ]
    )
)
# "I don't need a new link", "no necesito otro enlace": not a request.
_NO_LINK_WANTED = re.compile(
    rf"\b(?:don't|do\s+not|no)\s+(?:need|want)\s+(?:a\s+|another\s+|the\s+|any\s+)?(?:new\s+)?{_LINK}"
    r"|\bno\s+(?:necesito|necesitamos|quiero|queremos)\s+(?:otr[oa]\s+|un[a]?\s+|el\s+|la\s+)?"
    rf"(?:nuev[oa]\s+)?{_LINK_ES}"
)
# "invoice #482", "invoice number 482", "factura número 517" (folded: "numero").
_INVOICE_WORD = re.compile(
    r"\b(?:invoice|factura)\s*(?:#|(?:number|no\.|num\.?|numero|nro\.?)\s*#?)\s*"
    r"(?P<n>[0-9]{1,12})(?![0-9]|-[0-9])",
    re.IGNORECASE,
)
# "Will pay on the 15th", "Should be in a couple weeks": the subject left out of a statement,
# not a question (those put a subject after the verb: "will you", "can I").
_NO_SUBJECT = re.compile(
    # "Have a good day": a closing, not a question
    r"^\W*have\s+a\s+(?:good|great|nice|blessed|wonderful)\b|"
    r"^\W*(?:will|would|should|could|can|may|shall|have|has|do|does|did|is|are|am)\s+"
    r"(?!(?:i|you|we|it|this|that|there|the|my|our|he|she|they|someone|anyone|somebody|anybody|"
    r"these|those|your|his|her|their|a|an)\b)"
)
_WH_QUESTION = re.compile(
    r"^\W*(?:what|when|where|why|how|who|which|que|cuando|donde|por\s+que|como|cuanto|cuanta|"
    r"cuantos|cuantas|quien|cual)\b"
)
_QUESTION_START = re.compile(
    r"^\W*(?:what|when|where|why|how|who|which|can|could|would|will|is|are|do|does|did|should|"
    r"may|shall|am|have|has|que|cuando|donde|por\s+que|como|cuanto|cuanta|cuantos|cuantas|"
    r"quien|cual|puedo|puede|pueden|podria|podrian|hay|debo|tengo\s+que)\b"
)
_QUESTION_PHRASE = re.compile(
    r"\b(?:i\s+was\s+wondering|i\s+wonder|please\s+(?:let\s+me\s+know|advise|explain|confirm)|"
    r"i\s+(?:would|'d)\s+like\s+to\s+know|i\s+(?:want|need)\s+to\s+know|"
    r"can\s+you\s+(?:tell|explain|confirm)|i\s+(?:have|had)\s+a\s+question|"
    r"quisiera\s+saber|me\s+gustaria\s+saber|necesito\s+saber|me\s+pueden\s+decir|"
    r"tengo\s+una\s+pregunta|favor\s+de\s+(?:confirmar|explicar|informar))\b"
)
_SPANISH_HINTS = re.compile(
    r"\b(?:el|la|los|las|de|que|por|para|con|pague|pagamos|cheque|efectivo|gracias|hola|"
    r"ayer|hoy|lunes|martes|miercoles|jueves|viernes|usted|nosotros|hijo|hija)\b"
)
_ENGLISH_HINTS = re.compile(
    r"\b(?:the|and|for|with|paid|check|cash|thanks|hello|yesterday|today|you|we|my|son|daughter)\b"
)


# -- reading ------------------------------------------------------------------------------------


def read_intent(
    text: str, *, today: date, invoice_prefix: str = DEFAULT_INVOICE_PREFIX
) -> ReadIntent:
    """Read one reply's new text (quoted history already removed).

    `invoice_prefix` is the district's (settings.invoice_prefix): the invoice numbers the text
    names come back in `invoice_numbers`, and are not read as amounts or check numbers.
    """
    original = text[:MAX_TEXT]
    folded = _fold(original)
    if not folded.strip():
        return ReadIntent(Intent.OTHER, None, 0.0)
    numbers: list[str] = []
    for match in _invoice_references(folded, invoice_prefix):
        numbers.append(f"{invoice_prefix}-{int(match.group('n')):06d}")
        # Blanked so the invoice's number is never read as an amount or a check number.
        folded = (
            folded[: match.start()] + " " * (match.end() - match.start()) + folded[match.end() :]
        )
    invoices = tuple(dict.fromkeys(numbers))
    read = _read(folded, today=today)
    return replace(read, invoice_numbers=invoices) if invoices else read


def invoice_numbers_in(text: str, prefix: str = DEFAULT_INVOICE_PREFIX) -> tuple[str, ...]:
    """Invoice numbers a text names, in order, as the store keeps them ("INV-000123")."""
    references = _invoice_references(_fold(text), prefix)
    return tuple(dict.fromkeys(f"{prefix}-{int(m.group('n')):06d}" for m in references))


def _invoice_references(text: str, prefix: str) -> list[re.Match[str]]:
    """Where the (folded) text names an invoice: the prefix and its number ("INV-000123", "inv 123",
    "INV#123"), or the word with a number sign ("invoice #123", "factura número 123")."""
    patterns = [_INVOICE_WORD]
    if prefix:
        patterns.append(_prefix_pattern(_fold(prefix)))
    found: list[re.Match[str]] = []
    for match in sorted(
        (match for pattern in patterns for match in pattern.finditer(text)),
        key=lambda match: match.start(),
    ):
        if not found or match.start() >= found[-1].end():
            found.append(match)
    return found


_PREFIX_PATTERNS: dict[str, re.Pattern[str]] = {}


def _prefix_pattern(prefix: str) -> re.Pattern[str]:
    # As the subject is read (bot/mail/ingest.py); a number followed by "-<digits>" belongs to
    # another scheme ("INV-2026-0042") and is left alone. One district has one prefix, so the
    # cache stays tiny.
    pattern = _PREFIX_PATTERNS.get(prefix)
    if pattern is None:
        if len(_PREFIX_PATTERNS) > 32:
            _PREFIX_PATTERNS.clear()
        pattern = _PREFIX_PATTERNS[prefix] = re.compile(
            rf"(?<![A-Za-z0-9]){re.escape(prefix)}[\s#:-]{{0,2}}"
            r"(?P<n>[0-9]{1,12})(?![0-9]|-[0-9])",
            re.IGNORECASE,
        )
    return pattern


def _read(folded: str, *, today: date) -> ReadIntent:
    spans = _sentences(folded)
    spanish = len(_SPANISH_HINTS.findall(folded)) > len(_ENGLISH_HINTS.findall(folded))

    payment = _read_payment(folded, spans, today=today, spanish=spanish)
    if payment is not None:
        found = sum(
            value is not None
            for value in (payment.amount_cents, payment.method, payment.check_number)
        )
        confidence = min(0.6 + 0.1 * found + (0.05 if payment.paid_on else 0.0), 0.95)
        return ReadIntent(Intent.PAYMENT, payment, round(confidence, 2))
    # Blame or a removal request disputes the charge unless the parent owns up in the same reply
    # ("her brother dropped it, it's our fault. Can we do payments?").
    if _DISPUTE.search(folded) or (
        (_BLAME.search(folded) or _REMOVE.search(folded)) and not _OWN_FAULT.search(folded)
    ):
        return ReadIntent(Intent.DISPUTE, None, 0.8)
    if _PLAN.search(folded):
        return ReadIntent(Intent.PAYMENT_PLAN, None, 0.8)
    if _NEW_LINK.search(folded) and not _NO_LINK_WANTED.search(folded):
        return ReadIntent(Intent.NEW_LINK, None, 0.8)
    if "?" in folded or "\u00bf" in folded:
        return ReadIntent(Intent.QUESTION, None, 0.75)
    if _QUESTION_PHRASE.search(folded) or any(
        _QUESTION_START.match(folded[start:end]) and not _NO_SUBJECT.match(folded[start:end])
        for start, end in spans
    ):
        return ReadIntent(Intent.QUESTION, None, 0.5)
    return ReadIntent(Intent.OTHER, None, 0.3)


def _read_payment(
    folded: str, spans: list[tuple[int, int]], *, today: date, spanish: bool
) -> ReportedPayment | None:
    cues = [(span, cue) for span in spans if (cue := _payment_cue(folded, span)) is not None]
    if not cues:
        return None
    # "We have paid $100 so far. Today I paid the last $25": a running total is not the payment
    # being reported, when another sentence reports one.
    latest = [
        (span, cue) for span, cue in cues if not _RUNNING_TOTAL.search(folded[span[0] : span[1]])
    ]
    cues = latest or cues
    scopes = [folded[start:end] for (start, end), _ in cues]
    # The amount the parent says they paid: the first one after the cue in its sentence
    # ("the bill says $120 but I paid $50"), else the first in that sentence.
    after_cue = [cents for ((start, end), cue) in cues for cents in _amounts(folded[cue:end])]
    in_cues = [cents for scope in scopes for cents in _amounts(scope)]
    candidates = after_cue or in_cues
    amount: int | None = candidates[0] if candidates else None
    if amount is None:
        everywhere = set(_amounts(folded))
        if len(everywhere) == 1:
            amount = everywhere.pop()
    if amount is None:
        amount = _first_found(scopes, _bare_amount)
    method = _first_found(scopes, _method) or _method(folded)
    check_number = _first_found(scopes, _check_number) or _check_number(folded)
    if check_number is None and method == "check":
        check_number = _loose_check_number(folded)
    if check_number and method is None:
        method = "check"
    paid_on = _first_found(scopes, lambda s: _date_in(s, today=today, spanish=spanish))
    if paid_on is None:
        paid_on = _date_in(folded, today=today, spanish=spanish)
    return ReportedPayment(amount, method, check_number, paid_on)


def _payment_cue(folded: str, span: tuple[int, int]) -> int | None:
    """Where, in the sentence at `span`, the parent reports having paid (offset of the cue)."""
    start, end = span
    sentence = folded[start:end]
    question = sentence.rstrip().endswith("?") or "\u00bf" in sentence
    if question and not (_amounts(sentence) or _check_number(sentence)):
        return None
    if question and _WH_QUESTION.match(sentence):
        # "How much do I still owe after the $20 I paid?" asks about an earlier payment;
        # "Did you get the check I mailed?" reports one.
        return None
    found: list[int] = []
    for match in _PAID.finditer(sentence):
        if _cue_counts(sentence, match.start(), match.end()):
            found.append(match.start())
            break
    for match in _HANDED_OVER.finditer(sentence):
        before = sentence[max(0, match.start() - 50) : match.start()]
        if not (_OBJECT_FOLLOWS.match(sentence, match.end()) or _OBJECT_BEFORE.search(before)):
            continue
        if _cue_counts(sentence, match.start(), match.end()):
            found.append(match.start())
            break
    for match in _PASSIVE.finditer(sentence):
        before = sentence[max(0, match.start() - 60) : match.start()]
        if _OBJECT_EARLIER.search(before) and _cue_counts(sentence, match.start(), match.end()):
            found.append(match.start())
            break
    for match in _WENT_OUT.finditer(sentence):
        before = sentence[max(0, match.start() - 60) : match.start()]
        if _OBJECT_EARLIER.search(before) and _cue_counts(sentence, match.start(), match.end()):
            found.append(match.start())
            break
    for match in _TERSE.finditer(sentence):
        if _cue_counts(sentence, match.start(), match.end()):
            found.append(match.start())
            break
    return start + min(found) if found else None


def _cue_counts(sentence: str, start: int, end: int) -> bool:
    before = sentence[max(0, start - 40) : start]
    if (
        _NOT_DONE.search(before)
        or _FUTURE_BEFORE.search(before)
        or _YOU_BEFORE.search(before)
        or _INSURANCE_BEFORE.search(before)
    ):
        return False
    return not _NOT_FOR_US.match(sentence[end : end + 40])


def _amounts(text: str) -> list[int]:
    """Amounts in the order written, in figures ("$50", "50.00") or words ("fifty dollars")."""
    found: list[tuple[int, int]] = list(_word_amounts(text))
    for match in _AMOUNT.finditer(text):
        for key in ("a", "b", "c", "d"):
            whole = match.group(key)
            if whole is None:
                continue
            fraction = match.group(key + "f") or ""
            try:
                cents = parse_amount(f"${whole}{fraction}")
            except ValidationError:
                break
            if cents > 0:
                found.append((match.start(), cents))
            break
    return [cents for _, cents in sorted(found)]


def _word_amounts(text: str) -> list[tuple[int, int]]:
    """(offset, cents) of amounts written in words before "dollars" / "dólares"."""
    found: list[tuple[int, int]] = []
    matches = [*_WORD_AMOUNT.finditer(text), *_PAID_WORD_AMOUNT.finditer(text)]
    for match in matches:
        total = current = 0
        for word in re.findall(r"[a-z]+", match.group("words")):
            if word in ("and", "y"):
                continue
            if word == "a":  # "a hundred dollars"
                current += 1
            elif word == "hundred":
                current = max(current, 1) * 100
            elif word in ("thousand", "mil"):
                total += max(current, 1) * 1000
                current = 0
            else:
                current += _NUMBER_WORDS[word]
        if total + current > 0 and (total + current >= 5 or match.re is _WORD_AMOUNT):
            found.append((match.start("words"), (total + current) * 100))
    return found


def _bare_amount(sentence: str) -> int | None:
    """A plain number closing a payment report ("paid online with my card, 125")."""
    for match in _BARE_AMOUNT.finditer(sentence):
        whole, fraction = match.group("n"), match.group("f") or ""
        if not fraction and 1990 <= int(whole) <= 2099:
            continue  # a year
        cents = int(whole) * 100 + int(fraction[1:] or 0)
        if cents >= 500:
            return cents
    return None


def _method(text: str) -> str | None:
    hits: list[tuple[int, str]] = []
    for name, pattern in _METHODS:
        match = pattern.search(text)
        if match:
            hits.append((match.start(), name))
    if not hits:
        return None
    names = {name for _, name in hits}
    if "online" in names and "card" in names:
        hits = [hit for hit in hits if hit[1] != "card"]  # a card through the portal is online
    return min(hits)[1]


def _check_number(text: str) -> str | None:
    match = _CHECK_NUMBER.search(text)
    return match.group("n") if match else None


def _loose_check_number(text: str) -> str | None:
    """A number marked "#" or "número" in a reply about a check ("The check went out in the
    mail. #4412"), unless the words before it say it numbers something else."""
    for match in _NUMBER_MARK.finditer(text):
        if not _OTHER_NUMBER_BEFORE.search(text[max(0, match.start() - 30) : match.start()]):
            return match.group("n")
    return None


def _first_found(scopes: list[str], reader: Callable[[str], T | None]) -> T | None:
    for scope in scopes:
        value = reader(scope)
        if value is not None:
            return value
    return None


def _date_in(text: str, *, today: date, spanish: bool) -> date | None:
    candidates: list[tuple[int, date]] = []
    for match in _RELATIVE.finditer(text):
        days = 2 if match.group("before") else 1 if match.group("yesterday") else 0
        candidates.append((match.start(), today - timedelta(days=days)))
    for match in _WEEKDAY.finditer(text):
        back = (today.weekday() - _WEEKDAYS[match.group("w")]) % 7
        candidates.append((match.start(), today - timedelta(days=back)))
    for match in _ISO_DATE.finditer(text):
        found = _make_date(int(match["y"]), int(match["m"]), int(match["d"]), today, fixed=True)
        if found:
            candidates.append((match.start(), found))
    for match in _SLASH_DATE.finditer(text):
        first, second = int(match["a"]), int(match["b"])
        month, day = (second, first) if spanish and second <= 12 else (first, second)
        if month > 12 and day <= 12:
            month, day = day, month
        year_text = match["y"]
        year = _year(year_text, today)
        found = _make_date(year, month, day, today, fixed=year_text is not None)
        if found:
            candidates.append((match.start(), found))
    for pattern in (_MONTH_DAY, _DAY_MONTH):
        for match in pattern.finditer(text):
            year_text = match["y"]
            found = _make_date(
                _year(year_text, today),
                _MONTHS[match["m"]],
                int(match["d"]),
                today,
                fixed=year_text is not None,
            )
            if found:
                candidates.append((match.start(), found))
    if not candidates:
        for match in _ORDINAL_DAY.finditer(text):
            day = int(match["d"] or match["e"])
            month, year = today.month, today.year
            if day > today.day:
                month, year = (12, year - 1) if month == 1 else (month - 1, year)
            found = _make_date(year, month, day, today, fixed=True)
            if found:
                candidates.append((match.start(), found))
    return min(candidates)[1] if candidates else None


def _year(text: str | None, today: date) -> int:
    if text is None:
        return today.year
    year = int(text)
    return year + 2000 if year < 100 else year


def _make_date(year: int, month: int, day: int, today: date, *, fixed: bool) -> date | None:
    """A real date not after today; without a year, the latest such date."""
    try:
        found = date(year, month, day)
    except ValueError:
        return None
    if found > today:
        if fixed:
            return None
        try:
            found = date(year - 1, month, day)
        except ValueError:
            return None
    if (today - found).days > 400:
        return None  # not a payment date anyone would report
    return found
