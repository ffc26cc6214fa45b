"""The demo's first boxes version: how good is it, and does it suggest anything on tiles it never saw?

Bootstraps a detect version exactly as ``histoloop demo`` does (:func:`histoloop.demo.bootstrap`: generated
tiles as Label Studio annotations → the workers' convert → train → evaluate → register → promote path) with
a recipe, then predicts 16 generated held-out tiles (other seeds, other patients) through the backend's own
predict path (:class:`ml_backend.engine.Engine`, the version's own score threshold) and counts a
specialist's corrections to them against drawing every box from scratch.

    flock /tmp/histoloop-heavy.lock .venv/bin/python -m benchmarks.demo                  # the demo's recipe
    flock /tmp/histoloop-heavy.lock .venv/bin/python -m benchmarks.demo --before         # the recipe before
    flock /tmp/histoloop-heavy.lock .venv/bin/python -m benchmarks.demo --recipe '{"epochs": 40, ...}' --tiles 48
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

BEFORE = ({"epochs": 30, "batch": 8, "imgsz": 256}, 16)
"""The demo's earlier detect recipe and tile count (30 epochs of 8 at 256 px, 16 tiles), for comparison."""


def measure(recipe: dict[str, Any], tiles: int, work: Path, held_out: int = 16) -> dict[str, Any]:
    from histoloop.demo import PROJECTS, annotation_result, bootstrap, local_files_url, write_tiles
    from histoloop.simulate import Predictor
    from kernel.settings import load_settings
    from training.corrections import Corrections
    from training.specialist import result_corrections

    settings = load_settings(env={"HISTOLOOP_MODEL_STORE": str(work / "store"), "HISTOLOOP_DEVICE": "cpu"})
    settings = dataclasses.replace(
        settings, project_defaults=dataclasses.replace(settings.project_defaults, train={"detect": recipe})
    )
    root = work / "files"
    started = time.perf_counter()
    version = bootstrap(settings, "1", "detect", write_tiles(root / "train", tiles, seed=1000), root)
    train_s = time.perf_counter() - started
    held = write_tiles(root / "held-out", held_out, seed=100)
    served = Predictor(
        dataclasses.replace(settings, local_files_root=root), PROJECTS["detect"].label_config, "1"
    )
    tasks = [{"id": i, "data": {"image": local_files_url(p, root)}} for i, (p, _) in enumerate(held)]
    _, predictions, _ = served.engine.predict("1", tasks, served.plan, served.state)
    total, suggested = Corrections(), 0
    for (_, tile), prediction in zip(held, predictions, strict=True):
        h, w = tile.mask.shape
        total = total + result_corrections(
            "detect", prediction["result"], annotation_result("detect", tile), w, h
        )
        suggested += bool(tile.boxes) and bool(prediction["result"])
    m = version.metrics
    return {
        "recipe": recipe,
        "tiles": tiles,
        "bootstrap_s": round(train_s, 1),
        "val_mAP50": m.get("mAP50"),
        "val_recall": m.get("recall"),
        "val_images": m.get("n_images"),
        "score_threshold": m.get("score_threshold"),
        "held_out_tiles": len(held),
        "held_out_tiles_with_tumor": sum(bool(t.boxes) for _, t in held),
        "of_them_with_a_suggestion": suggested,
        "corrections": total.as_dict(),
        "corrections_vs_scratch": round(total.total / total.objects, 3) if total.objects else None,
    }


def main(argv: list[str] | None = None) -> None:
    from histoloop.demo import DEMO_TILES, DEMO_TRAINING

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=json.loads, default=None, help="detect TrainConfig fields (JSON)")
    parser.add_argument("--tiles", type=int, default=None)
    parser.add_argument(
        "--before", action="store_true", help="the earlier recipe (30 epochs of 8 at 256 px, 16 tiles)"
    )
    args = parser.parse_args(argv)
    recipe, tiles = BEFORE if args.before else (DEMO_TRAINING["detect"], DEMO_TILES["detect"])
    with tempfile.TemporaryDirectory(prefix="histoloop-demo-bench-") as tmp:
        row = measure(args.recipe or recipe, args.tiles or tiles, Path(tmp))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
