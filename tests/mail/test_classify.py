"""Auto-reply and bounce classification: headers, subjects, RFC 3464 reports, odd MTAs."""

from __future__ import annotations

import email
import email.message
from email import policy

import pytest

from bot.mail.classify import bounce_recipients, is_auto_reply, returned_message_id
from bot.mail.parse import parse_message


def msg(headers: str, body: str = "Hello\r\n") -> email.message.EmailMessage:
    raw = (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode()
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


PERSON = "From: Maria <maria@example.com>\nTo: billing@district.example\nSubject: Re: Invoice"


# -- auto-replies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated",
        "Auto-Submitted: auto-notified; owner-email=x@example.com",
        "X-Autoreply: yes",
        "X-Autorespond: Out of office",
        "X-Autoresponder: on",
        "Precedence: bulk",
        "Precedence: junk",
        "Precedence: auto_reply",
        "Precedence: list",
        "List-Id: <parents.lakeside.example>",
        "List-Unsubscribe: <mailto:leave@lists.example>",
        "Return-Path: <>",
    ],
)
def test_auto_reply_headers(extra: str) -> None:
    assert is_auto_reply(msg(f"{PERSON}\n{extra}"))


@pytest.mark.parametrize(
    "extra",
    [
        "Auto-Submitted: no",
        "Auto-Submitted: No",
        "X-Auto-Response-Suppress: All",  # set on mail that asks not to be auto-answered
        "X-Autoreply: no",
        "Precedence: first-class",
        "Return-Path: <maria@example.com>",
    ],
)
def test_a_person_is_not_an_auto_reply(extra: str) -> None:
    assert not is_auto_reply(msg(f"{PERSON}\n{extra}"))


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Invoice INV-000123",
        "OUT OF THE OFFICE",
        "Automatic reply: Invoice INV-000123",
        "Auto-reply: vacation",
        "Autoreply",
        "Auto: Invoice INV-000123",
        "AutoResponse :Invoice",
        "Respuesta automática: Factura",
        "=?utf-8?q?Respuesta_autom=C3=A1tica=3A_Factura?=",
        "Fuera de la oficina",
        "[EXTERNAL] Automatic reply: hello",
    ],
)
def test_auto_reply_subjects(subject: str) -> None:
    assert is_auto_reply(msg(f"From: someone@example.com\nSubject: {subject}"))


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Invoice INV-000123",
        "Re: Automatic reply",  # a person answering an auto-reply is still a person
        "Question about the auto fee",
        "Autumn schedule",
        "Absence on Friday",
        "On vacation next week, will pay after",
    ],
)
def test_ordinary_subjects_are_not_auto_replies(subject: str) -> None:
    assert not is_auto_reply(msg(f"From: someone@example.com\nSubject: {subject}"))


def test_mail_system_senders_are_never_people() -> None:
    assert is_auto_reply(msg("From: MAILER-DAEMON@mx.example\nSubject: notice"))
    assert is_auto_reply(msg("From: No Reply <no-reply@vendor.example>\nSubject: hi"))


# -- bounces --------------------------------------------------------------------------------------


def report(*recipient_blocks: str, headers: str = "") -> email.message.EmailMessage:
    status = "Reporting-MTA: dns; mx.district.example\r\n\r\n" + "\r\n\r\n".join(
        block.strip().replace("\n", "\r\n") for block in recipient_blocks
    )
    body = (
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery report.\r\n"
        f"--B\r\nContent-Type: message/delivery-status\r\n\r\n{status}\r\n"
        "--B\r\nContent-Type: message/rfc822\r\n\r\n"
        "Message-ID: <notice-9@district.example>\r\nSubject: Invoice\r\n\r\nHello\r\n--B--\r\n"
    )
    return msg(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example>\nSubject: Delivery report\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n" + headers,
        body,
    )


def test_failed_recipients_of_a_delivery_report() -> None:
    message = report(
        "Original-Recipient: rfc822;Parent.One@Example.com\n"
        "Final-Recipient: rfc822; parent.one@example.com\nAction: failed\nStatus: 5.1.1",
        "Final-Recipient: rfc822;<parent.two@example.com>\nAction: Failed\nStatus: 5.2.2",
        "Final-Recipient: rfc822; waiting@example.com\nAction: delayed\nStatus: 4.4.7",
        "Final-Recipient: rfc822; fine@example.com\nAction: delivered\nStatus: 2.0.0",
    )
    assert bounce_recipients(message) == ("parent.one@example.com", "parent.two@example.com")
    assert returned_message_id(message) == "<notice-9@district.example>"


def test_a_status_without_action_but_permanent_code_is_a_failure() -> None:
    message = report("Final-Recipient: rfc822; gone@example.com\nStatus: 5.1.1")
    assert bounce_recipients(message) == ("gone@example.com",)


@pytest.mark.parametrize("action", ["delayed", "delivered", "relayed", "expanded"])
def test_reports_that_are_not_failures_are_not_bounces(action: str) -> None:
    message = report(f"Final-Recipient: rfc822; p@example.com\nAction: {action}\nStatus: 4.4.7")
    assert bounce_recipients(message) is None
    assert is_auto_reply(message)  # still machine mail: recorded, never answered


def test_a_failed_report_with_no_address_is_still_a_bounce() -> None:
    assert bounce_recipients(report("Action: failed\nStatus: 5.0.0")) == ()


def test_bounce_takes_precedence_over_auto_reply() -> None:
    raw = report(
        "Final-Recipient: rfc822; p@example.com\nAction: failed",
        headers="Auto-Submitted: auto-replied\n",
    ).as_bytes()
    parsed = parse_message(raw)
    assert parsed.kind == "bounce"
    assert parsed.bounced_recipients == ("p@example.com",)


def test_exim_x_failed_recipients_header() -> None:
    message = msg(
        "From: Mail Delivery System <Mailer-Daemon@mx.example>\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        "X-Failed-Recipients: Gone@Example.com, other@example.com",
        "This message was created automatically by mail delivery software.\r\n",
    )
    assert bounce_recipients(message) == ("gone@example.com", "other@example.com")


def test_old_postfix_bounce_without_a_report_uses_flufl_bounce() -> None:
    message = msg(
        "From: MAILER-DAEMON@mail.example (Mail Delivery System)\n"
        "Subject: Undelivered Mail Returned to Sender\nReturn-Path: <>\n"
        "Content-Type: multipart/mixed; boundary=P",
        "--P\r\nContent-Description: Notification\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system at host mail.example.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        "\t\t\tThe Postfix program\r\n\r\n"
        "<Someone@example.org>: host mx.example.org said: 550 5.1.1 User unknown\r\n"
        "--P--\r\n",
    )
    assert bounce_recipients(message) == ("someone@example.org",)


def test_a_daemon_notice_naming_nobody_is_a_bounce_without_recipients() -> None:
    message = msg(
        "From: Mail Delivery Subsystem <mailer-daemon@mx.example>\n"
        "Subject: Returned mail: see transcript for details",
        "The original message was rejected.\r\n",
    )
    assert bounce_recipients(message) == ()


def test_delay_warnings_from_a_daemon_are_not_bounces() -> None:
    message = msg(
        "From: Mail Delivery System <Mailer-Daemon@mx.example>\n"
        "Subject: Warning: message 1abcDE-000123-XY delayed 24 hours",
        "This message was created automatically by mail delivery software.\r\n"
        "A message that you sent has not yet been delivered to one or more of its\r\n"
        "recipients after more than 24 hours on the queue.\r\n",
    )
    assert bounce_recipients(message) is None
    assert is_auto_reply(message)


def test_people_writing_about_bounces_are_not_bounces() -> None:
    message = msg(
        f"{PERSON}",
        "My old address bounced, please use this one.\r\n"
        "Action: failed\r\nFinal-Recipient: rfc822; old@example.com\r\n",
    )
    assert bounce_recipients(message) is None
    assert not is_auto_reply(message)


def test_classifiers_accept_compat32_messages_and_odd_input() -> None:
    legacy = email.message_from_bytes(b"From: MAILER-DAEMON@x\r\nSubject: failure notice\r\n\r\nx")
    assert is_auto_reply(legacy)  # type: ignore[arg-type]
    assert bounce_recipients(legacy) == ()  # type: ignore[arg-type]
    odd = msg("From: <<<@@@>>>\nSubject: =?bad?Q?x?=\nContent-Type: multipart/report", "junk")
    assert bounce_recipients(odd) is None or isinstance(bounce_recipients(odd), tuple)


@pytest.mark.parametrize(
    "subject",
    [
        "Re: my card was rejected",
        "Re: payment delayed, sorry",
        "Payment delayed until Friday",
        "Fwd: Returned mail: see transcript for details",
        "RE: Undeliverable: Invoice INV-000123",
        "My check bounced",
    ],
)
def test_people_whose_subjects_sound_like_mail_systems_are_people(subject: str) -> None:
    message = msg(
        f"From: Maria <maria@example.com>\nSubject: {subject}",
        "Hi, please see below. The notice said <someone@example.org>: user unknown.\r\n",
    )
    assert bounce_recipients(message) is None
    assert not is_auto_reply(message)


def test_feedback_reports_are_machine_mail_but_not_bounces() -> None:
    message = msg(
        "From: OpenDMARC Filter <opendmarc-postmaster@example.net>\nSubject: DMARC report\n"
        'Content-Type: multipart/report; report-type="feedback-report"; boundary=F',
        "--F\r\nContent-Type: text/plain\r\n\r\nA report.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: auth-failure\r\n"
        "--F--\r\n",
    )
    assert bounce_recipients(message) is None
    assert is_auto_reply(message)


def test_an_rfc3834_reply_naming_addresses_is_not_a_bounce() -> None:
    message = msg(
        "Return-Path: <>\nFrom: Dana <dana@work.example>\nAuto-Submitted: auto-replied\n"
        "Subject: Away",
        "I'm away. Mail for <dana@work.example> is not read; write to <desk@work.example>.\r\n"
        "Delivery to the following recipients failed: <dana@work.example>\r\n",
    )
    assert bounce_recipients(message) is None
    assert is_auto_reply(message)


def test_an_out_of_office_from_the_null_sender_is_not_a_bounce() -> None:
    message = msg(
        "Return-Path: <>\nFrom: Dana <dana@work.example>\nSubject: Automatic reply: Invoice",
        "I am away until Monday.\r\n",
    )
    assert bounce_recipients(message) is None
    assert is_auto_reply(message)
