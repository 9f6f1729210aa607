"""``python -m benchmarks suite|tick|compare …``: parse, run, print. See benchmarks/README.md."""

from __future__ import annotations

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
    from benchmarks.measure import BenchmarkError, write_json

    def checkpoint(data: dict[str, Any]) -> None:
        write_json(json_out, data)

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


@main.command()
@click.option("--sizes", default="10000,100000,1000000", show_default=True, callback=_sizes, help="Audience sizes, each measured in full.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write every figure here (after each size), for --compare.")
@click.option("--markdown", "markdown_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the table into this file, between its markers (e.g. docs/benchmarks.md), and its figures beside it (.json), for --compare.")
@click.option("--compare", "compare_with", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A previous run's JSON: print new/old ratios of every figure.")
@click.option("--idle-ticks", default=20, show_default=True, type=click.IntRange(1), help="Idle ticks timed per size.")
@click.option("--report-repeat", default=3, show_default=True, type=click.IntRange(1), help="Report builds per size (best kept).")
@click.option("--rev", help="Benchmark launchkit at this git revision (default: the working tree as it is at the start).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Where the run's temporary folder goes (default: the system's).")
@click.option("--keep", is_flag=True, help="Keep the run's folder: the code snapshot and the projects.")
def suite(
    sizes: list[int],
    json_out: Path | None,
    markdown_out: Path | None,
    compare_with: Path | None,
    idle_ticks: int,
    report_repeat: int,
    rev: str | None,
    workdir: Path | None,
    keep: bool,
) -> None:
    """The issue's figures at each size: send and its floor, plan, idle tick, report, peak RSS; targets met or missed."""
    from benchmarks import suite as benchmark
    from benchmarks.measure import BenchmarkError, write_json

    old = None
    try:
        old = benchmark.load(compare_with) if compare_with else None
        if workdir:
            workdir.mkdir(parents=True, exist_ok=True)
        data = benchmark.run(
            sizes,
            idle_ticks=idle_ticks,
            report_repeat=report_repeat,
            rev=rev,
            workdir=workdir,
            keep=keep,
            command=benchmark.command_line(),
            checkpoint=lambda data: write_json(json_out, data),
        )
    except BenchmarkError as exc:
        saved = f" (figures of the sizes done so far are in {json_out})" if json_out else ""
        raise click.ClickException(f"the benchmark stopped: {exc}{saved}") from None
    text = benchmark.markdown(data)
    click.echo(text)
    if markdown_out:
        benchmark.write_document(markdown_out, text)
        # The figures the document shows, without the raw samples: small enough to keep in git.
        write_json(markdown_out.with_suffix(".json"), {k: v for k, v in data.items() if k != "results"})
        click.echo(f"written into {markdown_out} and {markdown_out.with_suffix('.json')}", err=True)
    if old is not None:
        click.echo(benchmark.compare(data, old))


@main.command()
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def compare(old: Path, new: Path) -> None:
    """New/old ratios of every figure of two `suite --json` files (OLD first)."""
    from benchmarks import suite as benchmark
    from benchmarks.measure import BenchmarkError

    try:
        click.echo(benchmark.compare(benchmark.load(new), benchmark.load(old)))
    except BenchmarkError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main(prog_name="python -m benchmarks")
