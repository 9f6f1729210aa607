"""Conditions (``audience``, ``only``, ``unless``): sandboxed Jinja2 expressions with helpers.

``tagged('waitlist') and not converted`` is compiled once and evaluated per contact at send
time against ``Facts`` the store loads for a whole batch of contacts at once. Conditions
made only of ``tagged()``, ``and``, ``or`` and ``not`` also compile to a ``Formula`` the store
turns into SQL, so audiences are counted in the database instead of contact by contact.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Mapping, Union

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

HELPERS = {
    "tagged": "tagged(NAME): the contact has this tag",
    "converted": "converted: the contact bought this launch's product (net of refunds)",
    "opened": "opened(EMAIL_ID): the contact opened this email of the launch",
    "clicked": "clicked(EMAIL_ID): the contact clicked a link in this email of the launch",
    "clicked_link": "clicked_link(LINK_NAME): the contact clicked this named link",
}
VARIABLES = {"contact", "launch", "now"}


class ConditionError(ValueError):
    """A condition that cannot be used; the message says why and what is allowed."""


@dataclass(slots=True)
class Facts:
    """What conditions may ask about one contact, loaded in bulk by the store."""

    tags: Mapping[str, datetime] = field(default_factory=dict)  #: tag -> when it was added
    converted: bool = False
    opened: set[str] = field(default_factory=set)
    clicked: set[str] = field(default_factory=set)
    clicked_links: set[str] = field(default_factory=set)


# A boolean formula over tags: ("tag", name) | ("and", a, b) | ("or", a, b) | ("not", a) | ("const", bool)
Formula = Union[tuple[str, Any], tuple[str, Any, Any]]


@dataclass
class Condition:
    source: str
    formula: Formula | None  #: SQL-translatable form, when the condition is only about tags
    uses_events: bool  #: asks about opens or clicks (the store loads events only then)
    _compiled: Callable[..., Any] = field(repr=False)

    def evaluate(self, contact: Any, facts: Facts, extra: Mapping[str, Any] | None = None) -> tuple[bool, datetime | None]:
        """Whether the condition holds, and since when as far as tags tell.

        The second value is the latest time a tag the condition found was added: the moment
        the contact entered an audience such as ``tagged('waitlist')``.
        """
        since: list[datetime] = []
        if self.formula is not None:
            # Only tags: no need for Jinja. Same short-circuits, so the same tags count for ``since``.
            result = _holds(self.formula, facts.tags, since)
            return result, (max(since) if since else None)

        def tagged(name: str) -> bool:
            added = facts.tags.get(name)
            if added is not None:
                since.append(added)
                return True
            return False

        context = dict(extra or {})
        context.update(
            contact=contact,
            tagged=tagged,
            converted=facts.converted,
            opened=facts.opened.__contains__,
            clicked=facts.clicked.__contains__,
            clicked_link=facts.clicked_links.__contains__,
        )
        try:
            result = bool(self._compiled(**context))
        except Exception as exc:  # a condition is user code: any failure is theirs to read
            raise ConditionError(f"{self.source!r} failed for {getattr(contact, 'email', contact)}: {exc}") from None
        return result, (max(since) if since else None)


def _holds(formula: Formula, tags: Mapping[str, datetime], since: list[datetime]) -> bool:
    """Evaluate a tag formula as Jinja would, appending when each tag it found was added."""
    kind = formula[0]
    if kind == "tag":
        added = tags.get(formula[1])
        if added is None:
            return False
        since.append(added)
        return True
    if kind == "const":
        return bool(formula[1])
    if kind == "not":
        return not _holds(formula[1], tags, since)
    if kind == "and":
        return _holds(formula[1], tags, since) and _holds(formula[2], tags, since)  # type: ignore[misc]
    return _holds(formula[1], tags, since) or _holds(formula[2], tags, since)  # type: ignore[misc]


ALWAYS = "true"


class _ConditionSandbox(SandboxedEnvironment):
    def make_globals(self, d: Mapping[str, Any] | None) -> dict[str, Any]:  # type: ignore[override]
        # A plain dict, not Jinja's ChainMap: each evaluation copies the globals, and a
        # send evaluates conditions for every contact. The globals never change.
        return {**self.globals, **(d or {})}


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    return _ConditionSandbox()


def compile_condition(source: str, *, email_ids: set[str] | None = None, link_names: set[str] | None = None) -> Condition:
    """Compile and check a condition; unknown names, helpers, email ids and links are errors."""
    env = _environment()
    try:
        # compile_expression first: its errors speak of what the user wrote, not of the
        # wrapper that parse() needs.
        compiled = env.compile_expression(source)
        tree = env.parse("{{ (" + source + ") }}")
    except TemplateSyntaxError as exc:
        raise ConditionError(f"is not a valid expression ({exc.message}): {source!r}") from None
    uses_events = _check(tree, email_ids, link_names)
    expression = tree.body[0].nodes[0]  # type: ignore[attr-defined]
    return Condition(source, _formula(expression), uses_events, compiled)


def _check(expression: nodes.Template, email_ids: set[str] | None, link_names: set[str] | None) -> bool:
    uses_events = False
    arguments = {id(a) for call in expression.find_all(nodes.Call) for a in call.args}
    for name in expression.find_all(nodes.Name):
        if name.name not in HELPERS and name.name not in VARIABLES:
            if id(name) in arguments:
                raise ConditionError(f"uses unknown name {name.name!r}; to name a tag or an email, quote it: '{name.name}'")
            allowed = ", ".join(sorted(HELPERS) + sorted(VARIABLES))
            close = difflib.get_close_matches(name.name, [*HELPERS, *VARIABLES], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConditionError(f"uses unknown name {name.name!r}{hint}; conditions may use {allowed}")
    for call in expression.find_all(nodes.Call):
        if not isinstance(call.node, nodes.Name):
            continue
        helper = call.node.name
        if helper == "converted":
            raise ConditionError("'converted' is a value, not a function: write `converted`, not `converted()`")
        if helper not in HELPERS:
            continue
        if len(call.args) != 1 or call.kwargs or not isinstance(call.args[0], nodes.Const) or not isinstance(call.args[0].value, str):
            raise ConditionError(f"{HELPERS[helper]} — give it one quoted name, e.g. {helper}('name')")
        argument = call.args[0].value
        if helper in ("opened", "clicked"):
            uses_events = True
            if email_ids is not None and argument not in email_ids:
                raise ConditionError(f"{helper}({argument!r}) names no email of this launch (emails: {', '.join(sorted(email_ids))})")
        elif helper == "clicked_link":
            uses_events = True
            if link_names is not None and argument not in link_names:
                known = ", ".join(sorted(link_names)) or "none"
                raise ConditionError(f"clicked_link({argument!r}) names no link in [launch.links] (links: {known})")
    for name in expression.find_all(nodes.Name):
        if name.name in ("opened", "clicked", "clicked_link"):
            uses_events = True
    return uses_events


def _formula(node: nodes.Node) -> Formula | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, bool):
        return ("const", node.value)
    if isinstance(node, nodes.Not):
        inner = _formula(node.node)
        return ("not", inner) if inner else None
    if isinstance(node, (nodes.And, nodes.Or)):
        left, right = _formula(node.left), _formula(node.right)
        if left and right:
            return ("and" if isinstance(node, nodes.And) else "or", left, right)
        return None
    if (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "tagged"
        and len(node.args) == 1
        and isinstance(node.args[0], nodes.Const)
    ):
        return ("tag", node.args[0].value)
    return None
