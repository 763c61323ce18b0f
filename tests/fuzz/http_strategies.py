"""Hypothesis strategies for requests from outside: Slack's, Stripe's and a family's browser.

Each builds what the sender would send, then bends it: wrong types, odd text, numbers past
any id or column, dates that don't exist, values that are signed but name nothing, values
that look signed but aren't. The names the app listens for (commands, action ids, callback
ids, block ids) come from the app itself, so a new listener is fuzzed without editing this.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import inspect
import json
import pkgutil
import time
import types
import typing
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlencode

from hypothesis import strategies as st
from pydantic import BaseModel

import bot.slack
from bot.slack import app as slack_app_module
from bot.slack.metadata import Payload, pack

# --- text and numbers that break things -------------------------------------------------------

AWKWARD_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u2028",
    "\r\n",
    "\t",
    "0",
    "-1",
    "+1",
    "1e9",
    "1.5",
    "NaN",
    "Infinity",
    "2147483647",
    "2147483648",
    "9223372036854775808",
    "99999999999",
    "999999999999",
    "#999999999999",
    "0" * 40,
    "9" * 40,
    "²",
    "١٢٣",
    "１２",
    "2026-02-30",
    "0000-01-01",
    "9999-12-31",
    "10000-01-01",
    "2026-13-01",
    "2026-03-02..2026-03-01",
    "this-year",
    "last-30-days",
    "INV-000001",
    "INV-999999999999",
    "$1,000,000.00",
    "-$5.00",
    "5.001",
    "0.00",
    "99999999999999.99",
    "'; DROP TABLE invoices; --",
    "<script>alert(1)</script>",
    "=1+1",
    "{{ 7*7 }}",
    "%s%s%n",
    "../../etc/passwd",
    "😀" * 3,
    "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "x" * 3001,
]


@cache
def awkward_text(max_size: int = 60) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(AWKWARD_TEXT), st.text(max_size=max_size))


@cache
def awkward_ints() -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(-3, 12),
        st.sampled_from([2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]),
        st.integers(),
    )


@cache
def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        awkward_ints(),
        st.floats(allow_nan=False, allow_infinity=False),
        awkward_text(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )


@cache
def awkward_dates() -> st.SearchStrategy[str]:
    return st.one_of(
        st.dates().map(lambda d: d.isoformat()),
        st.sampled_from(["2026-02-30", "0001-01-01", "9999-12-31", "2026-3-2", "", "today"]),
    )


# --- what the Slack app listens for -----------------------------------------------------------


class _Recorder:
    """Stands where the Slack app goes in each feature's `register`, and writes down what
    it is asked to listen for."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def _listen(self, kind: str, constraint: Any) -> Any:
        self.seen.append((kind, constraint))

        # As bolt's: `app.view(id)(handler)`, or `app.view(id)(ack=..., lazy=[...])`.
        def register(*functions: Any, **kwargs: Any) -> Any:
            return functions[0] if functions else kwargs.get("ack")

        return register

    def action(self, constraint: Any) -> Any:
        return self._listen("action", constraint)

    def view(self, constraint: Any) -> Any:
        return self._listen("view", constraint)

    def command(self, constraint: Any) -> Any:
        return self._listen("command", constraint)

    def options(self, constraint: Any) -> Any:
        return self._listen("options", constraint)

    def shortcut(self, constraint: Any) -> Any:
        return self._listen("shortcut", constraint)

    def event(self, constraint: Any) -> Any:
        return self._listen("event", constraint)

    def use(self, middleware: Any) -> None:
        pass

    def error(self, handler: Any) -> Any:
        return handler


@dataclass(frozen=True)
class Listeners:
    commands: tuple[str, ...]
    actions: tuple[str, ...]
    views: tuple[str, ...]
    options: tuple[str, ...]
    shortcuts: tuple[str, ...]
    events: tuple[str, ...]
    billing_subcommands: tuple[str, ...]
    names: tuple[str, ...]  # every block and action id the Slack modules name
    payloads: tuple[type[Payload], ...]  # every signed value type


def _as_names(constraints: list[Any]) -> tuple[str, ...]:
    names = []
    for constraint in constraints:
        if isinstance(constraint, dict):
            constraint = constraint.get("type")
        assert isinstance(constraint, str), f"a listener on {constraint!r} isn't fuzzed"
        names.append(str(constraint))
    return tuple(dict.fromkeys(names))


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def listeners(runtime: Any) -> Listeners:
    recorder = _Recorder()
    for feature in slack_app_module.FEATURES:
        feature.register(recorder, runtime)
    by_kind: dict[str, list[Any]] = {}
    for kind, constraint in recorder.seen:
        by_kind.setdefault(kind, []).append(constraint)
    names: set[str] = set()
    for info in pkgutil.iter_modules(bot.slack.__path__):
        module = importlib.import_module(f"bot.slack.{info.name}")
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, StrEnum) and value.__module__ == module.__name__:
                names.update(str(member.value) for member in value)
    subcommands = getattr(recorder, "devicecare_billing_subcommands", {})
    return Listeners(
        commands=_as_names(by_kind.get("command", [])),
        actions=_as_names(by_kind.get("action", [])),
        views=_as_names(by_kind.get("view", [])),
        options=_as_names(by_kind.get("options", [])),
        shortcuts=_as_names(by_kind.get("shortcut", [])),
        events=_as_names(by_kind.get("event", [])) + ("message",),
        billing_subcommands=tuple(sorted(subcommands)),
        names=tuple(sorted(names)),
        payloads=tuple(c for c in _subclasses(Payload) if c.model_fields),
    )


# --- values our buttons and modals carry ------------------------------------------------------


def _for_annotation(annotation: Any, ids: tuple[int, ...]) -> st.SearchStrategy[Any]:
    if annotation is int:
        return st.one_of(st.sampled_from(ids), awkward_ints())
    if annotation is bool:
        return st.booleans()
    if annotation is str:
        return awkward_text(30)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return payload_instances(annotation, ids)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_for_annotation(a, ids) for a in typing.get_args(annotation)))
    if annotation is type(None):
        return st.none()
    return st.nothing()


def payload_instances(cls: type[BaseModel], ids: tuple[int, ...]) -> st.SearchStrategy[Any]:
    fields = {name: _for_annotation(f.annotation, ids) for name, f in cls.model_fields.items()}
    return st.builds(cls, **fields)


@cache
def slack_values(secret: str, payloads: tuple[type[Payload], ...], ids: tuple[int, ...]) -> Any:
    """A button value or private_metadata: validly signed naming anything (the right type
    or another), signed with another key, tampered with, or plain text."""
    signed = (
        st.sampled_from(payloads)
        .flatmap(lambda c: payload_instances(c, ids))
        .map(lambda p: pack(p, secret))
    )
    other_key = (
        st.sampled_from(payloads)
        .flatmap(lambda c: payload_instances(c, ids))
        .map(lambda p: pack(p, "not-our-secret"))
    )

    def tamper(value: str, at: int, char: str) -> str:
        at %= len(value)
        return value[:at] + char + value[at + 1 :]

    tampered = st.builds(tamper, signed, st.integers(0, 200), st.sampled_from("A_.=0\x00é"))
    return st.one_of(signed, signed, other_key, tampered, awkward_text())


# --- Slack requests ---------------------------------------------------------------------------


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def slack_headers(secret: str, body: bytes, content_type: str) -> dict[str, str]:
    """Headers as Slack sends them, signed now."""
    ts = str(int(time.time()))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(secret, ts, body),
    }


def interaction_body(payload: Any) -> tuple[bytes, str]:
    return urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded"


def event_body(payload: Any) -> tuple[bytes, str]:
    return json.dumps(payload).encode(), "application/json"


@dataclass(frozen=True)
class SlackCase:
    """One request to /slack/events: its body, how it is signed and sent, and who sends it."""

    what: str
    body: bytes
    content_type: str
    user: str | None
    headers: dict[str, Any] | None = None  # None: signed as Slack signs, just now

    def describe(self) -> str:
        return f"{self.what} from {self.user}: {self.body[:400]!r}"


@dataclass(frozen=True)
class SlackWorld:
    """What the fuzzed requests may name: the app's listeners, the district's people and
    channels, and the keys."""

    listeners: Listeners
    users: tuple[str, ...]  # staff of every role first, then strangers
    staff: int  # how many of `users` are staff
    channels: tuple[str, ...]
    ids: tuple[int, ...]
    secret: str  # SECRET_KEY, for values signed as our buttons are
    team_id: str
    app_id: str


@cache
def _some(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(names), st.sampled_from(names), awkward_text(20))


@cache
def _option(value: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"value": value}, optional={"text": st.just({"type": "plain_text", "text": "x"})}
    )


@cache
def element_values(world: SlackWorld, value: st.SearchStrategy[str]) -> Any:
    """An input's state in a submitted modal, or a clicked element: any of Slack's shapes."""
    return st.one_of(
        st.fixed_dictionaries({"type": st.just("plain_text_input"), "value": st.none() | value}),
        st.fixed_dictionaries(
            {"type": st.just("static_select"), "selected_option": st.none() | _option(value)}
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("multi_static_select"),
                "selected_options": st.lists(_option(value), max_size=4),
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("checkboxes"),
                "selected_options": st.lists(_option(value), max_size=4),
            }
        ),
        st.fixed_dictionaries(
            {"type": st.just("datepicker"), "selected_date": st.none() | awkward_dates()}
        ),
        st.fixed_dictionaries(
            {"type": st.just("users_select"), "selected_user": st.sampled_from(world.users)}
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("multi_users_select"),
                "selected_users": st.lists(st.sampled_from(world.users), max_size=3),
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("file_input"),
                "files": st.lists(st.fixed_dictionaries({"id": awkward_text(12)}), max_size=2),
            }
        ),
        st.fixed_dictionaries({"type": st.just("button"), "value": value}),
    )


@cache
def view_states(world: SlackWorld, value: st.SearchStrategy[str]) -> Any:
    names = _some(world.listeners.names)
    return st.dictionaries(
        names, st.dictionaries(names, element_values(world, value), max_size=3), max_size=6
    )


@cache
def views(world: SlackWorld, callback_ids: tuple[str, ...]) -> Any:
    value = st.one_of(
        awkward_text(), slack_values(world.secret, world.listeners.payloads, world.ids)
    )
    return st.fixed_dictionaries(
        {
            "id": st.sampled_from(["V0001", "V0002"]),
            "type": st.sampled_from(["modal", "home"]),
            "callback_id": _some(callback_ids),
            "private_metadata": st.one_of(
                slack_values(world.secret, world.listeners.payloads, world.ids),
                st.just(""),
            ),
            "state": st.fixed_dictionaries({"values": view_states(world, value)}),
            "hash": st.just("1700000000.abc"),
        },
        optional={"blocks": st.just([]), "root_view_id": st.just("V0001")},
    )


def _envelope(world: SlackWorld, kind: str) -> dict[str, Any]:
    return {"type": kind, "team": {"id": world.team_id}, "api_app_id": world.app_id}


@cache
def _user(world: SlackWorld) -> st.SearchStrategy[str]:
    # Mostly staff, so most cases get past "who are you" to the listener itself.
    staff = st.sampled_from(world.users[: world.staff])
    return st.one_of(staff, staff, staff, st.sampled_from(world.users), awkward_text(12))


@cache
def slash_commands(world: SlackWorld) -> st.SearchStrategy[SlackCase]:
    words = st.one_of(
        st.sampled_from(world.listeners.billing_subcommands),
        st.sampled_from(["add", "list", "remove", "all", "on", "off", "automation", "cancelled"]),
        awkward_text(20),
        st.sampled_from([f"#{i}" for i in world.ids] + [str(i) for i in world.ids]),
    )
    text = st.lists(words, max_size=5).map(" ".join) | awkward_text(200)

    @st.composite
    def build(draw: st.DrawFn) -> SlackCase:
        user = draw(_user(world))
        form = {
            "token": "unused",
            "team_id": world.team_id,
            "team_domain": "district",
            "channel_id": draw(st.sampled_from(world.channels)),
            "channel_name": "help",
            "user_id": user,
            "user_name": "someone",
            "command": draw(st.sampled_from(world.listeners.commands) | st.just("/nope")),
            "text": draw(text),
            "api_app_id": world.app_id,
            "response_url": "https://hooks.slack.test/commands/1",
            "trigger_id": "trigger.fuzz",
        }
        extra = draw(st.dictionaries(st.text(max_size=8), awkward_text(20), max_size=3))
        body = urlencode({**extra, **form}).encode()
        return SlackCase(
            f"command {form['command']} {form['text'][:80]!r}",
            body,
            "application/x-www-form-urlencoded",
            user,
        )

    return build()


@cache
def block_actions(world: SlackWorld) -> st.SearchStrategy[SlackCase]:
    value = st.one_of(
        slack_values(world.secret, world.listeners.payloads, world.ids), awkward_text()
    )

    @st.composite
    def build(draw: st.DrawFn) -> SlackCase:
        user = draw(_user(world))
        element = draw(element_values(world, value))
        action = {
            **element,
            "action_id": draw(_some(world.listeners.actions)),
            "block_id": draw(_some(world.listeners.names)),
            "action_ts": "1700000000.000100",
        }
        channel = draw(st.sampled_from(world.channels))
        payload = {
            **_envelope(world, "block_actions"),
            "user": {"id": user, "username": "someone"},
            "trigger_id": "trigger.fuzz",
            "response_url": "https://hooks.slack.test/actions/1",
            "actions": [action],
        }
        where = draw(st.sampled_from(["message", "view", "ephemeral"]))
        if where == "view":
            payload["container"] = {"type": "view", "view_id": "V0001"}
            payload["view"] = draw(views(world, world.listeners.views))
        else:
            payload["container"] = {
                "type": "message",
                "channel_id": channel,
                "message_ts": "1699999999.000001",
                "is_ephemeral": where == "ephemeral",
            }
            payload["channel"] = {"id": channel, "name": "incidents"}
            payload["message"] = {"ts": "1699999999.000001", "text": "card", "blocks": []}
        return SlackCase(f"action {action['action_id']!r}", *interaction_body(payload), user)

    return build()


@cache
def view_submissions(world: SlackWorld) -> st.SearchStrategy[SlackCase]:
    @st.composite
    def build(draw: st.DrawFn) -> SlackCase:
        user = draw(_user(world))
        kind = draw(st.sampled_from(["view_submission", "view_closed"]))
        payload = {
            **_envelope(world, kind),
            "user": {"id": user, "username": "someone"},
            "trigger_id": "trigger.fuzz",
            "view": draw(views(world, world.listeners.views)),
            "response_urls": [],
        }
        what = f"{kind} {payload['view']['callback_id']!r}"
        return SlackCase(what, *interaction_body(payload), user)

    return build()


@cache
def block_suggestions(world: SlackWorld) -> st.SearchStrategy[SlackCase]:
    @st.composite
    def build(draw: st.DrawFn) -> SlackCase:
        user = draw(_user(world))
        payload = {
            **_envelope(world, "block_suggestion"),
            "user": {"id": user},
            "action_id": draw(_some(world.listeners.options)),
            "block_id": draw(_some(world.listeners.names)),
            "value": draw(awkward_text(80)),
            "view": draw(views(world, world.listeners.views)),
        }
        return SlackCase(f"suggestion {payload['action_id']!r}", *interaction_body(payload), user)

    return build()


@cache
def shortcuts(world: SlackWorld) -> st.SearchStrategy[SlackCase]:
    @st.composite
    def build(draw: st.DrawFn) -> SlackCase:
        user = draw(_user(world))
        kind = draw(st.sampled_from(["shortcut", "message_action"]))
        payload = {
            **_envelope(world, kind),
            "user": {"id": user},
            "callback_id": draw(_some(world.listeners.shortcuts)),
            "trigger_id": "trigger.fuzz",
        }
        if kind == "message_action":
            channel = draw(st.sampled_from(world.channels))
            payload["channel"] = {"id": channel}
            payload["message"] = {
                "ts": draw(st.sampled_from(["1699999999.000001", "1", ""]) | awkward_text(20)),
                "text": draw(awkward_text()),
                "user": draw(_user(world)),
            }
            payload["response_url"] = "https://hooks.slack.test/actions/2"
        return SlackCase(f"{kind} {payload['callback_id']!r}", *interaction_body(payload), user)

    return build()


@cache
def events(world: SlackWorld) -> st.SearchStrategy[SlackCase]:
    file_ = st.fixed_dictionaries(
        {"id": awkward_text(12)},
        optional={
            "mimetype": st.sampled_from(["image/jpeg", "text/html"]),
            "name": awkward_text(20),
            "size": awkward_ints(),
        },
    )

    @st.composite
    def build(draw: st.DrawFn) -> SlackCase:
        user = draw(_user(world))
        kind = draw(
            st.sampled_from(world.listeners.events)
            | st.sampled_from(["file_shared", "reaction_added", "member_joined_channel"])
            | awkward_text(12)
        )
        event: dict[str, Any] = {"type": kind, "user": user, "event_ts": "1700000001.000200"}
        if kind == "app_home_opened":
            event["tab"] = draw(st.sampled_from(["home", "messages"]) | awkward_text(8))
            event["channel"] = "D_HOME"
        else:
            event["channel"] = draw(st.sampled_from(world.channels))
            event["channel_type"] = draw(st.sampled_from(["channel", "group", "im"]))
            event["ts"] = draw(st.sampled_from(["1700000001.000200", "0", ""]) | awkward_text(12))
            event["text"] = draw(awkward_text(100))
            if draw(st.booleans()):
                event["thread_ts"] = draw(
                    st.sampled_from(["1699999999.000001", "1699999999.000009"]) | awkward_text(12)
                )
            if draw(st.booleans()):
                event["subtype"] = draw(
                    st.sampled_from(["file_share", "bot_message", "message_changed"])
                )
            if draw(st.booleans()):
                event["files"] = draw(st.lists(file_, max_size=3))
            if kind == "file_shared":
                event["file_id"] = draw(awkward_text(12))
        extra = draw(
            st.dictionaries(
                st.sampled_from(["bot_id", "hidden", "blocks"]), json_values(3), max_size=2
            )
        )
        payload = {
            "token": "unused",
            "team_id": world.team_id,
            "api_app_id": world.app_id,
            "type": "event_callback",
            "event_id": f"Ev{draw(st.integers(0, 10**9))}",
            "event_time": 1700000001,
            "event": {**extra, **event},
            "authorizations": [{"team_id": world.team_id, "user_id": "U_BOT", "is_bot": True}],
        }
        return SlackCase(f"event {kind!r}", *event_body(payload), user)

    return build()


# Fields Slack sends (and the Slack app reads) that a bent payload may gain anywhere.
SLACK_FIELDS = (
    "user",
    "channel",
    "team",
    "enterprise",
    "message",
    "event",
    "item",
    "view",
    "state",
    "values",
    "actions",
    "container",
    "authorizations",
    "response_urls",
    "response_url",
    "is_ext_shared_channel",
    "function_execution_id",
    "function_data",
    "thread_ts",
    "private_metadata",
    "callback_id",
    "action_id",
    "block_id",
    "selected_option",
    "value",
    "files",
    "subtype",
    "bot_id",
    "type",
    "id",
)


def _bend(value: Any, path: list[Any], replacement: Any) -> Any:
    """`value` with the part at `path` (as far as it reaches) replaced; a name in the path
    adds that field where it isn't."""
    if not path:
        return replacement
    key, rest = path[0], path[1:]
    if isinstance(value, dict):
        if isinstance(key, str):
            return {**value, key: _bend(value.get(key), rest, replacement)}
        if value:
            name = list(value)[key % len(value)]
            return {**value, name: _bend(value[name], rest, replacement)}
    if isinstance(value, list) and value:
        index = key % len(value) if isinstance(key, int) else 0
        return [*value[:index], _bend(value[index], rest, replacement), *value[index + 1 :]]
    return replacement


def _bent(world: SlackWorld, cases: st.SearchStrategy[SlackCase]) -> st.SearchStrategy[SlackCase]:
    """A well-formed request with one part anywhere in it replaced by any JSON value (or a
    field added): the gate's shape checks and every listener must cope with what is left."""
    step = st.one_of(st.integers(0, 20), st.integers(0, 20), st.sampled_from(SLACK_FIELDS))

    @st.composite
    def build(draw: st.DrawFn) -> SlackCase:
        case = draw(cases)
        event = case.content_type == "application/json"
        if event:
            payload = json.loads(case.body)
        else:
            payload = json.loads(parse_qs(case.body.decode())["payload"][0])
        path = draw(st.lists(step, min_size=1, max_size=5))
        bent = _bend(payload, path, draw(json_values(4)))
        body, content_type = event_body(bent) if event else interaction_body(bent)
        return SlackCase(f"bent {case.what} at {path}", body, content_type, case.user)

    return build()


@cache
def bent_interactions(world: SlackWorld) -> st.SearchStrategy[SlackCase]:
    return _bent(
        world,
        st.one_of(
            block_actions(world),
            view_submissions(world),
            block_suggestions(world),
            shortcuts(world),
        ),
    )


@cache
def bent_events(world: SlackWorld) -> st.SearchStrategy[SlackCase]:
    return _bent(world, events(world))


@cache
def signed_requests(world: SlackWorld) -> st.SearchStrategy[SlackCase]:
    return st.one_of(
        slash_commands(world),
        block_actions(world),
        view_submissions(world),
        block_suggestions(world),
        shortcuts(world),
        events(world),
        bent_interactions(world),
        bent_events(world),
    )


def hostile_requests(signing_secret: str, world: SlackWorld) -> st.SearchStrategy[SlackCase]:
    """What the gate must refuse: unsigned, badly signed, stale, oversized, mis-encoded,
    unparseable, another workspace's, or headers that lie."""
    raw = st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.sampled_from(
            [
                b"",
                b"{",
                b"[]",
                b"null",
                b"payload=",
                b"payload=%7B",
                b"\xff\xfe",
                b"payload=%FF",
                b"command=%2Fincident&text=%C3",
                b"&" * 200,
                b"a=" + b"&a=" * 150,
                b"[" * 5000,
                b'{"type":' * 200,
            ]
        ),
    )
    content_types = st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/json",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin-1",
            "",
        ]
    )

    @st.composite
    def build(draw: st.DrawFn) -> SlackCase:
        how = draw(
            st.sampled_from(
                [
                    "unsigned",
                    "bad signature",
                    "stale",
                    "future",
                    "odd timestamp",
                    "signed raw",
                    "signed other workspace",
                    "signed other app",
                    "oversized",
                    "lying length",
                ]
            )
        )
        body = draw(raw)
        content_type = draw(content_types)
        now = int(time.time())
        ts = str(now)
        signature = slack_signature(signing_secret, ts, body)
        headers: dict[str, Any] = {"Content-Type": content_type}
        if how == "unsigned":
            pass
        elif how == "bad signature":
            headers |= {
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": draw(
                    st.sampled_from(
                        [
                            "v0=" + "0" * 64,
                            signature[:-1],
                            signature.upper(),
                            "v1" + signature[2:],
                            slack_signature("other-secret", ts, body),
                            "",
                        ]
                    )
                ),
            }
        elif how in ("stale", "future"):
            moved = str(now + (-1 if how == "stale" else 1) * draw(st.integers(301, 10**8)))
            headers |= {
                "X-Slack-Request-Timestamp": moved,
                "X-Slack-Signature": slack_signature(signing_secret, moved, body),
            }
        elif how == "odd timestamp":
            odd = draw(
                st.sampled_from(
                    ["", "yesterday", "-1", "1e9", " " + ts, ts + ".0", "9" * 30, "١٢٣"]
                )
            )
            headers |= {
                # As bytes: a header is bytes on the wire, whatever text it was meant as.
                "X-Slack-Request-Timestamp": odd.encode(),
                "X-Slack-Signature": slack_signature(signing_secret, odd, body),
            }
        elif how in ("signed raw", "oversized", "lying length"):
            if how == "oversized":
                body = b"payload=" + b"x" * (1024 * 1024)
                signature = slack_signature(signing_secret, ts, body)
            headers |= {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}
            if how == "lying length":
                headers["Content-Length"] = draw(
                    st.sampled_from(["-1", "abc", "99999999999999999999", "1048577", "1 0"])
                )
        else:
            case = draw(signed_requests(world))
            text = case.body.decode()
            if how == "signed other workspace":
                text = text.replace(
                    world.team_id, draw(st.sampled_from(["T_OTHER", "", "t_district"]))
                )
            else:
                text = text.replace(world.app_id, draw(st.sampled_from(["A_OTHER", ""])))
            body = text.encode()
            content_type = case.content_type
            headers = slack_headers(signing_secret, body, content_type)
        return SlackCase(how, body, content_type, None, headers)

    return build()


# --- Stripe webhooks --------------------------------------------------------------------------

STRIPE_EVENT_TYPES = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.expired",
    "checkout.session.async_payment_failed",
)


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the value, sometimes any JSON at all in its place."""
    return st.one_of(value, value, value, json_values(3))


@cache
def stripe_events(ids: tuple[int, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Events as Stripe sends them, about checkout sessions that name our invoices (or not),
    with any field bent."""
    id_text = st.one_of(st.sampled_from([str(i) for i in ids]), awkward_text(20))
    metadata = st.fixed_dictionaries(
        {},
        optional={
            "invoice_id": _maybe(id_text),
            "guardian_id": _maybe(id_text),
            "amount_cents": _maybe(awkward_text(12)),
        },
    )
    session = st.fixed_dictionaries(
        {
            "id": _maybe(st.text(max_size=30).map(lambda t: "cs_test_" + t) | awkward_text(40)),
            "object": st.just("checkout.session"),
            "amount_total": _maybe(awkward_ints() | st.sampled_from([100, 2_500, 6_500, 12_500])),
            "currency": _maybe(st.sampled_from(["usd", "USD", "eur", ""]) | awkward_text(5)),
            "metadata": _maybe(metadata),
            "payment_status": _maybe(st.sampled_from(["paid", "unpaid", "no_payment_required"])),
            "status": st.sampled_from(["complete", "expired", "open"]),
        },
        optional={
            "client_reference_id": _maybe(id_text),
            "payment_intent": _maybe(
                awkward_text(30) | st.fixed_dictionaries({"id": awkward_text(30)})
            ),
            "customer_email": _maybe(awkward_text(40)),
            "customer_details": _maybe(
                st.fixed_dictionaries(
                    {}, optional={"name": awkward_text(), "email": awkward_text()}
                )
            ),
        },
    )
    return st.fixed_dictionaries(
        {
            "id": _maybe(st.text(max_size=30).map(lambda t: "evt_" + t) | awkward_text(400)),
            "object": st.just("event"),
            "api_version": st.just("2024-06-20"),
            "created": awkward_ints(),
            "livemode": st.booleans(),
            "type": _maybe(st.sampled_from(STRIPE_EVENT_TYPES) | awkward_text(40)),
            "data": _maybe(st.fixed_dictionaries({"object": _maybe(session)})),
        }
    )


def stripe_signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(frozen=True)
class StripeCase:
    what: str
    body: bytes
    headers: dict[str, Any]
    signed: bool  # validly signed, just now: it may be kept


@cache
def stripe_requests(secret: str, now: int, ids: tuple[int, ...]) -> st.SearchStrategy[StripeCase]:
    @st.composite
    def build(draw: st.DrawFn) -> StripeCase:
        how = draw(
            st.sampled_from(
                [
                    "signed event",
                    "signed event",
                    "signed event",
                    "signed raw",
                    "unsigned",
                    "bad signature",
                    "stale",
                    "other secret",
                    "odd header",
                    "oversized",
                ]
            )
        )
        if how in ("signed event", "stale", "other secret", "bad signature"):
            body = json.dumps(draw(stripe_events(ids)), separators=(",", ":")).encode()
        elif how == "oversized":
            body = b'{"id":"evt_1","pad":"' + b"x" * (512 * 1024) + b'"}'
        else:
            body = draw(
                st.one_of(
                    st.binary(max_size=200),
                    json_values().map(lambda v: json.dumps(v).encode()),
                    st.sampled_from([b"", b"{", b"[" * 3000, b'{"id":' * 500, b'{"id":"\xff"}']),
                )
            )
        ts = now
        if how == "stale":
            ts = now - draw(st.integers(301, 10**6))
        secret_used = "whsec_other" if how == "other secret" else secret
        header: Any = stripe_signature(secret_used, ts, body)
        if how == "unsigned":
            headers: dict[str, Any] = {}
        elif how == "bad signature":
            headers = {"Stripe-Signature": header[:-1] + ("0" if header[-1] != "0" else "1")}
        elif how == "odd header":
            odd = draw(
                st.sampled_from(
                    [
                        "",
                        "t=",
                        "v1=",
                        "t=abc,v1=00",
                        f"t={ts}",
                        "t=1,t=2,v1=" + "0" * 64,
                        "t=" + "9" * 40 + ",v1=00",
                        "é=1",
                    ]
                )
                | awkward_text(80)
            )
            headers = {"Stripe-Signature": odd.encode()}
        else:
            headers = {"Stripe-Signature": header}
        headers["Content-Type"] = draw(
            st.sampled_from(["application/json; charset=utf-8", "text/plain", ""])
        )
        signed = how in ("signed event", "signed raw", "oversized")
        return StripeCase(how, body, headers, signed)

    return build()


# --- the family page, its forms, health --------------------------------------------------------


@dataclass(frozen=True)
class FamilyCase:
    what: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, Any] | None = None

    def describe(self) -> str:
        body = "" if self.body is None else f" {self.body[:300]!r}"
        return f"{self.what}: {self.method} {self.path[:300]}{body}"


@cache
def family_tokens(
    secret: str, guardians: tuple[int, ...], today_day: int
) -> st.SearchStrategy[str]:
    """Tokens of every kind: ours for real and unknown guardians, expired or lasting past any
    calendar; the same numbers spelled otherwise; well formed but signed with another key;
    and plain junk."""
    from bot.family_links import _signature

    def token(guardian: int, notice: int, day: int, key: str = secret) -> str:
        return f"g{guardian}n{notice}e{day}.{_signature(guardian, notice, day, key)}"

    # Mostly a link that opens a page, so the page and its forms are reached.
    guardian = st.sampled_from(guardians)
    numbers = st.one_of(guardian, guardian, guardian, st.integers(0, 10**12 - 1))
    notices = st.one_of(st.just(0), st.just(0), st.integers(0, 10**12 - 1))
    days = st.one_of(
        st.integers(today_day, today_day + 60),
        st.integers(today_day, today_day + 60),
        st.integers(today_day - 5, today_day),
        st.integers(0, 9_999_999),
        st.just(2_932_896),
    )
    ours = st.builds(token, numbers, notices, days)
    # A link as we send it: one of the district's guardians, lasting weeks from today.
    valid = st.builds(
        token, st.sampled_from(guardians), st.just(0), st.integers(today_day, today_day + 60)
    )
    other_key = st.builds(token, numbers, st.just(0), days, st.just("another-key"))

    def respell(value: str, how: int) -> str:
        head, _, signature = value.partition(".")
        return [
            value.replace("g", "g0", 1),
            value + "=",
            " " + value,
            value.upper(),
            head + "." + signature[:-1] + ("A" if signature[-1] != "A" else "B"),
            value + "%00",
            value.replace(".", "%2E"),
        ][how % 7]

    respelled = st.builds(respell, ours, st.integers(0, 6))
    junk = st.one_of(
        awkward_text(60).filter(lambda t: "/" not in t and "?" not in t and "#" not in t),
        st.sampled_from(["link-request", "%", "%ff", "..", "g1n0e1.", "g" + "9" * 30 + "n0e1.x"]),
    )
    return st.one_of(valid, valid, valid, valid, ours, ours, other_key, respelled, junk)


def _quote_path(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="%")


def form_bodies(fields: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[bytes]:
    complete = st.fixed_dictionaries(fields).map(lambda f: urlencode(f).encode())
    partial = st.fixed_dictionaries({}, optional=fields).map(lambda f: urlencode(f).encode())
    good = st.one_of(complete, complete, partial)
    raw = st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [b"", b"&&&", b"invoice_id=%FF", b"amount=%", b"a=1&" * 40, b"x=" + b"y" * 9000]
        ),
    )
    return st.one_of(good, good, good, raw)


@cache
def family_requests(
    secret: str, guardians: tuple[int, ...], invoices: tuple[int, ...], today_day: int
) -> st.SearchStrategy[FamilyCase]:
    tokens = family_tokens(secret, guardians, today_day).map(_quote_path)
    amounts = st.one_of(
        st.sampled_from(["", "10", "10.00", "$25.50", "1,000.00", "0", "-5", "65.00", "75"]),
        awkward_text(20),
    )
    invoice_ids = st.one_of(
        st.sampled_from([str(i) for i in invoices]),
        st.sampled_from([str(i) for i in invoices]),
        awkward_text(20),
    )
    content_types = st.sampled_from(
        ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", ""]
    )
    query = st.dictionaries(
        st.sampled_from(["paid", "cancelled", "lang", "x"]), awkward_text(20), max_size=2
    ).map(lambda q: ("?" + urlencode(q)) if q else "")

    @st.composite
    def build(draw: st.DrawFn) -> FamilyCase:
        kind = draw(
            st.sampled_from(["page", "page", "head", "photo", "pay", "pay", "link", "other"])
        )
        token = draw(tokens)
        headers: dict[str, Any] = {"Content-Type": draw(content_types)}
        if draw(st.booleans()):
            headers["Accept-Language"] = draw(
                st.sampled_from(["es", "es-MX,es;q=0.9", "*", "q=;;", "zz"]) | awkward_text(20)
            ).encode()
        if kind in ("page", "head"):
            method = "GET" if kind == "page" else "HEAD"
            return FamilyCase(kind, method, f"/family/{token}{draw(query)}", None, headers)
        if kind == "photo":
            photo = draw(st.integers(0, 10**40).map(str) | st.sampled_from(["-1", "1.5", "x"]))
            return FamilyCase(kind, "GET", f"/family/{token}/photos/{photo}", None, headers)
        if kind == "pay":
            body = draw(form_bodies({"invoice_id": invoice_ids, "amount": amounts}))
            return FamilyCase(kind, "POST", f"/family/{token}/pay", body, headers)
        if kind == "link":
            email = st.sampled_from(["maria@example.org", "lee@example.org", "a@b.c"])
            body = draw(
                form_bodies(
                    {"email": email | awkward_text(40), "lang": st.sampled_from(["en", "es", "xx"])}
                )
            )
            return FamilyCase(kind, "POST", "/family/link-request", body, headers)
        path = draw(
            st.sampled_from(
                [
                    "/healthz",
                    "/metrics",
                    "/",
                    "/family",
                    "/family/",
                    "/webhooks/stripe",
                    "/slack/events",
                    f"/family/{token}/pay/x",
                    "/%00",
                    "/family/%ff",
                ]
            )
        )
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]))
        return FamilyCase("other", method, path, draw(st.none() | st.binary(max_size=50)), headers)

    return build()
