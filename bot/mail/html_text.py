"""HTML mail bodies turned into plain text, with the standard library's tolerant parser.

Scripts, styles, the head and other non-content elements are dropped with everything inside
them; block elements end lines; `<br>` breaks lines; `<hr>` becomes a rule of underscores (the
way Outlook marks the start of quoted history); `<blockquote>` lines get a "> " prefix so the
quote stripper sees quoted history the same way in HTML and plain-text mail. Entities are
unescaped. Broken markup never raises: the parser takes whatever it can.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Elements whose whole content is never text a person reads.
_SKIPPED = frozenset(
    {
        "script",
        "style",
        "head",
        "title",
        "template",
        "noscript",
        "object",
        "iframe",
        "svg",
        "math",
        "xml",
    }
)
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
_BLOCK = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "dd",
        "details",
        "dialog",
        "dir",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hgroup",
        "li",
        "main",
        "menu",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
        "body",
        "html",
    }
)
_CELL = frozenset({"td", "th"})
RULE = "_" * 32
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_MAX_DEPTH = 200  # nesting deeper than this is treated as flat (hostile or broken markup)


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._current: list[str] = []
        self._skip_stack: list[str] = []
        self._quote_depth = 0
        self._pre_depth = 0
        self._cell_in_row = 0

    # -- output helpers -------------------------------------------------------------------
    def _flush(self, *, force_blank: bool = False) -> None:
        text = "".join(self._current)
        self._current = []
        if self._pre_depth == 0:
            text = _SPACES.sub(" ", text).strip()
        prefix = "> " * self._quote_depth
        if text:
            for piece in text.split("\n"):
                self.lines.append((prefix + piece).rstrip())
        elif force_blank:
            self.lines.append(prefix.rstrip())

    def _break(self) -> None:
        if self._current:
            self._flush()

    # -- parser callbacks ------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        if tag == "body" and "head" in self._skip_stack:
            self._skip_stack.clear()  # a <head> left open ends where the body starts
        if self._skip_stack:
            if tag in _SKIPPED:
                self._skip_stack.append(tag)
            return
        if tag in _SKIPPED:
            self._skip_stack.append(tag)
            return
        if tag == "br":
            self._flush(force_blank=True)
        elif tag == "hr":
            self._break()
            self.lines.append(("> " * self._quote_depth) + RULE)
        elif tag == "blockquote":
            self._break()
            self._quote_depth = min(self._quote_depth + 1, _MAX_DEPTH)
        elif tag == "pre":
            self._break()
            self._pre_depth += 1
        elif tag in _CELL:
            if self._cell_in_row:
                self._current.append(" ")
            self._cell_in_row += 1
        elif tag == "tr":
            self._break()
            self._cell_in_row = 0
        elif tag == "li":
            self._break()
            self._current.append("- ")
        elif tag in _BLOCK:
            self._break()
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._current.append(f"[{alt}]")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <hr/>, and self-closed skipped tags (<script/>) that have no content.
        if tag.lower() in _SKIPPED:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower()
        if self._skip_stack:
            if tag in self._skip_stack:
                # Close up to the matching open tag (tolerates missing end tags inside).
                while self._skip_stack and self._skip_stack.pop() != tag:
                    pass
            return
        if tag == "blockquote":
            self._break()
            self._quote_depth = max(self._quote_depth - 1, 0)
        elif tag == "pre":
            self._break()
            self._pre_depth = max(self._pre_depth - 1, 0)
        elif tag == "tr":
            self._break()
            self._cell_in_row = 0
        elif tag in _BLOCK:
            self._break()

    def handle_data(self, data: str) -> None:
        if self._skip_stack:
            return
        self._current.append(data)

    def close(self) -> None:
        super().close()
        self._break()


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body (never raises)."""
    collector = _TextCollector()
    try:
        collector.feed(html)
        collector.close()
    except Exception:  # html.parser is lenient, but the contract is "never raises"
        collector._break()
    lines: list[str] = []
    for line in collector.lines:
        line = line.replace("\u00a0", " ").rstrip()
        if not line.strip("> ") and lines and not lines[-1].strip("> "):
            continue  # collapse runs of blank lines
        lines.append(line)
    return "\n".join(lines).strip("\n")
