"""``python -m benchmarks.report``: the time and memory of ``launchkit report`` as history grows.

For each size, a project made by ``launchkit init`` (the example launch) gets a history
written straight into SQLite with ``INSERT … SELECT`` over generated series (fast enough
to make millions of rows in seconds), shaped like a real launch:

- N contacts, all ``newsletter``, 60 % also ``waitlist`` (entered over the two weeks before);
- outbox rows, sent: ``welcome`` and ``behind-the-scenes`` to the waitlist, ``doors-open``
  (two A/B variants) and ``faq`` to everyone — 3.2 rows per contact;
- events, about 5 per contact: a ``delivered`` per sent row, opens (60 % of the waitlist
  emails, 45 % / 40 % of the cart emails), clicks (10 % / 5 % / 10 %);
- purchases by 3 % of the contacts, credited to ``doors-open`` or ``faq``, 5 % refunded.

The rows are what launchkit itself would have written: times in SQLAlchemy's format
(microseconds included, which the report's range comparisons rely on), events with the A/B
variant of their delivery, and ``event_counts`` kept by the schema's own triggers as the
events go in, as they are for every writer (so generating takes longer than the inserts).

Then, in a fresh process per size, ``launchkit.report.build`` for the launch and its JSON
document are timed (best of ``--repeat``), with the process's peak RSS, so sizes compare:
memory must stay flat as events grow (the aggregates run in the database).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.measure import BenchmarkError, exit_with, peak_rss_mb, run_child

LAUNCH = "example-launch"
NOW = "2030-01-20 10:00"


def generate(folder: str, contacts: int) -> dict[str, Any]:
    """Make the project and its history; returns the row counts."""
    from launchkit.project import Project
    from launchkit.scaffold import init_project

    root = Path(folder)
    init_project(root, date(2030, 1, 1))
    project = Project.open(root)
    project.store.ensure_schema()
    path = project.store.url.split("///", 1)[1]
    project.store.close()
    started = time.perf_counter()
    db = sqlite3.connect(path)
    db.executescript(f"""
        PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
        CREATE TEMP TABLE n AS WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {contacts}) SELECT i FROM s;
        INSERT INTO contacts (id, email, first_name, fields, status, created_at, updated_at, revision)
          SELECT i, 'c' || i || '@example.com', 'C' || i, '{{}}', 'subscribed', '2029-12-01 10:00:00.000000', '2029-12-01 10:00:00.000000', 1 FROM n;
        INSERT INTO contact_tags SELECT i, 'newsletter', '2029-12-01 10:00:00.000000' FROM n;
        INSERT INTO contact_tags SELECT i, 'waitlist', datetime('2029-12-18 08:00:00', '+' || (i % 336) || ' hours') || '.000000' FROM n WHERE i % 10 < 6;
        INSERT INTO enrolments SELECT '{LAUNCH}', i, 'waitlist', datetime('2029-12-18 08:00:00', '+' || (i % 336) || ' hours') || '.000000' FROM n WHERE i % 10 < 6;
        INSERT INTO outbox (launch_id, email_id, contact_id, phase, variant, due_at, next_attempt_at, status, attempts, sent_at, updated_at)
          SELECT '{LAUNCH}', e.email_id, n.i, e.phase, CASE WHEN e.email_id = 'doors-open' THEN n.i % 2 ELSE 0 END,
                 e.at, e.at, 'sent', 1, e.at, e.at
          FROM n JOIN (SELECT 'welcome' AS email_id, 'waitlist' AS phase, '2030-01-02 09:00:00.000000' AS at, 1 AS waitlist_only
                       UNION ALL SELECT 'behind-the-scenes', 'waitlist', '2030-01-04 09:00:00.000000', 1
                       UNION ALL SELECT 'doors-open', 'open_cart', '2030-01-09 09:00:00.000000', 0
                       UNION ALL SELECT 'faq', 'open_cart', '2030-01-10 10:00:00.000000', 0) AS e
          ON e.waitlist_only = 0 OR n.i % 10 < 6;
        INSERT INTO events (kind, contact_id, launch_id, email_id, variant, occurred_at, source, external_id, data)
          SELECT 'delivered', contact_id, launch_id, email_id, variant, datetime(sent_at, '+1 minute') || '.000000', 'postmark', 'd' || id, '{{}}' FROM outbox;
        INSERT INTO events (kind, contact_id, launch_id, email_id, variant, occurred_at, source, external_id, data)
          SELECT 'opened', contact_id, launch_id, email_id, variant, datetime(sent_at, '+' || (contact_id % 600) || ' minutes') || '.000000', 'tracking', 'o' || id, '{{}}'
          FROM outbox WHERE (email_id IN ('welcome', 'behind-the-scenes') AND contact_id % 10 < 6)
                         OR (email_id = 'doors-open' AND contact_id % 20 < 9) OR (email_id = 'faq' AND contact_id % 5 < 2);
        INSERT INTO events (kind, contact_id, launch_id, email_id, variant, link, occurred_at, source, external_id, data)
          SELECT 'clicked', contact_id, launch_id, email_id, variant, 'checkout', datetime(sent_at, '+' || (contact_id % 600 + 1) || ' minutes') || '.000000', 'tracking', 'k' || id, '{{}}'
          FROM outbox WHERE (email_id = 'doors-open' AND contact_id % 10 = 0) OR (email_id = 'faq' AND contact_id % 20 = 1)
                         OR (email_id = 'welcome' AND contact_id % 10 = 2);
        INSERT INTO conversions (email, product, amount, currency, occurred_at, status, refunded_at, source, external_id, created_at, launch_id, email_id)
          SELECT 'c' || i || '@example.com', 'course', 99, 'USD', datetime('2030-01-09 09:30:00', '+' || (i % 110) || ' hours') || '.000000',
                 CASE WHEN i % 20 = 0 THEN 'refunded' ELSE 'paid' END, NULL, 'stripe', 'pi_' || i, '2030-01-15 00:00:00.000000',
                 '{LAUNCH}', CASE WHEN i % 2 = 0 THEN 'doors-open' ELSE 'faq' END
          FROM n WHERE i % 100 < 3;
        DROP TABLE n;
    """)
    db.commit()
    counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("contacts", "outbox", "events", "conversions")}
    db.execute("ANALYZE")
    db.close()
    counts["seconds"] = round(time.perf_counter() - started, 1)
    return counts


def measure(folder: str, repeat: int) -> dict[str, Any]:
    """Build the report ``repeat`` times in this (fresh) process: best time, peak RSS."""
    from launchkit.project import Project
    from launchkit.report import build

    baseline = peak_rss_mb()
    times, size = [], 0
    for _ in range(repeat):
        project = Project.open(Path(folder), now=NOW)
        started = time.perf_counter()
        report = build(project, LAUNCH)
        size = len(json.dumps(report.to_dict()))
        times.append(time.perf_counter() - started)
        project.store.close()
    headline = report.to_dict()["launch"]["headline"]
    return {"best_s": round(min(times), 3), "times_s": [round(t, 3) for t in times], "peak_rss_mb": round(peak_rss_mb(), 1),
            "baseline_rss_mb": round(baseline, 1), "json_bytes": size, "audience": headline["audience"], "buyers": headline["buyers"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="contact counts, comma-separated (default: 100000,1000000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", dest="json_out", type=Path)
    args = parser.parse_args(argv)
    results = []
    for size in [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]:
        with tempfile.TemporaryDirectory(prefix="lk-report-") as folder:
            print(f"[{size:,}] generating the history…", file=sys.stderr, flush=True)
            made = run_child("benchmarks.report:generate", folder=folder, contacts=size)
            print(f"[{size:,}] {made['events']:,} events, {made['outbox']:,} outbox rows in {made['seconds']} s; timing the report…", file=sys.stderr, flush=True)
            timed = run_child("benchmarks.report:measure", folder=folder, repeat=args.repeat)
            expected_buyers = len([i for i in range(1, size + 1) if i % 100 < 3 and i % 20 != 0])
            if timed["audience"] != size or timed["buyers"] != expected_buyers:
                raise BenchmarkError(f"the report says audience {timed['audience']}, buyers {timed['buyers']}; expected {size}, {expected_buyers}")
            results.append({"contacts": size, **made, **timed})
    print("| contacts | events | outbox rows | report (best of %d) | peak RSS | RSS before |" % args.repeat)
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['contacts']:,} | {r['events']:,} | {r['outbox']:,} | {r['best_s']:.2f} s | {r['peak_rss_mb']:.0f} MB | {r['baseline_rss_mb']:.0f} MB |")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    exit_with(main)
