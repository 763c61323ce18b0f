"""The Jinja environment the notices and the family pages are rendered with, one per language.

Templates are written in English and mark their text with `_("…")`, `ngettext(…)` and
`pgettext(…)` (Jinja's "newstyle" gettext: values by name, `%` formatting, the result marked
safe where the template autoescapes, so the values are escaped). Each language has its own
environment, so a marked literal is translated once, when the template is compiled: it becomes
the translated constant formatted with its values, and rendering calls no gettext at all. That
keeps a Spanish or Vietnamese notice as quick to render as an English one; calling gettext
through the template context at every render had made rendering two to three times slower.
Messages that aren't literals, and plurals (whose form depends on the count), are translated
when the template runs, by the same functions.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, nodes, pass_eval_context
from jinja2.nodes import EvalContext
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from workflows.i18n import translations

# What `x.name` finds on a dict as an attribute (a method); any other name can only be a key.
_DICT_ATTRIBUTES = frozenset(dir(dict))


def gettext_functions(language: str) -> dict[str, Any]:
    """`_`, `gettext`, `ngettext` and `pgettext` for templates, in one language."""
    t = translations(language)

    @pass_eval_context
    def gettext(eval_ctx: EvalContext, message: str, **variables: Any) -> str:
        text = t.gettext(message)
        return (Markup(text) if eval_ctx.autoescape else text) % variables

    @pass_eval_context
    def ngettext(
        eval_ctx: EvalContext, singular: str, plural: str, num: int, **variables: Any
    ) -> str:
        variables.setdefault("num", num)
        text = t.ngettext(singular, plural, num)
        return (Markup(text) if eval_ctx.autoescape else text) % variables

    @pass_eval_context
    def pgettext(eval_ctx: EvalContext, context: str, message: str, **variables: Any) -> str:
        variables.setdefault("context", context)
        text = str(t.pgettext(context, message))
        return (Markup(text) if eval_ctx.autoescape else text) % variables

    return {"_": gettext, "gettext": gettext, "ngettext": ngettext, "pgettext": pgettext}


def _literals(node: nodes.Call, count: int) -> list[str] | None:
    if len(node.args) != count or node.dyn_args is not None or node.dyn_kwargs is not None:
        return None
    values = [arg.value for arg in node.args if isinstance(arg, nodes.Const)]
    return values if len(values) == count and all(isinstance(v, str) for v in values) else None


class _TranslateLiterals(NodeTransformer):
    """`_("literal", name=value)` -> the translation % {"name": value}, at compile time.

    The translation is a constant: marked safe already where the template autoescapes, and
    formatted already when it takes no values."""

    def __init__(self, language: str, autoescape: bool) -> None:
        self.catalogue = translations(language)
        self.autoescape = autoescape

    def visit_Call(self, call: nodes.Call) -> nodes.Node:
        node = self.generic_visit(call)
        if not isinstance(node, nodes.Call) or not isinstance(node.node, nodes.Name):
            return node
        pairs = [nodes.Pair(nodes.Const(k.key), k.value) for k in node.kwargs]
        if node.node.name in ("_", "gettext") and (found := _literals(node, 1)):
            text = self.catalogue.gettext(found[0])
        elif node.node.name == "pgettext" and (found := _literals(node, 2)):
            text = str(self.catalogue.pgettext(found[0], found[1]))
            if "context" not in {k.key for k in node.kwargs}:
                pairs.append(nodes.Pair(nodes.Const("context"), nodes.Const(found[0])))
        else:
            return node
        constant = Markup(text) if self.autoescape else text
        if not pairs:
            return nodes.Const(constant % {}).set_lineno(node.lineno)
        translated = nodes.Mod(nodes.Const(constant), nodes.Dict(pairs))
        return translated.set_lineno(node.lineno)


class TranslatedEnvironment(Environment):
    """An environment in one language (see the module's note), with a quicker `x.name` for
    the dicts a context is made of.

    Jinja looks for an attribute first and falls back to the item; on a dict the attribute
    lookup raises for every name but a dict method's, and building that exception was a fifth
    of the time a notice took to render. The result is the same, and so is the undefined value
    for a missing key.
    """

    def __init__(self, language: str, **options: Any) -> None:
        super().__init__(**options)
        self.language = language
        self.globals.update(gettext_functions(language))

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        autoescape = self.autoescape(name) if callable(self.autoescape) else self.autoescape
        translated = _TranslateLiterals(self.language, bool(autoescape)).visit(tree)
        translated.set_environment(self)
        return translated

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)
