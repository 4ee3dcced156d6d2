"""Where settings come from: defaults < TOML file < `EP_*` environment < command-line flags.

`load_settings` takes the environment as an argument (tests pass a dict); nothing else in
the package reads it. Flags are made from the declarations in settings.py, (worker processes
get the resolved settings as JSON: Settings.to_json).
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, unquote

from ..errors import SettingsError
from .converters import to_path
from .settings import Settings, build_settings, options

ENV_PREFIX = "EP_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
# Other names the environment may use for a setting (EP_ORIGIN is what most tools write).
_ENV_ALIASES = MappingProxyType({"origin": "origin_url"})


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML config file's settings: keys at the top or under [edge_personalizer].

    A relative path in it (rules_dir, geo_db, data_dir, an `sqlite:` store file...) is the
    config file's folder's, as the file is written beside what it names: the same file then
    serves from any working directory (`/` under systemd)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise SettingsError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from exc
    section = data.get("edge_personalizer", data)
    if not isinstance(section, dict):
        raise SettingsError(f"config file {path}: [edge_personalizer] must be a table")
    return {key: _anchored(key, value, path.parent.absolute()) for key, value in
            ((key.replace("-", "_"), value) for key, value in section.items())}


def _anchored(name: str, value: Any, folder: Path) -> Any:
    """A path setting's relative value made the config file folder's; others as written."""
    declaration = options().get(name)
    if not isinstance(value, str) or not value or declaration is None:
        return value
    if declaration.convert is to_path:   # (~ is to_path's, as in every source)
        return value if value.startswith("~") else str(folder / value)
    if name == "store_url":
        scheme, colon, rest = value.partition(":")
        if colon and scheme.lower() == "sqlite" and not rest.startswith("/"):
            try:
                path = folder / Path(unquote(rest)).expanduser()
            except RuntimeError:   # ~someone unknown: the store names it when opened
                return value
            return f"{scheme}://{quote(str(path))}"
    return value


def _setting_of(variable: str) -> str | None:
    """The setting an `EP_*` variable names, or None."""
    if not variable.startswith(ENV_PREFIX) or variable == CONFIG_ENV:
        return None
    name = variable[len(ENV_PREFIX):].lower()
    name = _ENV_ALIASES.get(name, name)
    return name if name in options() else None


def load_settings(environ: Mapping[str, str], *, config_file: Path | None = None,
                  **overrides: Any) -> Settings:
    """Settings from a config file, `EP_*` variables and explicit overrides.

    `EP_CONFIG` names a config file when `config_file` is not given. Overrides whose value
    is None are ignored, so unset command-line flags fall through to the other sources.
    """
    config_path = config_file or to_path(environ.get(CONFIG_ENV))
    raw, given = _gathered(environ, config_path)
    given_here = {k: v for k, v in overrides.items() if v is not None}
    raw.update(given_here)
    given.update(dict.fromkeys(given_here, "the command line"))
    return build_settings(raw, source=str(config_path) if config_path else "settings",
                          given=given)


def setting_given(name: str, environ: Mapping[str, str]) -> Any:
    """One setting as load_settings finds it in `environ` (its `EP_*` variable, else the
    config file `EP_CONFIG` names, else its default), the others unread: a command that
    runs no server (validate) takes the server's keyed_caching without needing its origin,
    databases and the rest to be there and valid."""
    raw, given = _gathered(environ, to_path(environ.get(CONFIG_ENV)))
    one = {name: raw[name]} if name in raw else {}
    return getattr(build_settings(one, source="settings", given=given), name)


def _gathered(environ: Mapping[str, str], config_path: Path | None
              ) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings the config file at `config_path` and the `EP_*` variables give (the
    variables over the file), and where each was given, for the errors."""
    raw: dict[str, Any] = {}
    given: dict[str, str] = {}
    if config_path is not None:
        from_file = read_config_file(config_path)
        raw.update(from_file)
        given.update(dict.fromkeys(from_file, str(config_path)))
    for variable, value in environ.items():
        name = _setting_of(variable)
        if name is not None:
            raw[name] = value
            given[name] = variable
    return raw, given


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """One warning per `EP_*` variable that is no setting, with the likely intended one.
    Not fatal: the environment of a container or CI job is not ours alone."""
    known = [ENV_PREFIX + name.upper() for name in options()]
    lines = []
    for variable in sorted(environ):
        if variable.startswith(ENV_PREFIX) and variable != CONFIG_ENV \
                and _setting_of(variable) is None:
            close = difflib.get_close_matches(variable, known, n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
            lines.append(f"environment variable {variable} is not a setting and is "
                         f"ignored{hint}")
    return lines


def add_setting_flags(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Command-line flags for the named settings, from their declarations. Defaults stay
    in Settings: an unset flag is None and falls through to the other sources."""
    declared = options()
    for name in names:
        declaration = declared[name]
        if declaration.flag is None:
            raise ValueError(f"setting {name} has no flag")
        if declaration.flag.startswith("--no-"):
            parser.add_argument(declaration.flag, dest=name, action="store_const",
                                const=False, help=f"turns off: {declaration.help}")
        elif declaration.repeat:
            parser.add_argument(declaration.flag, dest=name, action="append",
                                metavar=declaration.metavar, help=declaration.help)
        else:
            parser.add_argument(declaration.flag, dest=name, metavar=declaration.metavar,
                                help=declaration.help)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (those a parser had), for load_settings."""
    return {name: getattr(args, name) for name in options() if hasattr(args, name)}


# Flags every command that serves takes; the classifying commands take a few of them.
SERVER_FLAGS = tuple(name for name, declaration in options().items() if declaration.flag)
CLASSIFY_FLAGS = ("rules_dir", "geo_db", "anonymous_db")
