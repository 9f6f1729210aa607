"""`launchkit check`: everything that can be wrong before anything is sent, found at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from launchkit.compose import Composer
from launchkit.conditions import ConditionError, Facts
from launchkit.config import load_config
from launchkit.errors import ConfigError, LaunchkitError, Problem
from launchkit.project import Project
from launchkit.runner import SAMPLE_CONTACT
from launchkit.spec import Launch, launch_files, load_launch

# Templates are rendered with a throwaway secret: checking must not need the database.
_CHECK_SECRET = "check"


@dataclass
class CheckReport:
    launches: list[Launch] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(project: Project) -> CheckReport:
    """Validate settings, launches, bodies, conditions and plugins; collect every problem."""
    report = CheckReport()
    try:
        config = load_config(project.root)
    except ConfigError as exc:
        report.problems += exc.problems
        return report
    plugins = project.plugins
    report.problems += [Problem(None, f"plugin {p.name!r} ({p.source}): {p.error}") for p in plugins.errors]
    report.problems += [Problem(None, message) for registry in plugins.registries().values() for message in registry.problems]
    for name in config.webhooks:
        try:
            project.webhook(name)  # its plugin, its settings and their ${VAR}s
        except ConfigError as exc:
            report.problems += exc.problems
    try:
        project.provider()  # builds it: its plugin, its settings and their ${VAR}s
    except ConfigError as exc:
        report.problems += exc.problems

    for path in launch_files(project.root):
        try:
            launch = load_launch(path, config)
        except ConfigError as exc:
            report.problems += exc.problems
            continue
        report.launches.append(launch)
        composer = Composer(config, launch, project.root, _CHECK_SECRET, plugins.hook)
        report.problems += _condition_problems(launch)
        for email in launch.emails:
            try:
                composer.compiled(email)
                start, end = launch.window(email.phase, SAMPLE_CONTACT.created_at if launch.evergreen else None)
                composer.compose(email, SAMPLE_CONTACT, (start, end), start)
            except ConfigError as exc:
                report.problems += exc.problems
            except LaunchkitError as exc:
                report.problems.append(Problem(email.body, str(exc)))
    if not launch_files(project.root):
        report.problems.append(Problem(project.root / "sequences", "no launch files (sequences/*.toml)"))
    # A broken layout is reported once, not once per email it wraps.
    report.problems = list({str(p): p for p in report.problems}.values())
    return report


def _condition_problems(launch: Launch) -> list[Problem]:
    """Conditions that fail when evaluated (comparing text with a number…) on a sample contact."""
    problems = []
    context = {"launch": launch.spec, "now": SAMPLE_CONTACT.created_at}
    for key, condition in [("launch.audience", launch.audience)] + [
        (f"phase[{p.index + 1}].audience", p.audience) for p in launch.phases
    ] + [(f"{e.key}.{name}", getattr(e, name)) for e in launch.emails for name in ("only", "unless")]:
        if condition is None:
            continue
        try:
            condition.evaluate(SAMPLE_CONTACT, Facts(), context)
        except ConditionError as exc:
            problems.append(Problem(launch.path, f"condition {exc}", key=key))
    return problems
