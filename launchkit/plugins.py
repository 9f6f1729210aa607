"""Finding and loading plugins: launchkit's defaults, installed packages, the project's plugins/.

Each plugin loads on its own: one that fails to import or implements a hook that does not
exist is recorded in ``Plugins.errors`` and left out, and the others keep working.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

import pluggy

from launchkit import hookspecs
from launchkit.errors import LaunchkitError

#: launchkit's own plugins, loaded before installed ones. Kept as module names so that
#: nothing is imported until plugins are needed.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "launchkit.reporters.table",
    "launchkit.reporters.jsonfile",
    "launchkit.reporters.csvfile",
    "launchkit.reporters.html",
)

ENTRY_POINT_GROUP = "launchkit"


@dataclass
class PluginInfo:
    """One plugin as ``launchkit plugins`` shows it."""

    name: str
    source: str  #: "default", "installed" or "project"
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Plugins:
    """The loaded plugin manager and what happened while loading."""

    manager: pluggy.PluginManager
    loaded: list[PluginInfo]
    errors: list[PluginInfo]

    @property
    def hook(self) -> Any:
        return self.manager.hook

    def providers(self) -> Registry:
        return collect(self, "register_providers")

    def webhooks(self) -> Registry:
        return collect(self, "register_webhooks")

    def reporters(self) -> Registry:
        return collect(self, "register_reporters")

    def registries(self) -> dict[str, Registry]:
        """What plugins register, by kind: provider, webhook, reporter."""
        return {"provider": self.providers(), "webhook": self.webhooks(), "reporter": self.reporters()}

    def call_each(self, hook_name: str, argument: Callable[[str], Any], argument_name: str = "register") -> list[str]:
        """Call a start-up hook one plugin at a time, so a failure names its plugin and
        spares the others. ``argument(plugin_name)`` makes the hook's single argument."""
        problems = []
        for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{argument_name: argument(impl.plugin_name)})
            except Exception as exc:  # a broken plugin must not take the others down
                problems.append(f"plugin {impl.plugin_name!r} failed in {hook_name}: {exc!r}")
        return problems


@dataclass
class Registry:
    """Named things registered by plugins, with the names that two plugins claimed."""

    items: dict[str, Any]
    owners: dict[str, str]
    conflicts: dict[str, list[str]]
    problems: list[str]

    def get(self, name: str, what: str) -> Any:
        if name in self.conflicts:
            owners = ", ".join(self.conflicts[name])
            raise LaunchkitError(
                f"{what} {name!r} is registered by more than one plugin ({owners}); "
                f"uninstall one, or choose plugins with LAUNCHKIT_LOAD_PLUGINS."
            )
        if name not in self.items:
            known = ", ".join(sorted(self.items)) or "none"
            raise LaunchkitError(f"no {what} named {name!r} is installed (installed: {known}).")
        return self.items[name]


def collect(plugins: Plugins, hook_name: str) -> Registry:
    """Gather what every plugin registers through ``hook_name``."""
    items: dict[str, Any] = {}
    owners: dict[str, str] = {}
    conflicts: dict[str, list[str]] = {}

    def register_for(plugin_name: str) -> Callable[..., None]:
        def register(name: str, item: Any) -> None:
            if name in items:
                conflicts.setdefault(name, [owners[name]]).append(plugin_name)
                return
            items[name] = item
            owners[name] = plugin_name

        return register

    problems = plugins.call_each(hook_name, register_for)
    return Registry(items, owners, conflicts, problems)


def load_plugins(project_dir: Path | None) -> Plugins:
    """Build the plugin manager: defaults, then entry points, then ``project_dir/plugins/*.py``."""
    pm = pluggy.PluginManager("launchkit")
    pm.add_hookspecs(hookspecs)
    loaded: list[PluginInfo] = []
    errors: list[PluginInfo] = []

    def add(name: str, source: str, version: str | None, load: Callable[[], ModuleType]) -> None:
        try:
            module = load()
            pm.register(module, name=name)
        except Exception as exc:
            errors.append(PluginInfo(name, source, version, error=f"could not be loaded: {exc!r}{where_raised(exc)}"))
            return
        try:
            pm.check_pending()
        except pluggy.PluginValidationError:
            pm.unregister(module)
            errors.append(PluginInfo(name, source, version, error=_unknown_hooks(module)))
            return
        hooks = sorted(h.name for h in pm.get_hookcallers(module) or [])
        loaded.append(PluginInfo(name, source, version, hooks))

    for module_name in DEFAULT_PLUGINS:
        add(module_name.rsplit(".", 1)[-1], "default", None, lambda m=module_name: importlib.import_module(m))

    selected = _selected_entry_points()
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in entry_points:
        if selected is not None and ep.name not in selected:
            continue
        version = ep.dist.version if ep.dist else None
        add(ep.name, "installed", version, ep.load)

    if project_dir is not None:
        installed_files = _module_files(ep.module for ep in entry_points)
        for path in sorted((project_dir / "plugins").glob("*.py")):
            if path.name.startswith("_") or path.resolve() in installed_files:
                continue
            name = f"project:{path.stem}"
            add(name, "project", None, lambda p=path, n=name: _import_file(p, n))

    return Plugins(pm, loaded, errors)


def where_raised(exc: BaseException) -> str:
    """`` at FILE, line N``: where in a plugin's own code ``exc`` was raised (the last frame
    outside launchkit, pluggy and the import machinery), or "" when none is."""
    ours = str(Path(__file__).parent)
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in f.filename and f"{os.sep}pluggy{os.sep}" not in f.filename and not f.filename.startswith(ours)
    ]
    return f" at {frames[-1].filename}, line {frames[-1].lineno}" if frames else ""


def _unknown_hooks(module: ModuleType) -> str:
    known = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "launchkit_spec")]
    messages = []
    for name in dir(module):
        if hasattr(getattr(module, name), "launchkit_impl") and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (hooks: {', '.join(known)})"
            messages.append(f"implements {name!r}, which is not a launchkit hook{hint}")
    return "; ".join(messages) or "implements a hook launchkit does not know"


def _selected_entry_points() -> set[str] | None:
    """LAUNCHKIT_LOAD_PLUGINS: comma-separated entry-point names to load; empty loads none."""
    value = os.environ.get("LAUNCHKIT_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _module_files(module_names: Iterable[str]) -> set[Path]:
    """The source files of installed plugin modules, found without importing them.

    The repository is itself a demo project whose plugins/ folder holds the first-party
    plugins, which are installed through entry points: loading those files a second time
    as project plugins would make every provider name a conflict.
    """
    files = set()
    for name in module_names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec and spec.origin:
            files.add(Path(spec.origin).resolve())
    return files


def _import_file(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
