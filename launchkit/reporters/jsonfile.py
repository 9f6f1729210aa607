"""``--format json``: the report as the JSON document of docs/report-schema.md."""

from __future__ import annotations

import json
from typing import Any, TextIO

from launchkit import hookimpl
from launchkit.types import Reporter


class JsonReporter(Reporter):
    description = "the JSON document described in docs/report-schema.md"

    def __init__(self, context: Any = None):
        pass

    def write(self, report: Any, out: TextIO) -> None:
        json.dump(report.to_dict(), out, indent=2, ensure_ascii=False)
        out.write("\n")


@hookimpl
def register_reporters(register: Any) -> None:
    register("json", JsonReporter)
