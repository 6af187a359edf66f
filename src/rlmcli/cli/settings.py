"""Settings and models: `rlm config` (show, set, unset, path) and `rlm models`."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from rlmcli.cli import completion
from rlmcli.cli.app import Column, JsonOpt, app, emit_json, examples, handle_errors, print_listing, say
from rlmcli.errors import ExitStatus, RlmError, UsageError

config_app = typer.Typer(help="Show the resolved settings and where each came from; set them in the config file.",
                         invoke_without_command=True, no_args_is_help=False)
app.add_typer(config_app, name="config")


@config_app.callback(epilog=examples("rlm config", "rlm config --json", "rlm config set model openai/gpt-4o-mini",
                                     "rlm config set sub_models openai/gpt-4o,openai/o4-mini", "rlm config unset max_cost",
                                     "rlm config path"))
@handle_errors
def config_main(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Show every setting's value and its source (flag > RLM_* environment > config file > default)."""
    if ctx.invoked_subcommand is None:
        show(as_json)


@config_app.command("show", epilog=examples("rlm config show", "rlm config show --json"))
@handle_errors
def config_show(as_json: bool = JsonOpt) -> None:
    """Show every setting's value and its source (the same as plain `rlm config`)."""
    show(as_json)


def show(as_json: bool) -> None:
    from rlmcli.config import Settings, config_path, rlm_home, toml_literal

    settings = Settings.resolve()
    if as_json:
        emit_json("rlm.config/1", {"config_file": str(config_path()), "config_file_exists": config_path().is_file(),
                                   "rlm_home": str(rlm_home()), "settings": [
                                       {"name": n, "value": v, "source": s} for n, v, s in settings.items()]})
        return
    # TOML, so a line can be copied into the config file as it is; unset settings are comments.
    lines = [(f"{name} = {toml_literal(value)}", f"# {source}") if value is not None else (f"# {name} =", "# not set")
             for name, value, source in settings.items()]
    width = max(len(setting) for setting, _ in lines) + 2
    typer.echo(f"# config file: {config_path()}{'' if config_path().is_file() else ' (not present)'}")
    typer.echo(f"# RLM_HOME: {rlm_home()}")
    typer.echo("# each value's source: flag > RLM_* environment > config file > default")
    for setting, source in lines:
        typer.echo(f"{setting:<{width}}{source}")


@config_app.command("get", epilog=examples("rlm config get model", "model=\"$(rlm config get model)\""))
@handle_errors
def config_get(key: str = typer.Argument(..., metavar="KEY", help="A setting's name (rlm config lists them).",
                                         autocompletion=completion.settings)) -> None:
    """Print one setting's value (from a flag's environment variable, the config file or its
    default) as `config set` takes it: lists comma-separated. Exit 1 when it is not set."""
    from rlmcli.config import SPEC, Settings, did_you_mean

    if key not in SPEC:
        raise UsageError(f"unknown setting {key!r}{did_you_mean(key)} (`rlm config` lists them)")
    settings = Settings.resolve()
    value = getattr(settings, key)
    if value is None:
        say(f"rlm: {key} is not set ({settings.source(key)})")
        raise typer.Exit(int(ExitStatus.ERROR))
    typer.echo(",".join(value) if isinstance(value, list) else ("true" if value is True else "false")
               if isinstance(value, bool) else str(value))


@config_app.command("set", context_settings={"ignore_unknown_options": True},  # `set max_cost -1`: a value, not a flag
                    epilog=examples("rlm config set model openai/gpt-4o-mini", "rlm config set max_cost 1.00",
                                           "rlm config set sub_models openai/gpt-4o,openai/o4-mini"))
@handle_errors
def config_set(key: str = typer.Argument(..., metavar="KEY", help="A setting's name (rlm config lists them).",
                                         autocompletion=completion.settings),
               value: str = typer.Argument(..., metavar="VALUE", help="Its value; lists comma-separated.",
                                           autocompletion=completion.setting_value)) -> None:
    """Write a setting to the config file (checked first, like any value)."""
    from rlmcli.config import config_path, write_setting

    write_setting(key, value)
    say(f"{key} set in {config_path()}")


@config_app.command("unset", epilog=examples("rlm config unset max_cost"))
@handle_errors
def config_unset(key: str = typer.Argument(..., metavar="KEY", help="A setting's name.",
                                           autocompletion=completion.settings)) -> None:
    """Remove a setting from the config file (its default applies again)."""
    from rlmcli.config import config_path, write_setting

    write_setting(key, None)
    say(f"{key} removed from {config_path()}")


@config_app.command("path", epilog=examples("rlm config path", "$EDITOR \"$(rlm config path)\""))
def config_path_cmd() -> None:
    """Print the config file's path (it may not exist yet)."""
    from rlmcli.config import config_path

    typer.echo(str(config_path()))


@app.command("models", epilog=examples("rlm models", "rlm models --check", "rlm models --json"))
@handle_errors
def models_cmd(
    check: bool = typer.Option(False, "--check", help="Send one tiny request to each model: latency or the error."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object (schema rlm.models/1)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Root model (default: $RLM_MODEL or config)."),
    sub_model: Optional[str] = typer.Option(None, "--sub-model", help="Sub-call model."),
    api_base: Optional[str] = typer.Option(None, "--api-base", help="Base URL of an OpenAI-compatible server."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Variable that holds the API key."),
) -> None:
    """The configured models: provider, key variable (and whether it is set), context window, prices."""
    from rlmcli.config import Settings
    from rlmcli.models import check as check_model
    from rlmcli.models import describe

    settings = Settings.resolve({"model": model, "sub_model": sub_model, "api_base": api_base,
                                 "api_key_env": api_key_env})
    rows = describe(settings)
    if not rows:
        from rlmcli.ask import NO_MODEL

        raise RlmError(NO_MODEL, ExitStatus.USAGE)
    checks = {}
    if check:
        for m in dict.fromkeys(r["model"] for r in rows):
            checks[m] = check_model(settings, m)
    if as_json:
        emit_json("rlm.models/1", {"models": rows, "checks": list(checks.values())})
    else:
        from rlmcli.engine.providers.catalog import ASSUMED_WINDOW

        table, plain = [], []
        for r in rows:
            key = "none needed" if r["key_variable"] is None else (
                f"{r['key_variable']} {'set' if r['key_set'] else 'NOT SET'}")
            price = (f"${r['usd_per_million_input']:g} / ${r['usd_per_million_output']:g}"
                     if r["usd_per_million_input"] is not None else "unknown")
            window = f"{r['context_window']:,}" if r["context_window"] else "unknown"
            # The provider is the model's prefix; it and the transport are in the pipe's lines and --json.
            table.append([r["role"], r["model"], key, window, price])
            plain.append([r["role"], r["model"], f"{r['provider']} via {r['transport']}", key,
                          str(r["context_window"] or ""), price])
        print_listing([Column("role"), Column("model", wide=True), Column("key", wide=True),
                       Column("window", "right"), Column("$/M in / out", "right")], table, plain)
        if any(not r["context_window"] for r in rows):
            say(f"rlm: window unknown to litellm's map: a dry run assumes {ASSUMED_WINDOW:,} tokens")
        for c in checks.values():
            status = f"ok in {c['seconds']:.2f}s" if c["ok"] else f"FAILED ({c['error_kind']}): {c['error']}"
            typer.echo(f"check\t{c['model']}\t{status}" if not sys.stdout.isatty() else f"check {c['model']}: {status}")
    if any(not c["ok"] for c in checks.values()):
        raise typer.Exit(int(ExitStatus.PROVIDER))
