"""``python -m benchmarks tick [--sizes 10000,100000] [--json OUT]``: parse, run, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _sizes(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated contact counts like 10000,100000; found {value!r}") from None
    if any(n <= 0 for n in sizes):
        raise click.BadParameter("contact counts must be positive")
    return sizes


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """launchkit benchmarks."""


@main.command()
@click.option("--sizes", default="10000,100000", show_default=True, callback=_sizes, help="Audience sizes to time.")
@click.option(
    "--memory-sizes",
    default="10000,50000,100000",
    show_default=True,
    callback=_sizes,
    help="Sizes whose send peak RSS is compared (also run in full); '' for none.",
)
@click.option("--idle-ticks", default=20, show_default=True, type=click.IntRange(1), help="Idle ticks per kind per run.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1), help="Independent runs per size (medians reported).")
@click.option("--rate", help="Keep [delivery] rate pacing at this value ('50/s'); by default sends are unpaced.")
@click.option("--rev", help="Benchmark launchkit at this git revision (default: the working tree as it is at the start).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write every raw figure here (after each size).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Where the run's temporary folder goes (default: the system's).")
@click.option("--keep", is_flag=True, help="Keep the run's folder: the code snapshot and the projects (not their .eml files).")
@click.option("--profile", "profile_dir", type=click.Path(file_okay=False, path_type=Path), help="cProfile each stage into this folder (inflates timings).")
def tick(
    sizes: list[int],
    memory_sizes: list[int],
    idle_ticks: int,
    repeat: int,
    rate: str | None,
    rev: str | None,
    json_out: Path | None,
    workdir: Path | None,
    keep: bool,
    profile_dir: Path | None,
) -> None:
    """Time `launchkit run`: planning, sending N emails, idle ticks, peak memory."""
    from benchmarks import tick as benchmark
    from benchmarks.measure import BenchmarkError

    def checkpoint(data: dict[str, Any]) -> None:
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    if workdir:
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        data = benchmark.run(
            sizes,
            memory_sizes=memory_sizes,
            idle_ticks=idle_ticks,
            repeat=repeat,
            rate=rate,
            rev=rev,
            workdir=workdir,
            keep=keep,
            profile_dir=profile_dir,
            checkpoint=checkpoint,
        )
    except BenchmarkError as exc:
        saved = f" (figures of the sizes done so far are in {json_out})" if json_out else ""
        raise click.ClickException(f"the benchmark stopped: {exc}{saved}") from None
    checkpoint(data)
    click.echo(benchmark.markdown(data))


if __name__ == "__main__":
    main(prog_name="python -m benchmarks")
