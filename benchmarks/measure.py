"""Measuring helpers: timers around named functions, summaries, peak memory, child processes, profiles.

Nothing here knows launchkit; ``benchmarks.tick`` says what to measure.
"""

from __future__ import annotations

import cProfile
import hashlib
import importlib
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

#: The folder holding the ``benchmarks`` package: children run from there so ``-m`` finds it.
ROOT = Path(__file__).resolve().parent.parent
_RESULT = "BENCHMARK-RESULT "


class BenchmarkError(RuntimeError):
    """A scenario did not do what it must (wrong counts, a child crashed): its figures mean nothing."""


def exit_with(main: Callable[[], int]) -> None:
    """Run a benchmark's ``main`` as a command: its exit code, or 1 with one line when a
    scenario did not do what it must (``BenchmarkError``)."""
    try:
        sys.exit(main())
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p90 (inclusive quantiles), min and max of some samples."""
    if len(samples) == 1:
        p90 = samples[0]
    else:
        p90 = statistics.quantiles(samples, n=10, method="inclusive")[-1]
    return {"median": statistics.median(samples), "p90": p90, "min": min(samples), "max": max(samples), "n": len(samples)}


@dataclass
class Stopwatch:
    """Wall and CPU seconds of a block: ``with Stopwatch() as sw: ...; sw.wall``."""

    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


@dataclass
class Spans:
    """Wall seconds spent inside named functions while the block runs.

    Each target is ``(owner, attribute)``: a module function or a class method, replaced by a
    timing wrapper for the duration of the block and restored after. This times the real code
    path (no copy of its wiring); a target that no longer exists is skipped, not an error, so the
    benchmark survives refactors of the code it watches. Time in a span includes its callees.
    """

    targets: dict[str, tuple[object, str]]
    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def __enter__(self) -> Spans:
        self._restore: list[tuple[object, str, Any]] = []
        for name, (owner, attribute) in self.targets.items():
            original = owner.__dict__.get(attribute) if isinstance(owner, type) else getattr(owner, attribute, None)
            if original is None:
                continue
            self.seconds[name], self.calls[name] = 0.0, 0
            setattr(owner, attribute, self._wrap(name, original))
            self._restore.append((owner, attribute, original))
        return self

    def __exit__(self, *_: object) -> None:
        for owner, attribute, original in reversed(self._restore):
            setattr(owner, attribute, original)

    def _wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed


@contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    """cProfile the block into ``path`` (.prof) plus a readable top-40 (.txt); nothing when None."""
    if path is None:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        path.parent.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(path.with_suffix(".prof"))
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text).strip_dirs()
        for order in ("tottime", "cumulative"):
            text.write(f"\n===== top 40 by {order} =====\n")
            stats.sort_stats(order).print_stats(40)
        path.with_suffix(".txt").write_text(text.getvalue(), encoding="utf-8")


def child_env(code: Path | None = None) -> dict[str, str]:
    """The environment of a child process: ``code`` (a snapshot of the code) first on its path."""
    path = [str(code or ROOT), os.environ.get("PYTHONPATH")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def run_child(target: str, *, code: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """Call ``module:function(**kwargs)`` in a fresh interpreter and return its JSON result.

    A fresh process per call keeps sizes from polluting each other's peak memory and caches.
    ``code`` is a folder holding the packages to run (see :func:`snapshot`); the child starts
    there, since ``-m`` puts its working folder first on the path. The child's stderr (progress
    lines) passes through.
    """
    command = [sys.executable, "-m", "benchmarks.measure", target, json.dumps(kwargs)]
    done = subprocess.run(command, cwd=code or ROOT, env=child_env(code), stdout=subprocess.PIPE, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT)]
    if done.returncode != 0 or not lines:
        raise BenchmarkError(f"{target} failed in its child process (exit code {done.returncode}); see its output above")
    return json.loads(lines[-1][len(_RESULT) :])


def snapshot(dest: Path, packages: dict[str, str], *, rev: str | None = None, working_tree: Sequence[str] = ()) -> dict[str, Any]:
    """Freeze the code under test: copy each ``package: folder`` of the repository into ``dest``.

    The working tree is copied as it is, or, with ``rev``, the folders at that git revision
    (``git archive``, which changes nothing in the repository); a folder git does not know at
    ``rev``, or a package named in ``working_tree`` (the benchmark's own code, say), comes from
    the working tree. Other people may edit the code while a long run goes on: every child runs
    this copy, so one run measures one version. ``benchmarks/out`` (results) is not copied.
    Returns where the code came from and a fingerprint of it.
    """
    dest.mkdir(parents=True)
    results = ROOT / "benchmarks" / "out"

    def ignore(folder: str, names: list[str]) -> list[str]:
        skipped = [n for n in names if n == "__pycache__" or n.endswith(".pyc")]
        return skipped + (["out"] if Path(folder) == results.parent and "out" in names else [])

    for package, folder in packages.items():
        source = ROOT / folder
        target = dest / package
        if rev is not None and package not in working_tree and _git("ls-tree", "--name-only", rev, folder):
            archive = subprocess.run(["git", "archive", "--format=tar", rev, folder], cwd=ROOT, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
            if folder != package:
                (dest / folder).rename(target)
        else:
            shutil.copytree(source, target, ignore=ignore)
    digest = hashlib.sha256()
    for path in sorted(dest.rglob("*")):
        if path.is_file() and path.parts[len(dest.parts)] != "benchmarks":
            digest.update(str(path.relative_to(dest)).encode() + b"\0" + path.read_bytes())
    return {"source": f"git {rev}" if rev else "working tree", "head": _git("rev-parse", "--short", "HEAD"), "fingerprint": digest.hexdigest()[:12]}


def _git(*args: str) -> str:
    """Output of a read-only git command in the repository ('' when it fails)."""
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def _child_main(argv: list[str]) -> None:
    module_name, function_name = argv[0].split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(**json.loads(argv[1]))
    print(_RESULT + json.dumps(result), flush=True)


def outbox_rows(folder: Path) -> dict[str, dict[str, int]]:
    """Outbox rows by status, then by email (``launchkit.store.outbox.counts``)."""
    from launchkit.project import Project
    from launchkit.store import outbox

    project = Project.open(folder)
    with project.store.connect() as conn:
        counts = outbox.counts(conn)
    project.store.close()
    rows: dict[str, dict[str, int]] = {}
    for (_launch, email, status), n in counts.items():
        rows.setdefault(status, {})[email] = rows.get(status, {}).get(email, 0) + n
    return rows


def progress(size: int, message: str) -> None:
    """A progress line on stderr, prefixed with the audience size it is about."""
    print(f"[{size:>9,}] {message}", file=sys.stderr, flush=True)


def leave_run_folder(run_dir: Path, data: dict[str, Any], keep: bool) -> None:
    """At the end of a run, keep its folder (named in ``data``) or delete it."""
    if keep:
        data["kept"] = str(run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)


def write_json(path: Path | None, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` (its folder created); nothing when None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU model and cores, RAM, OS, Python, SQLite, load, git HEAD."""
    import platform
    import sqlite3

    def proc(path: str, key: str) -> str | None:
        try:
            with open(path, encoding="utf-8") as lines:
                for line in lines:
                    name, _, value = line.partition(":")
                    if name.strip() == key:
                        return value.strip()
        except OSError:
            pass
        return None

    memory_kib = proc("/proc/meminfo", "MemTotal")
    changed = _git("status", "--porcelain", "--", "launchkit", "plugins", "benchmarks")
    return {
        "cpu": proc("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "ram_gib": round(int(memory_kib.split()[0]) / 1024**2, 1) if memory_kib else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "git_head": _git("rev-parse", "--short", "HEAD"),
        "git_changes": len(changed.splitlines()) if changed else 0,
    }


if __name__ == "__main__":
    _child_main(sys.argv[1:])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc; 0 for those gone or unreadable)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")
