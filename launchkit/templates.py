"""Email bodies and subjects: compiled once per email, rendered per contact.

A body is ``NAME.md`` (Markdown with Jinja inside, giving both an HTML and a plain-text
version) or ``NAME.html`` with an optional ``NAME.txt``. Either may start with TOML front
matter between two ``+++`` lines (``subject``, ``preheader``…). All the expensive work —
front matter, Markdown, the text version, Jinja compilation, the layout — happens in
:func:`compile_body`; :meth:`CompiledBody.render` is only compiled Jinja renders, because a
send may render a body a hundred thousand times.
"""

from __future__ import annotations

import builtins
import copy
import difflib
import functools
import re
import secrets
import tomllib
import weakref
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, Literal, Mapping

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from launchkit.errors import LaunchkitError

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

__all__ = [
    "CompiledBody",
    "TemplateError",
    "compile_body",
    "compile_subject",
    "make_environment",
    "render_subject",
    "specialize",
    "split_front_matter",
]


class TemplateError(LaunchkitError, ValueError):
    """A mistake in a body, subject or layout; ``line`` is the line in the source file, when known."""

    def __init__(self, message: str, line: int | None = None):
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


# --- the Jinja environment ---------------------------------------------------------------


def format_datetime(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """The ``datetime`` filter: an aware datetime (or ISO string) formatted with ``fmt``; None gives ""."""
    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, (datetime, date)):
        return _strftime(value, fmt)
    raise TypeError(f"the datetime filter needs a date or datetime, not {type(value).__name__}")


@functools.lru_cache(maxsize=1024)
def _strftime(value: date, fmt: str) -> str:
    # A send formats the same few moments (the phase's end…) for every contact.
    return value.strftime(fmt)


def _none_as_empty(value: Any) -> Any:
    # Contact fields come from the database as None when unknown; "None" in an email is a bug.
    return "" if value is None else value


_PLAIN_DATA = frozenset({str, int, float, bool, type(None), datetime, date, Decimal, Markup})
_DICT_ATTRIBUTES = frozenset(dir(dict))
_MISSING = object()


class _EmailSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, remembering which attributes of which types it allows.

    Jinja's checks (``is_internal_attribute``, ``modifies_known_mutable``) look only at the
    object's type and the attribute's name, yet run on every ``contact.first_name`` or
    ``links.checkout`` of every render: about a fifth of a send's rendering. The answer per
    (type, name) is the same every time, so it is kept.
    """

    _CACHED = 4096  #: (type, name) pairs kept: templates use a few dozen

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._safe: dict[tuple[type, str], bool] = {}

    def make_globals(self, d: Mapping[str, Any] | None) -> dict[str, Any]:  # type: ignore[override]
        # A plain dict rather than Jinja's ChainMap over the environment's globals: every
        # render copies its template's globals into the context, and copying a ChainMap is
        # a third of a small template's render. The globals never change after start-up.
        return {**self.globals, **(d or {})}

    def getattr(self, obj: Any, attribute: str) -> Any:
        # The lookups of nearly every render (contact.first_name, links.checkout, phase.ends)
        # answered without the sandbox's checks, which could not refuse them: a public
        # attribute of launchkit's own context objects, or a key of a dict that is no dict
        # method's name, whose value is plain data (no method, nothing to mutate).
        if attribute[:1] != "_":
            owner = type(obj)
            if owner is dict:
                if attribute not in _DICT_ATTRIBUTES:
                    value = obj.get(attribute, _MISSING)
                    if type(value) in _PLAIN_DATA:
                        return value
            elif owner.__module__.startswith("launchkit."):
                value = builtins.getattr(obj, attribute, _MISSING)
                if type(value) in _PLAIN_DATA:
                    return value
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        key = (type(obj), attr)
        safe = self._safe.get(key)
        if safe is None:
            safe = super().is_safe_attribute(obj, attr, value)
            if len(self._safe) < self._CACHED:
                self._safe[key] = safe
        return safe


def make_environment(*, autoescape: bool) -> SandboxedEnvironment:
    """A new sandboxed environment for email templates: HTML autoescapes, text does not."""
    # Immutable: one context (links, launch) is shared by every contact of a send, so a
    # template must not be able to change it for the next one.
    env = _EmailSandbox(
        autoescape=autoescape,
        # Missing contact fields render empty, even chained (contact.address.city).
        undefined=jinja2.ChainableUndefined,
        finalize=_none_as_empty,
    )
    env.filters["datetime"] = format_datetime
    return env


@functools.cache
def _environment(autoescape: bool) -> SandboxedEnvironment:
    return make_environment(autoescape=autoescape)


_UNSUPPORTED_NODES: dict[type[nodes.Node], str] = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from … import",
}


def _check_names(env: jinja2.Environment, ast: nodes.Template, line_offset: int, where: str) -> None:
    # Jinja defers unknown filters inside {% if %} to render time: that would fail mid-send.
    for node in ast.find_all((nodes.Filter, nodes.Test, *_UNSUPPORTED_NODES)):
        line = node.lineno + line_offset
        if isinstance(node, (nodes.Filter, nodes.Test)):
            known = env.filters if isinstance(node, nodes.Filter) else env.tests
            if node.name not in known:
                kind = "filter" if isinstance(node, nodes.Filter) else "test"
                close = difflib.get_close_matches(node.name, list(known), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise TemplateError(f"{where}unknown {kind} '{node.name}'{hint}", line)
        else:
            tag = _UNSUPPORTED_NODES[type(node)]
            raise TemplateError(f"{where}{{% {tag} %}} is not available in emails: each body is one file", line)


def _parse(env: jinja2.Environment, source: str, *, line_offset: int = 0, where: str = "") -> nodes.Template:
    """Parse and check a template, turning Jinja's errors into TemplateErrors with the file's line."""
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"{where}{error.message or error}", error.lineno + line_offset) from None
    _check_names(env, ast, line_offset, where)
    return ast


def _compile(env: jinja2.Environment, source: str, *, line_offset: int = 0, where: str = "") -> jinja2.Template:
    return _template(env, source, _parse(env, source, line_offset=line_offset, where=where))


def _compile_generated(env: jinja2.Environment, source: str, what: str) -> jinja2.Template:
    # The creator's source already parsed cleanly, so a failure here means the conversion
    # separated Jinja tags that belong together (a tag inside an HTML comment, say).
    try:
        return _template(env, source)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(
            f"could not build the {what} ({error.message}); write it yourself in a .txt file next to the body"
        ) from None


def _uses_name(ast: nodes.Template, name: str) -> bool:
    return any(node.name == name for node in ast.find_all(nodes.Name))


# --- specialising a template for one send ---------------------------------------------------

#: The source of each compiled template, kept for :func:`specialize`: Jinja keeps no syntax
#: tree, and folding rewrites a tree in place, so each specialisation parses the source anew.
_SOURCES: weakref.WeakKeyDictionary[jinja2.Template, str] = weakref.WeakKeyDictionary()

#: The values folded into a template. Not None (``finalize`` prints it as "", which Jinja's
#: constant output would not) and not Markup (``~`` joins Markup differently at render time).
_FOLDED_TYPES = frozenset({str, int, float, bool})


def _template(env: jinja2.Environment, source: str, ast: nodes.Template | None = None) -> jinja2.Template:
    """Compile ``source`` (already parsed as ``ast``, when given), keeping it for :func:`specialize`."""
    template = env.from_string(ast if ast is not None else source)
    _SOURCES[template] = source
    return template


def specialize(template: jinja2.Template, values: Mapping[str, Any]) -> jinja2.Template:
    """``template`` with every expression that reads only ``values`` worked out once.

    A send renders one email for thousands of contacts with the same launch, phase, links
    and sender: ``{{ links.checkout }}`` or ``{{ phase.ends | datetime('%d/%m') }}`` give
    the same text each time. Folded into the template as constants, they become part of its
    static text, and each render only works out what is personal. Rendering the result with
    a context holding the same ``values`` gives exactly what ``template`` gives. An
    expression that calls a function, reads a name the template assigns (``{% set %}``,
    ``{% for %}``, macro arguments) or evaluates to anything but a plain str, int, float or
    bool is left to render time; so is an expression that fails (its error belongs to the
    render, as before).
    """
    source = _SOURCES.get(template)
    if source is None:
        return template
    env = template.environment
    ast = env.parse(source)
    assigned = {name.name for name in ast.find_all(nodes.Name) if name.ctx != "load"}
    folding = {name: value for name, value in values.items() if name not in assigned}
    return _template(env, source, _Fold(env, folding).visit(ast))


class _Fold(NodeTransformer):
    """Replaces each largest expression that reads only ``values`` with its value."""

    def __init__(self, env: jinja2.Environment, values: Mapping[str, Any]):
        self.values = values
        self.eval_ctx = nodes.EvalContext(env)

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> nodes.Node:
        if isinstance(node, nodes.Expr) and not isinstance(node, nodes.Const) and self._reads_only_values(node):
            value = self._value(node)
            if type(value) in _FOLDED_TYPES:
                return nodes.Const(value, lineno=node.lineno, environment=node.environment)
        return super().generic_visit(node, *args, **kwargs)

    def _reads_only_values(self, node: nodes.Expr) -> bool:
        names = [node] if isinstance(node, nodes.Name) else list(node.find_all(nodes.Name))
        calls = isinstance(node, nodes.Call) or any(True for _ in node.find_all(nodes.Call))
        return bool(names) and not calls and all(name.name in self.values for name in names)

    def _value(self, node: nodes.Expr) -> Any:
        # Evaluated on a copy whose names are constants: the sandbox's own attribute lookups
        # and filters, as at render time. The tree's environment is shared, not copied.
        copied = copy.deepcopy(node, {id(node.environment): node.environment})
        try:
            return _Substitute(self.values).visit(copied).as_const(self.eval_ctx)
        except nodes.Impossible:
            return None


class _Substitute(NodeTransformer):
    def __init__(self, values: Mapping[str, Any]):
        self.values = values

    def visit_Name(self, node: nodes.Name) -> nodes.Const:
        return nodes.Const(self.values[node.name], lineno=node.lineno, environment=node.environment)


# --- front matter --------------------------------------------------------------------------

_LINE_BREAK = re.compile(r"(?<=\n)|(?<=\r)(?!\n)")  # the line ends Jinja counts
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _lines(text: str) -> list[str]:
    return [line for line in _LINE_BREAK.split(text) if line]


def split_front_matter(source: str) -> tuple[dict[str, Any], str, int]:
    """Split ``+++``-fenced TOML front matter off a body: (front matter, body, number of lines removed)."""
    lines = _lines(source.removeprefix("\ufeff"))
    if not lines or lines[0].strip() != "+++":
        return {}, source, 0
    for closing, line in enumerate(lines[1:], start=1):
        if line.strip() == "+++":
            break
    else:
        raise TemplateError("front matter opened with '+++' is never closed: end it with another '+++' line", 1)
    toml_lines = lines[1:closing]
    try:
        front_matter = tomllib.loads("".join(toml_lines))
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        line = int(position.group(1)) + 1 if position else None  # + 1 for the opening '+++'
        message = _TOML_POSITION.sub("", message).replace(" (at end of document)", "")
        raise TemplateError(f"front matter is not valid TOML: {message}", line) from None
    _check_front_matter(front_matter, toml_lines)
    return front_matter, "".join(lines[closing + 1 :]), closing + 1


def _key_line(key: str, toml_lines: list[str]) -> int | None:
    pattern = re.compile(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(toml_lines, start=2):
        if pattern.match(line):
            return number
    return None


def _check_front_matter(front_matter: dict[str, Any], toml_lines: list[str]) -> None:
    subject = front_matter.get("subject")
    if subject is not None and not (
        isinstance(subject, str)
        or (isinstance(subject, list) and subject and all(isinstance(s, str) for s in subject))
    ):
        raise TemplateError(
            "front matter: subject must be a string or a list of strings (A/B variants)",
            _key_line("subject", toml_lines),
        )
    preheader = front_matter.get("preheader")
    if preheader is not None and not isinstance(preheader, str):
        raise TemplateError("front matter: preheader must be a string", _key_line("preheader", toml_lines))


# --- keeping Jinja away from Markdown and HTML conversions -----------------------------------

_JINJA = re.compile(
    r"""
      (?P<raw>\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\})
    | (?P<expression>\{\{(?:[^}'"]|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\}(?!\}))*\}\})
    | (?P<statement>\{%(?:[^%'"]|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|%(?!\}))*%\})
    | (?P<comment>\{\#.*?\#\})
    """,
    re.S | re.X,
)


class _Shelter:
    """Jinja tags swapped for plain alphanumeric words, which Markdown and HTML leave alone.

    Statements and comments (which print nothing) and expressions get different letters, so
    a paragraph holding only ``{% if %}`` can be told from one holding ``{{ name }}``.
    """

    def __init__(self, source: str):
        nonce = secrets.token_hex(3)
        while f"lkj{nonce}" in source.lower():
            nonce = secrets.token_hex(3)
        self.originals: dict[str, str] = {}
        by_source: dict[str, str] = {}

        def shelter(match: re.Match[str]) -> str:
            tag = match.group(0)
            if tag not in by_source:
                letter = "s" if match.lastgroup in ("statement", "comment") else "e"
                by_source[tag] = f"lkj{nonce}{letter}{len(by_source)}z"
                self.originals[by_source[tag]] = tag
            return by_source[tag]

        self.text = _JINJA.sub(shelter, source)
        self.any = re.compile(rf"lkj{nonce}[se]\d+z")
        self.statement = re.compile(rf"lkj{nonce}s\d+z")
        self.statements_only = re.compile(rf"\s*(?:lkj{nonce}s\d+z\s*)+")

    def restore(self, text: str) -> str:
        return self.any.sub(lambda match: self.originals[match.group(0)], text)

    def statements_in(self, text: str) -> str:
        return "".join(self.statement.findall(text))


# --- Markdown -------------------------------------------------------------------------------


@functools.cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # html=True: the creator wrote the body, raw HTML in it is intended.
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.add_render_rule("jinja_block", lambda self, tokens, idx, options, env: tokens[idx].content + "\n")
    return md


def _jinja_block(statements: str, level: int) -> Token:
    from markdown_it.token import Token

    return Token("jinja_block", "", 0, content=statements, level=level, block=True)


def _split_lines(children: list[Token]) -> tuple[list[list[Token]], list[Token]]:
    lines: list[list[Token]] = [[]]
    breaks: list[Token] = []
    for child in children:
        if child.type in ("softbreak", "hardbreak"):
            breaks.append(child)
            lines.append([])
        else:
            lines[-1].append(child)
    return lines, breaks


def _lift_block_tags(tokens: list[Token], shelter: _Shelter) -> list[Token]:
    """Take lines holding only ``{% … %}`` tags out of paragraphs, so no ``<p>`` is left empty or half-open.

    Such a line ends the paragraph before it, as a blank line would: ``{% if %}`` / text /
    ``{% else %}`` / text / ``{% endif %}`` gives two paragraphs, only one of them sent.
    """

    def tags_only(line: list[Token]) -> bool:
        return bool(line) and all(
            t.type == "text" and shelter.statements_only.fullmatch(t.content) for t in line
        )

    lifted: list[Token] = []
    index = 0
    while index < len(tokens):
        opening = tokens[index]
        # Tight list items are left alone: their paragraphs print no <p> anyway.
        if opening.type != "paragraph_open" or opening.hidden:
            lifted.append(opening)
            index += 1
            continue
        inline, closing = tokens[index + 1], tokens[index + 2]
        index += 3
        lines, breaks = _split_lines(inline.children or [])
        if not any(tags_only(line) for line in lines):
            lifted.extend((opening, inline, closing))
            continue
        tags: list[str] = []
        children: list[Token] = []
        for number, line in enumerate(lines):
            if tags_only(line):
                if children:
                    lifted.extend((opening, replace(inline, children=children), closing))
                    children = []
                tags.append("".join(t.content for t in line).strip())
                continue
            if tags:
                lifted.append(_jinja_block("\n".join(tags), opening.level))
                tags = []
            if children:
                children.append(breaks[number - 1])
            children.extend(line)
        if children:
            lifted.extend((opening, replace(inline, children=children), closing))
        if tags:
            lifted.append(_jinja_block("\n".join(tags), opening.level))
    return lifted


def _closing_index(tokens: list[Token], opening: int) -> int:
    depth = 0
    for index in range(opening, len(tokens)):
        depth += tokens[index].nesting
        if depth == 0:
            return index
    return len(tokens) - 1


def _link_text(label: str, href: str) -> str:
    if not href or href.startswith("#"):
        return label
    if not label or label == href:
        return href
    if href == f"mailto:{label}":
        return label
    return f"{label} ({href})"


def _inline_text(children: list[Token], shelter: _Shelter) -> str:
    parts: list[str] = []
    open_links: list[tuple[str, int]] = []
    for child in children:
        kind = child.type
        if kind in ("text", "code_inline"):
            parts.append(child.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif kind == "link_open":
            open_links.append((str(child.attrGet("href") or ""), len(parts)))
        elif kind == "link_close" and open_links:
            href, start = open_links.pop()
            parts[start:] = [_link_text("".join(parts[start:]).strip(), href)]
        elif kind == "image":
            parts.append(_inline_text(child.children or [], shelter))
        elif kind == "html_inline":
            if re.match(r"<br\b", child.content, re.I):
                parts.append("\n")
            else:
                # A tag's attributes may hold {% if %}…{% endif %}: keep them balanced.
                parts.append(shelter.statements_in(child.content))
    return "".join(parts)


def _list_text(tokens: list[Token], opening: int, closing: int, shelter: _Shelter) -> str:
    ordered = tokens[opening].type == "ordered_list_open"
    number = int(tokens[opening].attrGet("start") or 1)
    items: list[str] = []
    tight = False
    index = opening + 1
    while index < closing:
        if tokens[index].type != "list_item_open":
            index += 1
            continue
        item_close = _closing_index(tokens, index)
        inner = tokens[index + 1 : item_close]
        tight = tight or any(t.type == "paragraph_open" and t.hidden for t in inner)
        body = ("\n" if tight else "\n\n").join(_text_blocks(tokens, index + 1, item_close, shelter))
        marker = f"{number}. " if ordered else "- "
        indent = " " * len(marker)
        lines = body.split("\n")
        items.append("\n".join([marker + lines[0], *(indent + line if line else line for line in lines[1:])]))
        number += 1
        index = item_close + 1
    return ("\n" if tight else "\n\n").join(items)


def _table_text(tokens: list[Token], opening: int, closing: int, shelter: _Shelter) -> str:
    rows: list[str] = []
    cells: list[str] = []
    for token in tokens[opening:closing]:
        if token.type == "tr_open":
            cells = []
        elif token.type == "inline":
            cells.append(_inline_text(token.children or [], shelter).strip())
        elif token.type == "tr_close":
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _text_blocks(tokens: list[Token], start: int, end: int, shelter: _Shelter) -> list[str]:
    blocks: list[str] = []
    index = start
    while index < end:
        token = tokens[index]
        kind = token.type
        if kind in ("paragraph_open", "heading_open"):
            blocks.append(_inline_text(tokens[index + 1].children or [], shelter))
            index += 3
            continue
        if kind.endswith("_open"):
            closing = _closing_index(tokens, index)
            if kind in ("bullet_list_open", "ordered_list_open"):
                blocks.append(_list_text(tokens, index, closing, shelter))
            elif kind == "blockquote_open":
                quoted = "\n\n".join(_text_blocks(tokens, index + 1, closing, shelter))
                blocks.append("\n".join(f"> {line}" if line else ">" for line in quoted.split("\n")))
            elif kind == "table_open":
                blocks.append(_table_text(tokens, index, closing, shelter))
            else:
                blocks.extend(_text_blocks(tokens, index + 1, closing, shelter))
            index = closing + 1
            continue
        if kind in ("fence", "code_block"):
            blocks.append(token.content.rstrip("\n"))
        elif kind == "hr":
            blocks.append("---")
        elif kind == "html_block":
            blocks.append(_html_text(token.content, shelter))
        elif kind == "jinja_block":
            blocks.append(token.content)
        index += 1
    return blocks


def _markdown_to_jinja(body: str) -> tuple[str, str]:
    """The HTML and the plain-text Jinja sources of a Markdown body, from one Markdown parse."""
    shelter = _Shelter(body)
    md = _markdown()
    env: dict[str, Any] = {}
    tokens = _lift_block_tags(md.parse(shelter.text, env), shelter)
    html = md.renderer.render(tokens, md.options, env)
    text = "\n\n".join(_text_blocks(tokens, 0, len(tokens), shelter))
    return shelter.restore(html), shelter.restore(text)


# --- HTML to text ---------------------------------------------------------------------------

_BLOCK_ELEMENTS = frozenset(
    "address article aside blockquote body center dd div dl dt figcaption figure footer form "
    "h1 h2 h3 h4 h5 h6 header hr html main nav ol p pre section table tbody thead tfoot ul".split()
)
_SKIPPED_ELEMENTS = frozenset({"head", "script", "style", "template", "title"})
_VOID_ELEMENTS = frozenset("area base br col embed hr img input link meta source track wbr".split())
_HIDDEN = re.compile(r"display\s*:\s*none", re.I)


class _HtmlToText(HTMLParser):
    """A small HTML-to-text converter for the text version of an HTML body."""

    def __init__(self, shelter: _Shelter):
        super().__init__(convert_charrefs=True)
        self.shelter = shelter
        self.parts: list[str] = []
        self.open_links: list[tuple[str, int]] = []
        self.skipping: str | None = None
        self.skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # Statements in attributes (`<p {% if vip %}class="vip"{% endif %}>`) stay balanced.
        self.parts.append(self.shelter.statements_in(self.get_starttag_text() or ""))
        if self.skipping:
            self.skip_depth += tag == self.skipping
            return
        attributes = dict(attrs)
        if tag in _SKIPPED_ELEMENTS or _HIDDEN.search(attributes.get("style") or ""):
            if tag not in _VOID_ELEMENTS:
                self.skipping, self.skip_depth = tag, 1
            return
        if tag in _BLOCK_ELEMENTS or tag == "tr":
            self.parts.append("\n\n" if tag != "tr" else "\n")
        if tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "hr":
            self.parts.append("---\n\n")
        elif tag == "img":
            self.parts.append(attributes.get("alt") or "")
        elif tag == "a":
            self.open_links.append((attributes.get("href") or "", len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping:
                self.skip_depth -= 1
                if not self.skip_depth:
                    self.skipping = None
            return
        if tag == "a" and self.open_links:
            href, start = self.open_links.pop()
            label = " ".join("".join(self.parts[start:]).split())
            self.parts[start:] = [_link_text(label, href.strip())]
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            self.parts.append(self.shelter.statements_in(data))
        else:
            self.parts.append(re.sub(r"\s+", " ", data))

    def handle_comment(self, data: str) -> None:
        self.parts.append(self.shelter.statements_in(data))

    def text(self) -> str:
        text = re.sub(r" *\n *", "\n", "".join(self.parts))
        return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]{2,}", " ", text)).strip()


def _html_text(html: str, shelter: _Shelter) -> str:
    parser = _HtmlToText(shelter)
    parser.feed(html)
    parser.close()
    return parser.text()


def _html_to_jinja_text(body: str) -> str:
    shelter = _Shelter(body)
    return shelter.restore(_html_text(shelter.text, shelter))


# --- layouts --------------------------------------------------------------------------------

_FONT_STACK = (
    "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif,"
    "'Apple Color Emoji','Segoe UI Emoji'"
)

DEFAULT_LAYOUT_HTML = f"""<!DOCTYPE html>
<html lang="{{{{ lang or 'en' }}}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="x-apple-disable-message-reformatting">
<title>{{{{ subject }}}}</title>
<style>
  .lk-body p, .lk-body ul, .lk-body ol, .lk-body blockquote, .lk-body pre, .lk-body table {{ margin: 0 0 16px; }}
  .lk-body h1 {{ font-size: 26px; line-height: 1.3; margin: 0 0 16px; }}
  .lk-body h2 {{ font-size: 21px; line-height: 1.3; margin: 24px 0 12px; }}
  .lk-body h3 {{ font-size: 18px; line-height: 1.3; margin: 20px 0 8px; }}
  .lk-body a {{ color: #2563eb; }}
  .lk-body img {{ max-width: 100%; height: auto; }}
  .lk-body blockquote {{ border-left: 3px solid #e5e7eb; padding-left: 12px; color: #4b5563; }}
  .lk-body code, .lk-body pre {{ font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 14px; }}
  .lk-body td, .lk-body th {{ border: 1px solid #e5e7eb; padding: 6px 10px; }}
  @media (max-width: 620px) {{ .lk-body {{ padding: 24px 18px !important; }} }}
</style>
</head>
<body style="margin:0;padding:0;background-color:#f4f4f5;">
{{% if preheader %}}<span style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all;">{{{{ preheader }}}}</span>{{% endif %}}
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="background-color:#f4f4f5;">
<tr><td align="center" style="padding:24px 12px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="max-width:600px;background-color:#ffffff;border-radius:8px;">
<tr><td class="lk-body" style="padding:32px 28px;font-family:{_FONT_STACK};font-size:16px;line-height:1.6;color:#1f2937;text-align:left;">
{{{{ content }}}}
</td></tr>
</table>
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="max-width:600px;">
<tr><td style="padding:16px 28px;font-family:{_FONT_STACK};font-size:12px;line-height:1.5;color:#6b7280;text-align:center;">
<a href="{{{{ unsubscribe_url }}}}" style="color:#6b7280;text-decoration:underline;">{{{{ unsubscribe_text or "Unsubscribe" }}}}</a><br>
{{{{ sender.postal_address }}}}
</td></tr>
</table>
</td></tr>
</table>
</body>
</html>
"""

DEFAULT_LAYOUT_TEXT = """{{ content }}

-- \n{{ sender.postal_address }}
{{ unsubscribe_text or "Unsubscribe" }}: {{ unsubscribe_url }}
"""


@functools.cache
def _default_layout(autoescape: bool) -> jinja2.Template:
    return _template(_environment(autoescape), DEFAULT_LAYOUT_HTML if autoescape else DEFAULT_LAYOUT_TEXT)


def compile_layout(source: str, *, html: bool) -> jinja2.Template:
    """Compile a layout on its own, to report its mistakes once rather than with every body."""
    return _compile_layout(_environment(html), source, "layout" if html else "text layout")


def _compile_layout(env: jinja2.Environment, source: str, what: str) -> jinja2.Template:
    ast = _parse(env, source, where=f"{what}: ")
    if not _uses_name(ast, "content"):
        raise TemplateError(f"{what}: it has no {{{{ content }}}}, so the email body would never appear")
    if not _uses_name(ast, "unsubscribe_url"):
        raise TemplateError(f"{what}: it has no {{{{ unsubscribe_url }}}}; every email must carry an unsubscribe link")
    return _template(env, source, ast)


# --- bodies and subjects --------------------------------------------------------------------

_LINE_BREAKS = re.compile(r"\s*[\r\n\x0b\x0c\x85\u2028\u2029]+\s*")


def _tidy_text(text: str) -> str:
    # Tags whose branch was not taken leave blank lines behind; one blank line is a paragraph.
    # String methods, not regexes: this runs for every message, and they are several times faster.
    if " \n" in text or "\t\n" in text:
        text = "\n".join([line.rstrip(" \t") for line in text.split("\n")])
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()


@dataclass
class CompiledBody:
    """An email body compiled once; :meth:`render` fills it in for one contact."""

    html: jinja2.Template
    text: jinja2.Template
    front_matter: dict[str, Any]
    html_layout: jinja2.Template | None = None  #: None when the body is a whole HTML document
    text_layout: jinja2.Template | None = None
    preheader: jinja2.Template | None = field(default=None, repr=False)

    def render(self, context: Mapping[str, Any]) -> tuple[str, str]:
        """The (html, text) of this email for one contact's context."""
        values = dict(context)
        if self.preheader is not None and not values.get("preheader"):
            values["preheader"] = " ".join(self.preheader.render(values).split())
        html = self.html.render(values)
        text = _tidy_text(self.text.render(values))
        # ``values`` is this render's own copy: the layouts' content goes in it, not in new dicts.
        if self.html_layout is not None:
            values["content"] = Markup(html)
            html = self.html_layout.render(values)
        if self.text_layout is not None:
            values["content"] = text
            text = self.text_layout.render(values)
        return html, text

    def specialize(self, values: Mapping[str, Any]) -> CompiledBody:
        """This body for one send, the expressions that read only ``values`` worked out (:func:`specialize`)."""
        return replace(
            self,
            html=specialize(self.html, values),
            text=specialize(self.text, values),
            html_layout=self.html_layout and specialize(self.html_layout, values),
            text_layout=self.text_layout and specialize(self.text_layout, values),
            preheader=self.preheader and specialize(self.preheader, values),
        )


def _front_matter_templates(front_matter: dict[str, Any], source: str) -> jinja2.Template | None:
    """Check the front matter's subjects and compile its preheader, with errors at their line."""
    toml_lines = _lines(source)[1:]
    env = _environment(False)
    subject = front_matter.get("subject")
    for variant in [subject] if isinstance(subject, str) else subject or []:
        _parse(env, variant, line_offset=(_key_line("subject", toml_lines) or 1) - 1, where="subject: ")
    preheader = front_matter.get("preheader")
    if preheader is None:
        return None
    return _compile(env, preheader, line_offset=(_key_line("preheader", toml_lines) or 1) - 1, where="preheader: ")


def compile_body(
    source: str,
    *,
    kind: Literal["md", "html"],
    text_source: str | None = None,
    layout_html: str | None = None,
    layout_text: str | None = None,
) -> CompiledBody:
    """Compile a body (Markdown or HTML, optional front matter) and its layouts for fast per-contact renders."""
    front_matter, body, removed = split_front_matter(source)
    preheader = _front_matter_templates(front_matter, source)
    html_env, text_env = _environment(True), _environment(False)

    if kind == "md":
        # Check the creator's own source first: its line numbers are the ones they can find.
        _parse(html_env, body, line_offset=removed)
        html_source, derived_text = _markdown_to_jinja(body)
        html = _compile_generated(html_env, html_source, "HTML version")
        whole_document = False
    elif kind == "html":
        html_ast = _parse(html_env, body, line_offset=removed)
        html = _template(html_env, body, html_ast)
        derived_text = None if text_source is not None else _html_to_jinja_text(body)
        whole_document = re.search(r"<html[\s>]", body, re.I) is not None
        if whole_document and layout_html is None and not _uses_name(html_ast, "unsubscribe_url"):
            raise TemplateError(
                "this HTML body is a whole document, so no layout wraps it, and it has no "
                "{{ unsubscribe_url }}; every email must carry an unsubscribe link"
            )
    else:
        raise ValueError(f"kind must be 'md' or 'html', not {kind!r}")

    if text_source is not None:
        text = _compile(text_env, text_source, where="text version: ")
    else:
        assert derived_text is not None
        text = _compile_generated(text_env, derived_text, "text version")

    if layout_html is not None:
        html_layout: jinja2.Template | None = _compile_layout(html_env, layout_html, "layout")
    else:
        # A body that is already a whole <html> document cannot be nested in another one.
        html_layout = None if whole_document else _default_layout(True)
    text_layout = (
        _compile_layout(text_env, layout_text, "text layout") if layout_text is not None else _default_layout(False)
    )
    return CompiledBody(
        html=html,
        text=text,
        front_matter=front_matter,
        html_layout=html_layout,
        text_layout=text_layout,
        preheader=preheader,
    )


def compile_subject(source: str) -> jinja2.Template:
    """Compile a subject line (no autoescape: a header is not HTML)."""
    return _compile(_environment(False), source, where="subject: ")


def render_subject(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Render a subject for one contact, on one line: a header cannot contain CR or LF."""
    return _LINE_BREAKS.sub(" ", template.render(context)).strip()
