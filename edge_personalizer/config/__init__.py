"""Configuration: one frozen Settings object, declared once, built from its sources.

In: defaults, a TOML file, `EP_*` environment variables (passed in as a mapping) and
command-line flags. Out: a validated, frozen `Settings`. It must never import the
domain (classify, rules, rewrite, ...) nor read `os.environ` itself.
"""

from .converters import Secret
from .settings import Settings
from .sources import load_settings, setting_given, unknown_environment

__all__ = ["Secret", "Settings", "load_settings", "setting_given", "unknown_environment"]
