"""The Python examples of the plugin documentation run as written: no undefined name.

Every ```python block of docs/plugins.md and docs/tutorial-provider.md is compiled and its
names resolved without running it (standard library only: ``symtable`` and ``ast``). A name
that is loaded but bound nowhere in the example (no import, def, class, assignment,
parameter, comprehension variable, ``except … as``, ``with … as``, ``global``) and is not a
builtin fails the test: copied into a plugin, that example would raise ``NameError``.
Names in annotations must be bound at module level too, even under
``from __future__ import annotations``. Names an example imports from launchkit must exist.

What counts as one example:

- in plugins.md, each block on its own;
- in tutorial-provider.md, a block introduced by its file name in italics (*`path`*) is a
  piece of that file: the pieces of one file are joined, in order, and checked as the file
  (tests/test_tutorial_provider.py checks that they are the example package's real files).

Not examples, and not checked here:

- a hook's signature, as each hook's section of plugins.md opens with
  (``before_send(message)``, ``template_context(launch, phase, email, contact) -> dict | None``):
  a block of one line, ``HOOK(ARGUMENTS)`` with an optional ``-> TYPE``, naming a hook of
  ``launchkit.hookspecs`` (tests/test_plugin_docs.py checks it against the hook);
- a block whose first line is a comment containing the word "fragment", and why:
  ``# fragment: the [delivery] part of a settings file``. It is reported as skipped. Use it
  only for a deliberate excerpt (a partial class, an excerpt of settings) that cannot be
  made whole; today no block needs it.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import symtable
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from launchkit import hookspecs

DOCS = Path(__file__).parent.parent / "docs"
DOCUMENTS = ("plugins.md", "tutorial-provider.md")
#: The tutorial whose tagged blocks are pieces of files, joined per file.
PIECEWISE = "tutorial-provider.md"

HOOKS = {name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "launchkit_spec")}
#: Names every module has besides the builtins.
MODULE_NAMES = {"__name__", "__file__", "__doc__", "__spec__", "__loader__", "__package__", "__builtins__", "__annotations__"}
KNOWN = set(dir(builtins)) | MODULE_NAMES

FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL)
FILE_TAG = re.compile(r"\*`(?P<path>[^`\s]+)`\*\s*$")
SIGNATURE = re.compile(r"^(?P<hook>\w+)\([\w, ]*\)(\s*->\s*.+)?$")


@dataclass
class Example:
    """One example: a block, or the joined pieces of one file of the tutorial."""

    document: str
    title: str  #: ``plugins.md:LINE`` or ``tutorial-provider.md:PATH``
    lines: list[tuple[int, str]] = field(default_factory=list)  #: (line in the document, text)

    @property
    def source(self) -> str:
        return "\n".join(text for _, text in self.lines) + "\n"

    def where(self, lineno: int) -> str:
        """Where line ``lineno`` (1-based, of ``source``) is in the document."""
        return f"docs/{self.document}, line {self.lines[lineno - 1][0]}"


def blocks(document: str) -> list[tuple[int, str | None, str]]:
    """Each python block of ``document``: (line of its first line, its file tag or None, text)."""
    text = (DOCS / document).read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        first_line = text.count("\n", 0, match.start("body")) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        tag = FILE_TAG.match(before.strip())
        found.append((first_line, tag["path"] if tag else None, textwrap.dedent(match["body"]).rstrip("\n")))
    return found


def is_signature(text: str) -> bool:
    lines = [line for line in text.split("\n") if line.strip()]
    return len(lines) == 1 and bool(signature := SIGNATURE.match(lines[0].strip())) and signature["hook"] in HOOKS


def fragment(text: str) -> str | None:
    """The reason a block is a fragment, or None."""
    first = text.lstrip("\n").split("\n", 1)[0].strip()
    return first if first.startswith("#") and "fragment" in first.lower() else None


def examples() -> list[Example | pytest.ParameterSet]:
    found: list[Example | pytest.ParameterSet] = []
    for document in DOCUMENTS:
        files: dict[str, Example] = {}
        for first_line, tag, text in blocks(document):
            if is_signature(text):
                continue
            reason = fragment(text)
            if reason is not None:
                title = f"{document}:{first_line}"
                found.append(pytest.param(Example(document, title), id=title, marks=pytest.mark.skip(reason=reason)))
                continue
            numbered = [(first_line + i, line) for i, line in enumerate(text.split("\n"))]
            if document == PIECEWISE and tag is not None:
                if tag not in files:
                    files[tag] = Example(document, f"{document}:{tag}")
                    found.append(files[tag])
                files[tag].lines += numbered
            else:
                found.append(Example(document, f"{document}:{first_line}", numbered))
    return found


EXAMPLES = examples()


def ids(example: Example | pytest.ParameterSet) -> str:
    return example.title if isinstance(example, Example) else str(example.id)


def undefined_names(source: str) -> set[str]:
    """Names loaded in ``source`` but bound nowhere in it, and not builtins."""
    top = symtable.symtable(source, "<example>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    loaded: set[str] = {s.get_name() for s in top.get_symbols() if s.is_referenced() and s.get_name() not in bound}
    tables = list(top.get_children())
    while tables:
        table = tables.pop()
        tables += table.get_children()
        for symbol in table.get_symbols():
            if symbol.is_declared_global() and symbol.is_assigned():
                bound.add(symbol.get_name())  # `global x; x = …` binds x in the module
            elif symbol.is_global() and symbol.is_referenced():
                loaded.add(symbol.get_name())  # resolved in the module, then the builtins
    # Annotations: symtable leaves them out under `from __future__ import annotations`.
    for node in ast.walk(ast.parse(source)):
        annotations = []
        if isinstance(node, ast.arg) and node.annotation is not None:
            annotations.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for annotation in annotations:
            loaded |= {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)}
    return loaded - bound - KNOWN


def first_use(source: str, name: str) -> int:
    return min((n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and n.id == name), default=1)


def test_the_documents_have_examples_to_check() -> None:
    checked = [e for e in EXAMPLES if isinstance(e, Example)]
    assert sum(e.document == "plugins.md" for e in checked) >= 8
    assert {e.title for e in checked} >= {f"{PIECEWISE}:launchkit_example_provider/__init__.py", f"{PIECEWISE}:tests/test_example_provider.py"}


@pytest.mark.parametrize("example", EXAMPLES, ids=ids)
def test_every_name_an_example_uses_is_defined(example: Example) -> None:
    source = example.source
    try:
        compile(source, example.title, "exec", dont_inherit=True)
    except SyntaxError as exc:
        pytest.fail(f"{example.where(exc.lineno or 1)}: the example is not valid Python: {exc.msg}")
    problems = [
        f"{example.where(first_use(source, name))}: {name!r} is used but never imported nor defined"
        for name in sorted(undefined_names(source), key=lambda n: first_use(source, n))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("example", EXAMPLES, ids=ids)
def test_what_an_example_imports_from_launchkit_exists(example: Example) -> None:
    problems = []
    for node in ast.walk(ast.parse(example.source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "launchkit":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        problems.append(f"{example.where(node.lineno)}: {node.module} has no {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "launchkit":
                    try:
                        importlib.import_module(alias.name)
                    except ImportError:
                        problems.append(f"{example.where(node.lineno)}: there is no module {alias.name}")
    assert not problems, "\n".join(problems)
