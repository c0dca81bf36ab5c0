"""Dashboard settings and the access rule: loopback is open, anything else needs a token.

The token itself never appears in config.yaml (the config loader refuses secret-looking keys):
the config names the environment variable that holds it (`auth_env`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_AUTH_ENV = "TICKLOOP_DASHBOARD_TOKEN"
MIN_TOKEN_CHARS = 16


class DashboardAuthError(Exception):
    """The dashboard would be reachable from other hosts without a token: set one or bind loopback."""


class DashboardConfig(BaseModel):
    """The `dashboard:` section of config.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8787  # 0: any free port (tests)
    # name of the environment variable holding the access token (never the token itself)
    auth_env: str = DEFAULT_AUTH_ENV
    push_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    history_points: Annotated[int, Field(ge=10, le=10_000)] = 600  # per coin, trajectory dots
    equity_points: Annotated[int, Field(ge=10, le=10_000)] = 1_440
    recent_trades: Annotated[int, Field(ge=1, le=1_000)] = 20
    alerts: Annotated[int, Field(ge=1, le=1_000)] = 50

    @field_validator("host")
    @classmethod
    def _host_nonempty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name an interface, e.g. 127.0.0.1")
        return value.strip()

    @field_validator("auth_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c == "_" for c in value) or value[0].isdigit():
            raise ValueError(f"{value!r} is not an environment variable name")
        return value


def is_loopback(host: str) -> bool:
    """True when host only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def resolve_token(config: DashboardConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the access token from the environment; raise DashboardAuthError when one is needed.

    Loopback without a token is open. A token, once set, is required on every interface. A
    non-loopback host without a token (or with one shorter than 16 characters) is refused.
    """
    env = os.environ if environ is None else environ
    token = env.get(config.auth_env) or None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise DashboardAuthError(
            f"dashboard: the token in ${config.auth_env} is shorter than {MIN_TOKEN_CHARS} characters"
        )
    if token is None and not is_loopback(config.host):
        raise DashboardAuthError(
            f"dashboard.host: {config.host} is reachable from other machines; set "
            f"${config.auth_env} to an access token (>= {MIN_TOKEN_CHARS} characters) "
            "or bind 127.0.0.1"
        )
    return token
