"""The ``tick`` benchmark: what one ``launchkit run`` costs as the audience grows.

For each audience size, in a fresh temporary project made by ``launchkit init``'s
``init_project`` (the example launch: waitlist → open cart → close):

1. import N contacts tagged ``newsletter, waitlist`` from a generated CSV (``audience.import_csv``);
2. **plan**: a tick the evening before the waitlist starts. Nothing is due, so the tick is the
   first planning pass (7 outbox rows per contact with the example launch);
3. **idle after import**: ticks at that same moment, nothing due and nothing changed;
4. **idle, steady**: one contact is tagged (a later change), then ticks again;
5. **idle process**: the same tick as a cron job runs it, ``launchkit run`` in a new process;
6. **send**: in a new process (after one idle tick, so its imports are in the memory baseline),
   a tick when the waitlist opens: the ``welcome`` email is due for all N contacts and nothing
   else; the maildir provider writes N .eml files, which are counted.

Steps 1–4 run in one child process and step 6 in another, so each size's peak memory (RSS)
is its own. Every tick is ``launchkit.runner.tick(Project.open(dir, now=...))``, as
``launchkit run --now`` calls it; only the opening of the project is split up to time its parts.

The skeleton's ``[delivery] rate`` is removed (or set to ``rate``): paced at 50/s, a send would
measure the pacing, not launchkit. Every child runs a frozen copy of the code (``snapshot``).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.measure import (
    BenchmarkError,
    Spans,
    Stopwatch,
    child_env,
    leave_run_folder,
    machine,
    outbox_rows,
    peak_rss_mb,
    profiled,
    progress,
    run_child,
    snapshot,
    summary,
)
from benchmarks.scenario import IMPORT_AT, TODAY, write_audience_csv

PLAN_AT = f"{TODAY} 20:00"  #: the evening before the waitlist starts: nothing is due yet
PROCESS_TICKS = 5
DUE_EMAIL = "welcome"  #: the only email due when the waitlist starts ("join", in the waitlist phase)
#: What the benchmark freezes and runs: import name -> folder in the repository.
PACKAGES = {"launchkit": "launchkit", "launchkit_plugins": "plugins", "benchmarks": "benchmarks"}


def send_moment() -> str:
    """When the waitlist starts in a project created on TODAY: the ``welcome`` email is due then."""
    from launchkit.scaffold import skeleton_dates

    return skeleton_dates(TODAY)["@WAITLIST_STARTS@"]


def _tick_spans() -> dict[str, tuple[object, str]]:
    """The parts of a tick timed separately. Names are what the table prints."""
    from launchkit.engine import Tick
    from launchkit.project import Project
    from launchkit.store import contacts, outbox

    return {
        "provider": (Project, "provider"),  # building it: an HTTP provider makes its client (TLS context)
        "recover": (outbox, "recover"),
        "plan": (Tick, "plan"),
        "plan.load contacts": (contacts, "changed_since"),
        "plan.write rows": (outbox, "write_plan"),
        "facts": (contacts, "facts_for"),  # planning and send-time checks both load facts
        "entries": (outbox, "entries_for"),
        "dispatch": (Tick, "dispatch"),
        "dispatch.claim": (outbox, "claim"),
        "dispatch.checks+render": (Tick, "_check"),
        "dispatch.mark sending": (outbox, "mark_sending"),
        "dispatch.provider": (Tick, "_send"),
        "dispatch.settle": (outbox, "settle"),
    }


# --- the steps (each runs inside a child process) ------------------------------------


def configure_delivery(root: Path, rate: str | None) -> None:
    """Set (or remove) ``[delivery] rate`` in the project's launchkit.toml; check no cap applies."""
    from launchkit.project import Project

    config = root / "launchkit.toml"
    text = config.read_text(encoding="utf-8")
    line = f'rate = "{rate}"' if rate else "# rate: removed by the benchmark, which measures launchkit unpaced"
    text, found = re.subn(r"^rate\s*=.*$", line, text, count=1, flags=re.M)
    if not found and rate:
        text = re.sub(r"^\[delivery\]\s*$", f"[delivery]\n{line}", text, count=1, flags=re.M)
    config.write_text(text, encoding="utf-8")
    delivery = Project.open(root).config.delivery
    if (delivery.rate is None) != (rate is None) or delivery.daily_cap is not None or delivery.provider != "maildir":
        raise BenchmarkError(f"{config}: expected maildir, rate {rate or 'none'} and no daily_cap; found {delivery!r}")


def timed_tick(folder: Path, now: str) -> dict[str, Any]:
    """One tick with a freshly opened project, as a cron-started ``launchkit run`` does it.

    The start-up parts (the project and its launches, plugins, database) are loaded before
    ``tick()`` so each is timed alone; ``tick()`` then finds them ready and does its own work:
    the lock, the secret, the provider, and the engine (recover, plan, dispatch).
    """
    from launchkit.project import Project
    from launchkit.runner import tick

    seconds: dict[str, float] = {}
    started, cpu = time.perf_counter(), time.process_time()
    with Stopwatch() as sw:
        project = Project.open(folder, now=now)
        project.config
        project.launches
    seconds["project+launches"] = sw.wall
    with Stopwatch() as sw:
        project.plugins
    seconds["plugins"] = sw.wall
    with Stopwatch() as sw:
        project.store.ensure_schema()
    seconds["store"] = sw.wall
    with Spans(_tick_spans()) as spans, Stopwatch() as sw:
        report = tick(project)
    seconds["tick"] = sw.wall
    seconds["total"] = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    project.store.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "plugins": {"loaded": [i.name for i in project.plugins.loaded], "errors": [i.name for i in project.plugins.errors]},
        "spans": spans.seconds,
        "report": {k: getattr(report, k) for k in ("planned", "sent", "retried", "failed", "missed", "skipped", "in_doubt", "locked")},
    }


def _total(rows: dict[str, dict[str, int]]) -> int:
    return sum(n for by_email in rows.values() for n in by_email.values())


def prepare(folder: str, size: int, idle_ticks: int, rate: str | None = None, profile_dir: str | None = None) -> dict[str, Any]:
    """Steps 1–4: a project with N planned contacts, and its idle ticks."""
    from launchkit import audience
    from launchkit.project import Project
    from launchkit.scaffold import init_project

    root = Path(folder)
    profile = _profile_path(profile_dir, size)
    assert datetime.fromisoformat(PLAN_AT) < datetime.fromisoformat(send_moment()), "PLAN_AT must come before anything is due"
    init_project(root, TODAY)
    configure_delivery(root, rate)
    csv_path = write_audience_csv(root / "benchmark-audience.csv", size)

    progress(size, "importing contacts")
    with Stopwatch() as imported:
        report = audience.import_csv(Project.open(root, now=IMPORT_AT), csv_path)
    if report.created != size or report.problems:
        raise BenchmarkError(f"imported {report.created} of {size} contacts ({len(report.problems)} problems)")

    progress(size, "first tick: planning")
    with profiled(profile("plan")):
        plan = timed_tick(root, PLAN_AT)
    rows = outbox_rows(root)
    if plan["report"]["sent"] or _total(rows) < size or rows.get("scheduled", {}).get(DUE_EMAIL) != size:
        raise BenchmarkError(f"the planning tick sent {plan['report']['sent']} and left {rows} in the outbox")

    progress(size, f"{idle_ticks} idle ticks after the import")
    with profiled(profile("idle-after-import")):
        idle_after_import = [timed_tick(root, PLAN_AT) for _ in range(idle_ticks)]

    # A later change to one contact: planning's "changed since" now starts after the import.
    project = Project.open(root, now=PLAN_AT)
    audience.tag(project, ["person0000000@example.com"], ["benchmark-touched"])
    project.store.close()
    timed_tick(root, PLAN_AT)  # plans that one change, like the cron tick a minute later
    progress(size, f"{idle_ticks} steady idle ticks")
    with profiled(profile("idle-steady")):
        idle_steady = [timed_tick(root, PLAN_AT) for _ in range(idle_ticks)]
    return {
        "code": _versions(),
        "moments": {"import": IMPORT_AT, "plan_and_idle": PLAN_AT, "send": send_moment()},
        "import": {"seconds": imported.wall, "cpu_seconds": imported.cpu, "created": report.created},
        "plan": plan,
        "outbox_rows": rows,
        "idle_after_import": idle_after_import,
        "idle_steady": idle_steady,
    }


def send(folder: str, size: int, profile_dir: str | None = None) -> dict[str, Any]:
    """Step 6, alone in its process: the tick that sends ``welcome`` to all N contacts."""
    root = Path(folder)
    mail = root / "mail" / "new"  # the skeleton's [delivery.maildir] path = "mail"
    before = _eml_count(mail)
    started_rss = peak_rss_mb()
    # An idle tick first, so the baseline holds what every tick imports and opens: the
    # growth measured after it is the send's own.
    timed_tick(root, PLAN_AT)
    baseline = peak_rss_mb()
    progress(size, f"sending {DUE_EMAIL!r} to {size:,} contacts")
    with profiled(_profile_path(profile_dir, size)("send")):
        result = timed_tick(root, send_moment())
    result["rss_mb"] = {"interpreter": started_rss, "baseline": baseline, "peak": peak_rss_mb()}
    result["eml_files"] = _eml_count(mail) - before
    result["outbox_rows"] = outbox_rows(root)
    sent = result["outbox_rows"].get("sent", {})
    if result["eml_files"] != size or result["report"]["sent"] != size or sent != {DUE_EMAIL: size}:
        raise BenchmarkError(
            f"expected {DUE_EMAIL!r} sent to {size} contacts and nothing else; the tick reported "
            f"{result['report']['sent']} sent, the outbox {sent}, and {result['eml_files']} .eml files were written"
        )
    return result


def _versions() -> dict[str, Any]:
    """What the child runs: where launchkit was imported from, and the versions that matter."""
    import sqlite3

    import launchkit
    import sqlalchemy

    return {
        "launchkit": launchkit.__version__,
        "launchkit_path": str(Path(launchkit.__file__).parent),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
    }


def _eml_count(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.name.endswith(".eml"))


def _profile_path(profile_dir: str | None, size: int) -> Callable[[str], Path | None]:
    return lambda stage: Path(profile_dir) / f"{stage}-{size}" if profile_dir else None


# --- the run (in the parent process) ---------------------------------------------------


def process_ticks(folder: Path, count: int, code: Path | None) -> list[float]:
    """Wall seconds of ``launchkit run --quiet`` as a new process (interpreter and imports included)."""
    script = Path(sys.executable).parent / "launchkit"
    command = [str(script)] if script.exists() else [shutil.which("launchkit") or "launchkit"]
    command += ["--project", str(folder), "run", "--quiet", "--now", PLAN_AT]
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=folder, env=child_env(code), capture_output=True, text=True)
        samples.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise BenchmarkError(f"`{' '.join(command)}` failed:\n{done.stderr}")
    return samples


def run_size(size: int, *, run_dir: Path, code: Path, idle_ticks: int, rate: str | None, profile_dir: Path | None) -> dict[str, Any]:
    """The whole scenario for one audience size, in a new project under ``run_dir``."""
    folder = Path(tempfile.mkdtemp(prefix=f"project-{size}-", dir=run_dir))
    profile = str(profile_dir.resolve()) if profile_dir else None
    try:
        result = run_child(
            "benchmarks.tick:prepare", code=code, folder=str(folder), size=size, idle_ticks=idle_ticks, rate=rate, profile_dir=profile
        )
        progress(size, f"{PROCESS_TICKS} idle `launchkit run` processes")
        result["idle_process"] = process_ticks(folder, PROCESS_TICKS, code)
        result["send"] = run_child("benchmarks.tick:send", code=code, folder=str(folder), size=size, profile_dir=profile)
        result["project"] = str(folder)
        return result
    finally:
        # The .eml files alone take ~4 KB a message: free the disk before the next size.
        shutil.rmtree(folder / "mail", ignore_errors=True)


def run(
    sizes: Sequence[int],
    *,
    memory_sizes: Sequence[int] = (),
    idle_ticks: int = 20,
    repeat: int = 1,
    rate: str | None = None,
    rev: str | None = None,
    workdir: Path | None = None,
    keep: bool = False,
    profile_dir: Path | None = None,
    checkpoint: Callable[[dict[str, Any]], None] = lambda data: None,
) -> dict[str, Any]:
    """Run every size (``sizes`` and ``memory_sizes``) ``repeat`` times; returns all raw figures.

    ``checkpoint`` gets the figures so far after each size, so a long run that fails late
    keeps what it measured.
    """
    run_dir = Path(tempfile.mkdtemp(prefix="launchkit-bench-", dir=workdir))
    data: dict[str, Any] = {
        "benchmark": "tick",
        "started": datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "code": snapshot(run_dir / "code", PACKAGES, rev=rev),
        "load_average": {"before": os.getloadavg()},
        "settings": {
            "sizes": sorted(sizes),
            "memory_sizes": sorted(memory_sizes),
            "idle_ticks": idle_ticks,
            "repeat": repeat,
            "rate": rate,
            "profiled": profile_dir is not None,
        },
        "results": {},
    }
    try:
        for size in sorted(set(sizes) | set(memory_sizes)):
            data["results"][str(size)] = [
                run_size(size, run_dir=run_dir, code=run_dir / "code", idle_ticks=idle_ticks, rate=rate, profile_dir=profile_dir)
                for _ in range(repeat)
            ]
            data["load_average"]["after"] = os.getloadavg()
            checkpoint(data)
    finally:
        leave_run_folder(run_dir, data, keep)
    return data


# --- the report ------------------------------------------------------------------------


def markdown(data: dict[str, Any]) -> str:
    """The figures as Markdown: one column per audience size, then the memory table."""
    results = data["results"]
    sizes = sorted(results, key=int)
    settings = data["settings"]
    lines = [f"### `launchkit run` at {', '.join(f'{int(s):,}' for s in sizes)} contacts", ""]
    if settings["profiled"]:
        lines += ["**Profiled run: cProfile inflates every timing below; use the profiles, not these figures.**", ""]
    lines += ["| figure | " + " | ".join(f"{int(s):,} contacts" for s in sizes) + " |", "|---|" + "---:|" * len(sizes)]

    def row(label: str, cell: Callable[[int, list[dict[str, Any]]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(int(s), results[s]) for s in sizes) + " |")

    row("import (`audience.import_csv`)", lambda n, rs: f"{_med(rs, 'import', 'seconds'):.1f} s · {n / _med(rs, 'import', 'seconds'):,.0f}/s")
    row("**plan**: first tick, wall", lambda n, rs: f"**{_med(rs, 'plan', 'seconds', 'total'):.1f} s**")
    row("plan: outbox rows written", lambda n, rs: f"{_med(rs, 'plan', 'report', 'planned'):,.0f} · {_med(rs, 'plan', 'report', 'planned') / _med(rs, 'plan', 'seconds', 'total'):,.0f} rows/s")
    for span in ("plan.load contacts", "facts", "entries", "plan.write rows"):
        row(f"plan › {span}", lambda n, rs, span=span: _share(rs, "plan", span))
    row("plan: CPU / wall", lambda n, rs: f"{_med(rs, 'plan', 'cpu_seconds') / _med(rs, 'plan', 'seconds', 'total'):.2f}")
    row("**send** (`welcome` to all): wall", lambda n, rs: f"**{_med(rs, 'send', 'seconds', 'total'):.1f} s**")
    row("**send: messages/s**", lambda n, rs: f"**{n / _med(rs, 'send', 'seconds', 'total'):,.0f}**")
    row("send: µs per message", lambda n, rs: f"{1e6 * _med(rs, 'send', 'seconds', 'total') / n:,.0f}")
    row("send: CPU / wall", lambda n, rs: f"{_med(rs, 'send', 'cpu_seconds') / _med(rs, 'send', 'seconds', 'total'):.2f}")
    row("send: .eml files / sent (verified)", lambda n, rs: f"{_med(rs, 'send', 'eml_files'):,.0f} / {_med(rs, 'send', 'report', 'sent'):,.0f}")
    for span in ("plan", "dispatch.claim", "dispatch.checks+render", "dispatch.mark sending", "dispatch.provider", "dispatch.settle"):
        row(f"send › {span}", lambda n, rs, span=span: _share(rs, "send", span))
    for key, title in (("idle_after_import", "idle tick after the import"), ("idle_steady", "idle tick, steady")):
        row(f"**{title}**: median / p90", lambda n, rs, key=key: "**" + _ms_pair(_pool(rs, key, "total")) + "**")
        row(f"{title}: rows re-planned per tick", lambda n, rs, key=key: f"{_pool_median(rs, key, ('report', 'planned')):,.0f}")
        for part in ("project+launches", "plugins", "store", "tick"):
            row(f"{title} › {part}", lambda n, rs, key=key, part=part: _ms_pair(_pool(rs, key, part)))
        for span in ("recover", "plan", "dispatch"):
            row(f"{title} › tick › {span}", lambda n, rs, key=key, span=span: _ms_pair(_pool_spans(rs, key, span)))
    row("idle `launchkit run` process: median / p90", lambda n, rs: _ms_pair([x for r in rs for x in r["idle_process"]]))
    row("send: peak RSS (after an idle tick)", lambda n, rs: f"{_med(rs, 'send', 'rss_mb', 'peak'):.0f} MiB ({_med(rs, 'send', 'rss_mb', 'baseline'):.0f})")

    memory = [str(s) for s in settings["memory_sizes"] if str(s) in results] or sizes
    lines += ["", "### Peak memory of the send tick (one process per size)", "", "| contacts | peak RSS | after an idle tick | growth in the send |", "|---:|---:|---:|---:|"]
    for s in memory:
        peak, base = _med(results[s], "send", "rss_mb", "peak"), _med(results[s], "send", "rss_mb", "baseline")
        lines.append(f"| {int(s):,} | {peak:.0f} MiB | {base:.0f} MiB | {peak - base:.0f} MiB |")
    if len(memory) > 1:
        small, large = memory[0], memory[-1]
        ratio = _med(results[large], "send", "rss_mb", "peak") / _med(results[small], "send", "rss_mb", "peak")
        growth = [_med(results[s], "send", "rss_mb", "peak") - _med(results[s], "send", "rss_mb", "baseline") for s in (small, large)]
        lines += [
            "",
            f"peak({int(large):,}) / peak({int(small):,}) = **{ratio:.2f}×** for {int(large) / int(small):.0f}× the contacts "
            f"(growth in the send: {growth[1] / growth[0]:.2f}×)",
        ]
    load, code, first = data["load_average"], data["code"], results[sizes[0]][0]
    versions, plugins = first["code"], first["plan"]["plugins"]
    lines += [
        "",
        f"Code: {code['source']} (HEAD {code['head']}, fingerprint {code['fingerprint']}); Python {versions['python']}, "
        f"SQLite {versions['sqlite']}, SQLAlchemy {versions['sqlalchemy']}; {data['machine']['cpus']} CPUs, load average "
        f"{load['before'][0]:.2f} before, {load.get('after', load['before'])[0]:.2f} after. Delivery rate: "
        f"{settings['rate'] or 'unpaced'}. Plugins loaded: {', '.join(plugins['loaded']) or 'none'}"
        f"{'; failed to load: ' + ', '.join(plugins['errors']) if plugins['errors'] else ''}. "
        f"{settings['repeat']} run(s) per size, {settings['idle_ticks']} idle ticks per kind per run; medians across runs.",
    ]
    return "\n".join(lines)


def _dig(value: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        value = value[key]
    return value


def _med(runs: list[dict[str, Any]], *keys: str) -> float:
    return statistics.median(float(_dig(r, keys)) for r in runs)


def _pool(runs: list[dict[str, Any]], key: str, part: str) -> list[float]:
    return [t["seconds"][part] for r in runs for t in r[key]]


def _pool_spans(runs: list[dict[str, Any]], key: str, span: str) -> list[float]:
    return [t["spans"].get(span, 0.0) for r in runs for t in r[key]]


def _pool_median(runs: list[dict[str, Any]], key: str, keys: Sequence[str]) -> float:
    return statistics.median(float(_dig(t, keys)) for r in runs for t in r[key])


def _ms_pair(samples: list[float]) -> str:
    figures = summary(samples)
    return f"{1000 * figures['median']:,.1f} / {1000 * figures['p90']:,.1f} ms"


def _share(runs: list[dict[str, Any]], stage: str, span: str) -> str:
    spans = [r[stage]["spans"] for r in runs]
    if not all(span in s for s in spans):
        return "–"
    seconds = statistics.median(s[span] for s in spans)
    total = _med(runs, stage, "seconds", "total")
    return f"{seconds:.1f} s ({100 * seconds / total:.0f} %)"
