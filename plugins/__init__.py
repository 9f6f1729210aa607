"""launchkit's first-party plugins. Each module uses only the public API: ``launchkit.hookimpl`` and ``launchkit.types``."""
