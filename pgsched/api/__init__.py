"""The REST API (Starlette): JSON endpoints, bearer-token auth, Prometheus metrics, OpenAPI document.

Interface layer: may import services and data modules; only ``pgsched.cli`` imports it.
"""

from __future__ import annotations

from pgsched.api.app import check_bind, create_app, is_loopback
from pgsched.api.serve import serve

__all__ = ["check_bind", "create_app", "is_loopback", "serve"]
