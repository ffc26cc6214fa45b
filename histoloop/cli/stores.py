"""The registry as the commands that only read it open it: nothing is created or migrated.

A command that lists or shows versions (``models list``, ``models show``, ``slides predict``) must not
create a registry on a fresh model store, nor migrate a database it was only asked about;
:func:`read_registry` opens it as it is and says what is missing instead.
"""

from __future__ import annotations

import click

from kernel.settings import Settings
from training.registry import Registry


class NoRegistry(click.ClickException):
    """The registry is not there yet (nothing was trained or ``histoloop db upgrade`` never ran)."""


def read_registry(settings: Settings) -> Registry:
    """The configured registry, opened without creating or migrating it. Raises :class:`NoRegistry`
    when it does not exist, a :class:`click.ClickException` when it lacks migrations or cannot be read."""
    from kernel.database import DatabaseError, safe_url

    registry = Registry.from_settings(settings, upgrade=False)
    where = registry.path or safe_url(registry.db.url)
    try:
        pending = registry.db.pending()
        current = registry.db.current()
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from exc
    if current is None:
        raise NoRegistry(f"no registry yet at {where}")
    if pending:
        raise click.ClickException(
            f"the registry at {where} is not migrated: {len(pending)} pending (run histoloop db upgrade)"
        )
    return registry
