"""The live dashboard: each coin's confidence against its threshold, positions, PnL, alerts."""

from engine.dashboard.config import DashboardAuthError, DashboardConfig, is_loopback, resolve_token
from engine.dashboard.server import Dashboard, attach_dashboard, page_html
from engine.dashboard.state import DashboardState

__all__ = [
    "Dashboard",
    "DashboardAuthError",
    "DashboardConfig",
    "DashboardState",
    "attach_dashboard",
    "is_loopback",
    "page_html",
    "resolve_token",
]
