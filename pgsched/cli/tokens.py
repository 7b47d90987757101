"""``pgsched tokens create|list|revoke``: REST API bearer tokens. The token is printed once, at creation."""

from __future__ import annotations

import click

from pgsched.cli.base import CliContext, cli, echo_json, echo_table, pass_ctx
from pgsched.cli.jobs import parse_duration
from pgsched.cli.stores import CliStores, with_stores
from pgsched.token_store import ApiToken, TokenNotFound

__all__ = ["tokens"]


@cli.group()
def tokens() -> None:
    """API tokens (stored hashed; scopes read < write < admin)."""


@tokens.command("create")
@click.option("--name", required=True, help="Who or what the token is for.")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), default="read", show_default=True)
@click.option("--expires-in", "expires_in", default=None, help="Expire after this long: 12h, 30d (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def tokens_create(ctx: CliContext, name: str, scope: str, expires_in: str | None, as_json: bool) -> None:
    """Create a token and print it (it cannot be shown again)."""
    seconds = None if expires_in is None else parse_duration(expires_in, "expires-in").total_seconds()

    async def act(s: CliStores) -> tuple[ApiToken, str]:
        return await s.tokens.token_create(name, scope, expires_in=seconds)

    token, plain = with_stores(ctx.settings, act)
    if as_json:
        echo_json({**token.to_dict(), "token": plain})
        return
    click.echo(plain)
    click.echo(f"token {token.id} ({token.scope}) for {token.name}: store it now, it is not shown again", err=True)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def tokens_list(ctx: CliContext, as_json: bool) -> None:
    """List tokens (never their secrets)."""

    async def fetch(s: CliStores) -> list[ApiToken]:
        return await s.tokens.token_list()

    rows = [t.to_dict() for t in with_stores(ctx.settings, fetch)]
    if as_json:
        echo_json(rows)
    else:
        columns = ["id", "name", "scope", "created_at", "expires_at", "last_used_at", "revoked_at"]
        echo_table(rows, columns, empty="(no tokens)")


@tokens.command("revoke")
@click.argument("token_id", type=click.IntRange(1, 2**63 - 1))
@pass_ctx
def tokens_revoke(ctx: CliContext, token_id: int) -> None:
    """Revoke a token: requests carrying it get 401 from now on."""

    async def act(s: CliStores) -> ApiToken:
        return await s.tokens.token_revoke(token_id)

    try:
        token = with_stores(ctx.settings, act)
    except TokenNotFound as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"token {token.id} ({token.name}) revoked")
