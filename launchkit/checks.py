"""`launchkit check`: everything that can be wrong before anything is sent, found at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from launchkit.compose import Composer
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
    providers = plugins.providers()
    report.problems += [Problem(None, message) for message in providers.problems]
    try:
        providers.get(config.delivery.provider, "delivery provider")
    except LaunchkitError as exc:
        report.problems.append(Problem(project.root / "launchkit.toml", str(exc), key="delivery.provider"))

    for path in launch_files(project.root):
        try:
            launch = load_launch(path, config)
        except ConfigError as exc:
            report.problems += exc.problems
            continue
        report.launches.append(launch)
        composer = Composer(config, launch, project.root, _CHECK_SECRET, plugins.hook)
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
    return report
