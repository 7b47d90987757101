"""The Django app config of the pgsched integration (it has no models: the schema is pgsched's migrations)."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["PgschedConfig"]


class PgschedConfig(AppConfig):  # type: ignore[misc]  # django ships no type hints
    name = "pgsched.contrib.django"
    label = "pgsched"
    verbose_name = "pgsched"
