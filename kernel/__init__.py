"""The kernel: what every floor of histoloop shares, importing nothing of the project.

- :mod:`kernel.settings` — every setting, read once (environment, TOML file, defaults);
- :mod:`kernel.kinds` — the model kinds and their primary metrics;
- :mod:`kernel.tags` — Label Studio's control tags, one row each (result types, the model kind feeding
  each, the dataset kinds it trains): the one table every tag/type/kind view derives from;
- :mod:`kernel.labelstudio` — Label Studio's vocabulary: the project key, the approval rule (which
  annotation counts), the kinds an annotation feeds, a label config read once;
- :mod:`kernel.database` — the database under the registry and the event store (SQLAlchemy Core: SQLite
  by default, PostgreSQL across hosts; serialised write transactions; versioned migrations).

Floors above it (each imports only from those below): converters → training → workers → ml_backend →
the shell (``histoloop``: the CLI, the demo, the process stack). ``tests/test_floors.py`` and
``make lint`` (import-linter, see ``pyproject.toml``) keep it so.
"""
