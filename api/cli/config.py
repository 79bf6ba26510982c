"""The settings as command-line flags (made from the table in ``api/settings.py``), and
``ctxlog config``: the effective configuration, secrets masked, or the reference of every
setting."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args, get_origin

import click

from ..config import Resolved, env_names, flag_name, hints, reference_markdown, render_toml
from ..config import document as config_document
from ..settings import SettingsError, Spec, fields
from .support import CliError, Exit

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(fn: F) -> F:
    """``--config FILE`` and one flag per setting (secrets have none: a command line is
    visible to every user of the machine); a flag left out passes None."""
    types = hints()
    for f in reversed(fields()):
        spec: Spec = f.metadata["setting"]
        if not spec.flag:
            continue
        hint, flag = types[f.name], flag_name(f.name)
        help_ = f"{spec.doc} [env {env_names(f.name)[0]}; key {f.name}]"
        decls: list[str] = [flag, f.name]
        kwargs: dict[str, Any] = {"default": None, "help": help_}
        if hint is bool:
            decls[0] = f"{flag}/--no-{flag[2:]}"
        elif hint in (int, float):
            kwargs["type"] = hint
        elif get_origin(hint) is Literal:
            kwargs["type"] = click.Choice(get_args(hint))
        elif get_origin(hint) is tuple:
            kwargs["metavar"] = "A,B,…"
        fn = click.option(*decls, **kwargs)(fn)
    return click.option(
        "--config",
        "config",
        metavar="FILE",
        default=None,
        help="A TOML file of settings (env CTXLOG_CONFIG); flags and variables override it.",
    )(fn)


def resolve_flags(config: str | None, flags: dict[str, Any]) -> Resolved:
    """The settings the flags, the environment and the config file give; exit 2 naming what
    is wrong."""
    from ..config import resolve  # noqa: PLC0415

    try:
        return resolve(env=None, config=config, flags=flags)
    except SettingsError as e:
        raise CliError(Exit.USAGE, str(e)) from None


@click.command(
    "config",
    short_help="Print the effective configuration (secrets masked).",
    epilog="\b\nExit codes:\n  0  printed\n  2  bad settings (named)",
)
@settings_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["toml", "json"]),
    default="toml",
    show_default=True,
    help="toml: a config file, each value with where it came from; json for scripts.",
)
@click.option("--reference", is_flag=True, help="Print every setting's key, variable and flag.")
def config(fmt: str, reference: bool, config: str | None, **flags: Any) -> None:
    """Print the configuration ``ctxlog serve`` would run with, given the same flags, the
    environment and the config file (precedence: flags > environment > file > defaults).
    API keys show tenant and actor only; other secrets and a DSN's password as ***."""
    if reference:
        click.echo(reference_markdown(), nl=False)
        return
    resolved = resolve_flags(config, flags)
    try:
        resolved.settings.check()
    except SettingsError as e:
        raise CliError(Exit.USAGE, str(e)) from None
    if fmt == "json":
        click.echo(json.dumps(config_document(resolved), indent=2, ensure_ascii=False))
    else:
        click.echo(render_toml(resolved), nl=False)
