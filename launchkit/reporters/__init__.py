"""launchkit's own report outputs, loaded as default plugins through ``register_reporters``."""
