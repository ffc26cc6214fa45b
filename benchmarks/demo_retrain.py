"""The demo's first retraining under the default promotion rule (``auto_promote = "if_better"``).

Bootstraps a first version per kind exactly as ``histoloop demo`` does (:func:`histoloop.demo.bootstrap`,
the demo's recipe and tiles), then runs the retraining a worker runs after the user's first 4 submissions
(:func:`training.lifecycle.retrain_from_tasks`, ``if_better``, warm start, the demo's recipe) on:

- ``user``: the 4 user tasks alone (the first 4 tiles the demo shows, their exact labels), as before;
- ``seeded``: the demo project's seeded tasks (:func:`histoloop.demo.seed_tiles`: a colleague's approved
  annotations of new synthetic patients) and the same 4 user tasks.

Each seed draws other seeded patients (``--seeds``); every retraining starts from a copy of the store
holding only the first version. Reported per run: promoted or not, the candidate's and production's metric
on the same validation split, its size, the retraining's seconds.

    flock /tmp/histoloop-heavy.lock .venv/bin/python -m benchmarks.demo_retrain [--kinds detect,segment]
        [--seeds 0,1,2] [--variants user,seeded] [--work DIR: keep the stores, reuse a first version there]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def measure(
    kind: str, seeds: list[int], work: Path, variants: tuple[str, ...] = ("user", "seeded")
) -> list[dict[str, Any]]:
    from histoloop.demo import (
        DEMO_TILES,
        DEMO_TRAINING,
        PROJECTS,
        bootstrap,
        labelled_tasks,
        seed_tiles,
        write_tiles,
    )
    from kernel.kinds import PRIMARY_METRIC, check_kind
    from kernel.settings import load_settings
    from training.lifecycle import retrain_from_tasks
    from training.registry import Registry

    root = work / "files"
    base = work / f"store-{kind}"
    settings = load_settings(env={"HISTOLOOP_MODEL_STORE": str(base), "HISTOLOOP_DEVICE": "cpu"})
    settings = dataclasses.replace(
        settings,
        local_files_root=root,
        project_defaults=dataclasses.replace(settings.project_defaults, train=DEMO_TRAINING),
    )
    started = time.perf_counter()
    first = Registry.from_settings(settings).production("1", kind) if base.is_dir() else None
    if first is None:  # else a first version bootstrapped by an earlier run into the same --work
        train = write_tiles(root / "train", DEMO_TILES[kind], seed=1000)
        first = bootstrap(settings, "1", kind, train, root)
    bootstrap_s = time.perf_counter() - started
    shown = write_tiles(root / "images", 12, seed=100)
    user = labelled_tasks(kind, shown[:4], root, 1)
    metric = PRIMARY_METRIC[check_kind(kind)]
    rows = []
    for seed in seeds:
        seeded = labelled_tasks(kind, seed_tiles(root / f"seeded-{seed}", seed=seed), root, 1000)
        for variant, tasks in (("user", user), ("seeded", seeded + user)):
            if variant not in variants or (variant == "user" and seed != seeds[0]):
                continue  # the same 4 user tasks whatever the seed
            store = work / f"store-{kind}-{variant}-{seed}"
            shutil.copytree(base, store)
            # the copy's own registry (registry_path is derived from the store only when settings are made)
            s = dataclasses.replace(settings, model_store=store, registry_path=store / "registry.sqlite")
            registry = Registry.from_settings(s)
            t0 = time.perf_counter()
            done = retrain_from_tasks(s, registry, "1", kind, tasks, PROJECTS[kind].label_config)
            rows.append(
                {
                    "kind": kind,
                    "variant": variant,
                    "seed": seed,
                    "tasks": len(tasks),
                    "n_val": done.version.lineage.get("n_val"),
                    "promoted": done.promoted,
                    metric: round(float(done.metrics.get(metric, float("nan"))), 4),
                    f"production_{metric}": round(
                        float((done.production_metrics or {}).get(metric, float("nan"))), 4
                    ),
                    "retrain_s": round(time.perf_counter() - t0, 1),
                    "decision": done.decision,
                    "first_version": first.ref,
                    "first_version_val": round(float(first.metrics.get(metric, float("nan"))), 4),
                    "bootstrap_s": round(bootstrap_s, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="detect,segment,classify")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default="user,seeded")
    parser.add_argument("--work", type=Path, help="keep the stores here; a first version found is reused")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = tuple(args.variants.split(","))
    with tempfile.TemporaryDirectory(prefix="histoloop-demo-retrain-") as tmp:
        for kind in args.kinds.split(","):
            measure(kind, seeds, args.work or Path(tmp), variants)


if __name__ == "__main__":
    main()
