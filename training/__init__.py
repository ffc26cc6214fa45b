"""Trainers, evaluation, inference and the model registry. Knows no queue or server.

Three floors inside, kept by the import contracts in ``pyproject.toml``:

- **the kinds**: :mod:`training.kinds` — the table of kinds, :func:`training.kinds.spec` finds a kind's row
  (a :class:`training.base.KindSpec`); :mod:`training.kinds.detect`, :mod:`training.kinds.segment`,
  :mod:`training.kinds.classify` — the rows, each independent of the others;
- **above them**, what looks a kind up: :mod:`training.trainer` (the one trainer the kinds share),
  :mod:`training.versions` (a version directory as a model: ``load_model``, ``build_model``),
  :mod:`training.evaluate` (held-out evaluation), :mod:`training.slides` (a version over a whole slide),
  :mod:`training.untrained` (versions nobody trained), :mod:`training.specialist` (a specialist's
  corrections by kind) and :mod:`training.lifecycle` — train and register a version (``train_version``),
  retrain from Label Studio tasks (``retrain_from_tasks``): the one path the CLI, the workers and the demo
  use;
- **below them**, what the kinds share and which names no kind: :mod:`training.base` (the training
  contract and the row type), :mod:`training.inference`, :mod:`training.corrections`,
  :mod:`training.slide_fields`, :mod:`training.metrics`, :mod:`training.objects`, :mod:`training.plots`,
  :mod:`training.loop`, :mod:`training.augment`, :mod:`training.datasets`, :mod:`training.runtime`,
  :mod:`training.offline`, :mod:`training.stain`, :mod:`training.distributed`, :mod:`training.artifacts`;
  :mod:`training.registry` — versions, production, promotion, rollback; :mod:`training.promotion` — the
  gate.
"""
