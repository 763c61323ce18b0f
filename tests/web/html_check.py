"""Structural checks of a page's HTML that a screen reader and a validator both rely on."""

from __future__ import annotations

from html.parser import HTMLParser

VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.stack: list[str] = []
        self.ids: set[str] = set()
        self.label_for: set[str] = set()
        self.inputs: list[str | None] = []
        self.headings: list[int] = []
        self.mains = 0
        self.lang: str | None = None
        self.viewport = False
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if "style" in values:
            self.problems.append(f"<{tag}> has a style attribute (the policy blocks it)")
        ident = values.get("id")
        if ident is not None:
            if ident in self.ids:
                self.problems.append(f"duplicate id {ident!r}")
            self.ids.add(ident)
        if tag == "html":
            self.lang = values.get("lang")
        elif tag == "meta" and values.get("name") == "viewport":
            self.viewport = True
        elif tag == "main":
            self.mains += 1
        elif tag == "label" and values.get("for"):
            self.label_for.add(values["for"] or "")
        elif tag == "input" and values.get("type") not in ("hidden", "submit"):
            self.inputs.append(ident)
        elif tag == "img" and not values.get("alt"):
            self.problems.append("an image without alt text")
        elif len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self.headings.append(int(tag[1]))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.problems.append(f"end tag for void element <{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def page_problems(html: str) -> list[str]:
    """What is wrong with the page's structure; empty when nothing is."""
    c = _Collector()
    c.feed(html)
    c.close()
    problems = list(c.problems)
    if not c.doctype:
        problems.append("no <!DOCTYPE html>")
    if not c.lang:
        problems.append("<html> has no lang")
    if not c.viewport:
        problems.append("no viewport meta tag")
    if c.mains != 1:
        problems.append(f"{c.mains} <main> landmarks")
    if c.stack:
        problems.append(f"unclosed elements: {c.stack}")
    for ident in c.inputs:
        if ident is None or ident not in c.label_for:
            problems.append(f"input {ident!r} has no label")
    if not c.headings or c.headings[0] != 1 or c.headings.count(1) != 1:
        problems.append(f"the page needs exactly one <h1>, first: {c.headings[:3]}")
    for before, after in zip(c.headings, c.headings[1:], strict=False):
        if after > before + 1:
            problems.append(f"heading level skips from h{before} to h{after}")
    return problems
