"""Settings, built in one place: defaults < config file < RLM_* environment < flags.

Every setting is declared once in `SPECS` (name, type, default, check, help, flags). The Typer
options of `ask`/`batch` (options.py), the environment names, the config file's keys and
`rlm config` all come from that table, and every value is checked here, whatever its source:
a bad one is a usage error naming the value and where it came from, before any work starts.
No heavy imports: this module is loaded by every command.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rlmcli.errors import UsageError

SANDBOX_LEVELS = ("auto", "strict", "basic")


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


def links_dir() -> Path:
    """Symlinks to workspaces made by path (`-w ./deal`), so listings and "last used" know them."""
    return rlm_home() / "links"


def config_path() -> Path:
    """`$RLM_CONFIG`, else `$XDG_CONFIG_HOME/rlm/config.toml`, else `~/.config/rlm/config.toml`."""
    env = os.environ.get("RLM_CONFIG")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "rlm" / "config.toml"


# ---- checks: each returns why a value is unusable, or None -------------------------------------

def _at_least(low: float, strict: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if math.isnan(value) or math.isinf(value):  # NaN would pass every comparison
            return f"must be a finite number, not {value!r}"
        if value < low or (strict and value == low):
            return f"must be {'greater than' if strict else 'at least'} {low:g}, not {value:g}"
        return None
    return check


_MODEL = re.compile(r"^[\w.:@+-]+(/[\w.:@+\-/]+)?$")


def _model(value: Any) -> str | None:
    if value is None:
        return None
    if not value.strip():
        return "must not be empty"
    if len(value) > 200 or "//" in value or not _MODEL.match(value):
        return f"is not a model name (like openai/gpt-4o-mini or ollama/llama3.1): {value!r}"
    return None


def _url(value: Any) -> str | None:
    if value is None:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http:// or https:// URL, not {value!r}"
    return None


def _env_name(value: Any) -> str | None:
    if value is None or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        return None
    return f"must be an environment variable name, not {value!r}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None or value in choices:
            return None
        return f"must be {', '.join(choices[:-1])} or {choices[-1]}, not {value!r}"
    return check


def _prices(value: Any) -> str | None:
    """{"openai/my-model": {"input": 0.15, "output": 0.60}}: US dollars per million tokens."""
    if value is None:
        return None
    for model, price in value.items():
        problem = _model(model)
        if problem:
            return f"names a model that {problem}"
        if not isinstance(price, dict) or not {"input", "output"} <= set(price) or set(price) - PRICE_KEYS:
            return (f"for {model} must be a table with input and output (and optionally cached_input): US dollars "
                    f"per million tokens, like {{input = 0.15, output = 0.60}}, not {price!r}")
        for key, number in price.items():
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) \
                    or number < 0:
                return f"for {model}: {key} must be a number of US dollars per million tokens, not {number!r}"
    return None


PRICE_KEYS = {"input", "output", "cached_input"}


def _models(value: Any) -> str | None:
    if value is None:
        return None
    for item in value:
        problem = _model(item)
        if problem:
            return f"holds a name that {problem}"
    return None


@dataclass(frozen=True)
class Spec:
    """One setting: its type, default, check and help; `flags` for the commands that take it."""

    name: str
    kind: type
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    check: Callable[[Any], str | None] = lambda value: None
    negate: bool = False  # a boolean whose flag turns it off (--no-cache)

    @property
    def env(self) -> str:
        return "RLM_" + self.name.upper()

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else self.name




def _convert(spec: Spec, raw: Any, where: str) -> Any:
    """A value from text (environment) or TOML, as the setting's type; a UsageError otherwise."""
    kind = spec.kind
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list of strings",
             dict: "a table (in the environment, a JSON object)"}
    if raw is None:
        return None
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return text in ("1", "true", "yes", "on")
        if kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if kind is list:
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError(raw)
            return [i.strip() for i in items if i.strip()]
        if kind is dict:
            if isinstance(raw, str):
                import json

                raw = json.loads(raw)
            if not isinstance(raw, dict):
                raise ValueError(raw)
            return dict(raw)
        if not isinstance(raw, str):
            raise ValueError(raw)
        return raw
    except (TypeError, ValueError):
        raise UsageError(f"{where} must be {words[kind]}, not {raw!r}") from None


def check_value(name: str, value: Any) -> str | None:
    """Why `value` is not usable for setting `name`, or None (job lines use this too)."""
    spec = SPEC[name]
    return spec.check(value) if value is not None else None


def load_config_file(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    if not path.is_file():
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    unknown = sorted(set(data) - set(SPEC))
    if unknown:
        raise UsageError(f"{path}: unknown settings {', '.join(unknown)}{did_you_mean(unknown[0])} "
                         f"(known: {', '.join(SPEC)})")
    return dict(data)


def toml_literal(value: Any) -> str:
    """A setting's value as the config file writes it: `0.5`, `true`, `"openai/gpt-4o-mini"`, `["a", "b"]`."""
    import json as _json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return _toml_table(value)  # `prices`: an inline table
    if isinstance(value, (str, list)):
        return _json.dumps(value, ensure_ascii=False)
    return repr(value)


def did_you_mean(name: str) -> str:
    """'; did you mean model?' for a misspelt setting, or ''."""
    import difflib

    close = difflib.get_close_matches(name.lower().replace("-", "_"), list(SPEC), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def write_setting(name: str, raw: str | None) -> None:
    """Set (or, with None, remove) one setting in the config file, after checking it; the other
    lines of the file are kept as they are."""
    if name not in SPEC:
        close = did_you_mean(name)
        raise UsageError(f"unknown setting {name!r}{close} (`rlm config` lists them"
                         + (")" if close else f": {', '.join(SPEC)})"))
    spec = SPEC[name]
    value = None
    if raw is not None:
        value = _convert(spec, raw, name)
        problem = check_value(name, value)
        if problem:
            raise UsageError(f"{name} {problem}")
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    path = config_path()
    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8") if path.is_file() else "")
    except TOMLKitError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc}); fix it, or remove it to start again") from None
    if value is None:
        doc.pop(name, None)
    else:
        doc[name] = value  # its comments, order and layout, and every other line, are kept
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(tomlkit.dumps(doc), encoding="utf-8")
        load_config_file(tmp)  # the file must still parse before it replaces the old one
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _toml_table(value: dict[str, Any]) -> str:
    """An inline TOML table: {"a/b" = {input = 1.0, output = 2.0}}."""
    import json as _json

    def one(item: Any) -> str:
        return _toml_table(item) if isinstance(item, dict) else _json.dumps(item)
    return "{" + ", ".join(f"{_json.dumps(k)} = {one(v)}" for k, v in value.items()) + "}"


def _describe(spec: Spec, source: str) -> str:
    """How an error names a value's origin: the flag itself, or 'max_calls from the environment (...)'."""
    return spec.flag if source == "flag" and spec.flags else f"{spec.name} from the {source}"


def setting(default: Any, help: str, flags: tuple[str, ...] = (), check: Callable[[Any], str | None] | None = None,
            negate: bool = False) -> Any:
    """A field of Settings that is a setting (see SPECS)."""
    meta = {"help": help, "flags": flags, "check": check or (lambda value: None), "negate": negate}
    if isinstance(default, (list, dict)):
        raise TypeError("a setting's default is None or immutable")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Resolved, checked settings. Plain data: a batch job carries them to any machine.

    Each field is a setting, declared once: its type, default, help, flags and check (`setting`);
    SPECS, the Typer options, the environment names and the config file's keys come from here."""

    model: str | None = setting(None, "Root model: a litellm model string (openai/gpt-4o-mini, ollama/llama3.1).",
        ("--model", "-m"), _model)
    sub_model: str | None = setting(None, "Model for llm_query/llm_batch and recursive runs (default: the root model).",
        ("--sub-model",), _model)
    sub_models: list[str] | None = setting(None, "More models model code may name in llm_query(model=...) (config file).",
        (), _models)
    vision_model: str | None = setting(None, "Model for look() (default: the sub-model, when it reads images).",
        ("--vision-model",), _model)
    api_base: str | None = setting(None, "Base URL of an OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio).",
        ("--api-base",), _url)
    api_key_env: str | None = setting(None, "Environment variable that holds the API key.", ("--api-key-env",), _env_name)
    sandbox: str = setting("auto", "auto | strict | basic (see README: Isolation).", ("--sandbox",),
        _one_of(*SANDBOX_LEVELS))
    max_iterations: int = setting(20, "Root-model iterations.", ("--max-iterations",), _at_least(1))
    max_depth: int = setting(1, "Recursion levels (1: rlm_query is a plain sub-call).", ("--max-depth",), _at_least(0))
    max_calls: int = setting(200, "Model calls in all, at every depth.", ("--max-calls",), _at_least(1))
    max_tokens: int | None = setting(None, "Prompt + completion tokens in all.", ("--max-tokens",), _at_least(1))
    max_cost: float | None = setting(None, "US dollars in all.", ("--max-cost",), _at_least(0))
    prices: dict[str, Any] | None = setting(None, "Prices of models litellm does not know, US dollars per million tokens: "
         "[prices] \"openai/my-model\" = {input = 0.15, output = 0.60} (config file; RLM_PRICES as JSON).", (),
        _prices)
    max_output_tokens: int = setting(4096, "Tokens one model reply may hold while --max-cost or --max-tokens is set: "
         "sent as the request's cap and counted in its worst case.", (), _at_least(16))
    timeout: float | None = setting(None, "Wall seconds for the whole run.", ("--timeout",), _at_least(0, strict=True))
    concurrency: int = setting(16, "Model requests in flight at once.", ("--concurrency",), _at_least(1))
    cache: bool = setting(True, "Do not use or fill the response cache.", ("--no-cache",), negate=True)
    ocr: str = setting("auto", "OCR for PDF pages without a usable text layer: auto | always | never.", ("--ocr",),
        _one_of("auto", "always", "never"))
    retries: int = setting(4, "Retries of a failed model request (429, 5xx, timeouts).", (), _at_least(0))
    retry_base: float = setting(1.0, "First retry delay in seconds, doubled each time.", (), _at_least(0))
    request_timeout: float = setting(120.0, "Seconds one model request may take.", (), _at_least(0, strict=True))
    cell_timeout: float = setting(60.0, "Seconds one cell of model code may run (model calls excluded).", (),
        _at_least(0, strict=True))
    sandbox_memory_mb: int = setting(2048, "Address space of the sandbox process, MiB.", (), _at_least(256))
    scratch_mb: int = setting(1024, "Size of the sandbox's scratch directory, MiB.", (), _at_least(1))
    scratch_files: int = setting(10_000, "Files the sandbox's scratch directory may hold.", (), _at_least(16))
    transport: str = setting("auto", "auto | openai | litellm: how models are reached (auto: the standard-library "
         "fast path for openai/ and openrouter/ models, litellm for the rest).", (), _one_of("auto", "openai", "litellm"))
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def resolve(cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                config: Path | None = None) -> Settings:
        """flag > RLM_<NAME> environment > config file > default, each value checked."""
        flags = flags or {}
        env = os.environ if env is None else env
        path = config or config_path()
        file_values = load_config_file(path)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for spec in SPECS:
            if flags.get(spec.name) is not None:
                value, source = flags[spec.name], "flag"
            elif env.get(spec.env):
                source = f"environment ({spec.env})"
                value = _convert(spec, env[spec.env], _describe(spec, source))
            elif spec.name in file_values:
                source = f"config file ({path})"
                value = _convert(spec, file_values[spec.name], _describe(spec, source))
            else:
                value, source = spec.default, "default"
            problem = check_value(spec.name, value)
            if problem:
                raise UsageError(f"{_describe(spec, source)} {problem}")
            values[spec.name], sources[spec.name] = value, source
        return cls(**values, sources=sources)

    def override(self, values: Mapping[str, Any], source: str) -> Settings:
        """These settings with `values` from `source` (a job line, say), each checked."""
        checked: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in SPEC:
                raise UsageError(f"{source}: unknown setting {name!r}{did_you_mean(name)}")
            value = _convert(SPEC[name], raw, f"{name!r}")
            problem = check_value(name, value)
            if problem:
                raise UsageError(f"{name!r} {problem}")
            checked[name] = value
        sources = {**self.sources, **{name: source for name in checked}}
        return replace(self, **checked, sources=sources)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def items(self) -> list[tuple[str, Any, str]]:
        return [(spec.name, getattr(self, spec.name), self.source(spec.name)) for spec in SPECS]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON and pickle safe), sources included."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"}
        data["sources"] = dict(self.sources)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_KINDS = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}
SPECS: tuple[Spec, ...] = tuple(
    Spec(f.name, _KINDS[re.split(r"[\[ |]", str(f.type))[0]], f.default, f.metadata["help"], f.metadata["flags"],
         f.metadata["check"], f.metadata["negate"])
    for f in fields(Settings) if f.metadata)
SPEC = {s.name: s for s in SPECS}
