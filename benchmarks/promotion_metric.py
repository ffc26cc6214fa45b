"""Does promoting by the corrections ratio pick the version that saves a specialist more work?

    .venv/bin/python -m benchmarks.promotion_metric [--kind segment|detect] [--minutes 0.5 1 2] \\
        [--seeds 0 1] [--data ../shared/data/monuseg-breast] [--work /tmp/promotion-bench]

The four MoNuSeg breast tiles (four patients) converted as ``histoloop convert aperio`` does (``--to masks``
or ``yolo-detect``:
three tiles in train, one patient in val); one training tile is then set aside as the test patient, so the
versions train on two patients, the gate sees the third (val) and the fourth (test) is what a specialist
meets next. Versions of different quality (the default recipe, each training time budget x seed)
are trained, each measured on val (Dice, corrections ratio at the threshold it chose there: what the gate
compares) and on test (the corrections ratio at the threshold it serves: the work it would cost).

For every pair of versions whose test ratios differ, each rule (``primary``: the higher val primary metric, Dice or mAP@0.5;
``corrections``: the lower val ratio) picks one; it picked the better version when its pick has the lower
test ratio. Rows go to ``<work>/rows.jsonl``, the pairwise count is printed at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEST_TILE = "TCGA-AR-A1AS-01Z-00-DX1"
"""The training tile set aside as the test patient."""


TARGETS = {"segment": "masks", "detect": "yolo-detect"}
FOLDERS = ("images", "masks", "instances", "masks_binary", "labels")
"""The per-split folders of the converters' layouts."""


def datasets(data: Path, work: Path, kind: str) -> tuple[Path, Path]:
    """(the training dataset: two train patients and one val, the test dataset: one patient as ``val``)."""
    train, test = work / "data", work / "test"
    if not train.is_dir():
        cmd = [sys.executable, "-m", "histoloop.cli", "convert", "aperio"]
        cmd += [str(data / "annotations"), str(data / "images"), str(train), "--to", TARGETS[kind]]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        for folder in FOLDERS:
            for path in (train / folder / "train").glob(f"{TEST_TILE}*"):
                (test / folder / "val").mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), test / folder / "val" / path.name)
        for name in ("classes.txt", "data.yaml"):
            if (train / name).is_file():
                shutil.copy(train / name, test / name)
    return train, test


def measure(kind: str, train: Path, test: Path, out: Path, minutes: float, seed: int) -> dict[str, Any]:
    from kernel.kinds import PRIMARY_METRIC, check_kind
    from training.base import TrainConfig
    from training.evaluate import evaluate
    from training.trainer import get_trainer

    started = time.perf_counter()
    config = TrainConfig(epochs=1000, patience=1000, time=minutes, seed=seed, device="cpu")
    result = get_trainer(kind).train(train, config, out)
    tested = evaluate(out, test, split="val", device="cpu")
    primary = PRIMARY_METRIC[check_kind(kind)]
    return {
        "kind": kind,
        "minutes": minutes,
        "seed": seed,
        "epochs": len(result.history),
        "val_primary": result.metrics[primary],
        "val_ratio": result.metrics["corrections_ratio"],
        "threshold": result.card.extra.get("score_threshold"),
        "test_primary": tested[primary],
        "test_ratio": tested["corrections_ratio"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


RULES = {"primary": ("val_primary", 1), "corrections": ("val_ratio", -1)}
"""Each rule's val metric and its sign (higher is better: 1)."""


def pairwise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Of the pairs of versions whose test corrections ratios differ, how often each rule picks the one
    with the lower test ratio (``right``), the other (``wrong``), or neither (``tie``: equal val metrics,
    the gate keeps production, whichever it is), and over all pairs how many each rule cannot order."""
    counts = {rule: {"right": 0, "wrong": 0, "tie": 0} for rule in RULES}
    undecided = dict.fromkeys(RULES, 0)  # over every pair: those a rule cannot order (equal val metrics)
    pairs = 0
    for a, b in itertools.combinations(rows, 2):
        for rule, (key, _) in RULES.items():
            undecided[rule] += a[key] == b[key]
        if a["test_ratio"] == b["test_ratio"]:
            continue
        pairs += 1
        a_better = a["test_ratio"] < b["test_ratio"]
        for rule, (key, sign) in RULES.items():
            if a[key] == b[key]:
                counts[rule]["tie"] += 1
            else:
                counts[rule]["right" if ((a[key] - b[key]) * sign > 0) == a_better else "wrong"] += 1
    n = len(rows) * (len(rows) - 1) // 2
    return {"versions": len(rows), "all_pairs": n, "undecided": undecided, "pairs": pairs, **counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(TARGETS), default="segment")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "monuseg-breast")
    parser.add_argument("--work", type=Path, default=Path("/tmp/promotion-bench"))
    parser.add_argument("--minutes", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    train, test = datasets(args.data, args.work, args.kind)
    rows_path = args.work / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.is_file() else []
    done = {(r["minutes"], r["seed"]) for r in rows}
    for minutes, seed in itertools.product(args.minutes, args.seeds):
        if (minutes, seed) in done:
            continue
        row = measure(args.kind, train, test, args.work / f"v-{minutes}-{seed}", minutes, seed)
        rows.append(row)
        with rows_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    print(json.dumps(pairwise(rows)))


if __name__ == "__main__":
    main()
