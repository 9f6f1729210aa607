"""launchkit: email launches for creators, declared in TOML, sent once, measured against the audience.

The public API for plugin authors is what this module exports: ``hookimpl`` and the
types in ``launchkit.types``. Everything else may change between releases.
"""

import pluggy

__version__ = "0.1.0"

#: The version of the plugin API (hooks and public types). It rises when a hook gains an
#: argument or a type gains a field; plugins may check it to use newer features.
LAUNCHKIT_PLUGIN_API = 2

hookimpl = pluggy.HookimplMarker("launchkit")

__all__ = ["LAUNCHKIT_PLUGIN_API", "__version__", "hookimpl"]
