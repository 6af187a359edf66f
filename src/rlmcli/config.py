"""Paths and settings that do not need any heavy import."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def rlm_home() -> Path:
    """`$RLM_HOME`, else `$XDG_DATA_HOME/rlm`, else `~/.local/share/rlm`."""
    env = os.environ.get("RLM_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "rlm"


def workspaces_dir() -> Path:
    return rlm_home() / "workspaces"


def auto_workspaces_dir() -> Path:
    return rlm_home() / "auto"


def config_path() -> Path:
    """`$RLM_CONFIG`, else `$XDG_CONFIG_HOME/rlm/config.toml`, else `~/.config/rlm/config.toml`."""
    env = os.environ.get("RLM_CONFIG")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "rlm" / "config.toml"


# name: (type, default). Each can be set by a flag, by RLM_<NAME> in the environment, or in config.toml.
SETTINGS: dict[str, tuple[type, Any]] = {
    "model": (str, None), "sub_model": (str, None), "api_base": (str, None), "api_key_env": (str, None),
    "sandbox": (str, "auto"), "max_iterations": (int, 20), "max_depth": (int, 1), "max_calls": (int, 200),
    "max_tokens": (int, None), "max_cost": (float, None), "timeout": (float, None), "concurrency": (int, 16),
    "cache": (bool, True),
}


# The smallest value each numeric setting accepts, and whether it must be strictly greater.
_MINIMUM: dict[str, tuple[float, bool]] = {
    "max_iterations": (1, False), "max_depth": (0, False), "max_calls": (1, False), "max_tokens": (1, False),
    "max_cost": (0, False), "timeout": (0, True), "concurrency": (1, False),
}


def range_error(name: str, value: Any) -> str | None:
    """Why `value` is not a usable `name` (a limit of 0 iterations, -5 seconds...), or None."""
    if value is None or name not in _MINIMUM:
        return None
    kind = SETTINGS[name][0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        return f"must be {'an integer' if kind is int else 'a number'}, not {value!r}"
    if value != value or value in (float("inf"), float("-inf")):  # NaN would pass every comparison
        return f"must be a finite number, not {value!r}"
    low, strict = _MINIMUM[name]
    if value < low or (strict and value == low):
        return f"must be {'greater than' if strict else 'at least'} {low:g}, not {value:g}"
    return None


def _convert(name: str, value: Any, origin: str) -> Any:
    kind = SETTINGS[name][0]
    try:
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes", "on")
        return kind(value)
    except (TypeError, ValueError):
        from rlmcli.errors import UsageError

        raise UsageError(f"{origin}: {name} must be a {kind.__name__}, not {value!r}") from None


def load_config_file() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    from rlmcli.errors import UsageError

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise UsageError(f"{path}: unknown settings {', '.join(unknown)} (known: {', '.join(SETTINGS)})")
    return data


def resolve_settings(flags: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """Each setting's value and where it came from: flag > environment > config file > default."""
    file_values = load_config_file()
    out: dict[str, tuple[Any, str]] = {}
    for name, (_, default) in SETTINGS.items():
        env_name = "RLM_" + name.upper()
        if flags.get(name) is not None:
            out[name] = (flags[name], "flag")
        elif os.environ.get(env_name):
            out[name] = (_convert(name, os.environ[env_name], env_name), f"environment ({env_name})")
        elif name in file_values:
            out[name] = (_convert(name, file_values[name], str(config_path())), f"config file ({config_path()})")
        else:
            out[name] = (default, "default")
        problem = range_error(name, out[name][0])
        if problem:
            from rlmcli.errors import UsageError

            source = out[name][1]
            where = f"--{name.replace('_', '-')}" if source == "flag" else f"{name} from the {source}"
            raise UsageError(f"{where} {problem}")
    return out
