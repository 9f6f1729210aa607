"""`python -m launchkit` runs the CLI."""

from launchkit.cli import main

main()
