"""Trainers, evaluation, inference and the model registry. Knows no queue or server.

- :mod:`training.base` — the training contract (config, progress, result, errors) and a kind's row type;
- :mod:`training.tasks` — the table of kinds (one row each: ``detect``, ``segment``, ``classify``) and the
  one trainer they share; :mod:`training.detect`, :mod:`training.segment`, :mod:`training.classify` — the rows;
- :mod:`training.lifecycle` — train and register a version (``train_version``), retrain from Label Studio
  tasks (``retrain_from_tasks``): the one path the CLI, the workers and the demo use;
- :mod:`training.evaluate`, :mod:`training.inference`, :mod:`training.metrics`, :mod:`training.plots`;
- :mod:`training.registry` — versions, production, promotion, rollback; :mod:`training.promotion` — the gate;
- :mod:`training.loop`, :mod:`training.augment`, :mod:`training.runtime`, :mod:`training.offline`,
  :mod:`training.artifacts` — what the trainers share.
"""
