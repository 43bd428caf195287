"""Choose the text filters' thresholds on real labelled images, by leave-one-source-out cross-validation.

A labelled set is a folder with `images/` and `labels.tsv` (`file`, `light`, `heavy`: yes | no | ambiguous;
ambiguous rows are left out of every figure) and optionally `SOURCES.tsv` (`file`, `repo`): images from one
repository share a source; without it, the part of the file name before `__` is the source.

1. Every image is scored once with the default engine (`TextEngine(TextConfig())`, one thread); scores are
   kept in --out/scores-<engine id>.json, so changing only the rules below rescores nothing.
2. Light: `chars >= light_min_chars`; heavy: `chars >= heavy_min_chars and page >= heavy_min_page and
   lines >= heavy_min_lines` (filters/text.py). For each rule, the thresholds on a small grid are chosen by
   OBJECTIVE on all sources but one, and judged on the one left out; the held-out verdicts of every source
   pooled give the cross-validated precision and recall, the figure to trust on images not yet seen.
3. The thresholds chosen on all sources together are printed as the defaults to use (curate.config.TextConfig),
   with how often each fold picked them: a rule whose thresholds jump from fold to fold is over-fitted.

Objective: the goals on real images as ratios (light P >= 0.95, R >= 0.93; heavy P >= 0.9, R >= 0.8): a choice
is worth min(P / goal P, R / goal R), ties broken by F1, then by the smaller thresholds (the simpler rule).
With --crawl (a built sample crawl), a choice must first keep the sample crawl's truth at its bars (light
P >= 0.95, R >= 0.9; heavy P >= 0.9, R >= 0.8): a constraint in every fold, never a source to fit.

    python benchmarks/calibrate.py --labelled DIR [--crawl build/sample] [--out build/bench/calibrate]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOALS = {"light": (0.95, 0.93), "heavy": (0.9, 0.8)}
SAMPLE_BARS = {"light": (0.95, 0.9), "heavy": (0.9, 0.8)}
GRIDS: dict[str, dict[str, list[Any]]] = {
    "light": {"light_min_chars": [1, 2, 3, 4, 5, 6, 8, 10, 12, 15]},
    "heavy": {"heavy_min_chars": [20, 30, 40, 50, 60, 80, 100, 120, 150],
              "heavy_min_page": [0.0, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65],
              "heavy_min_lines": [1, 2, 3, 4, 5, 6, 8]},
}


def load_labels(folder: Path) -> list[dict[str, str]]:
    """Rows of labels.tsv with their `source` (SOURCES.tsv's repo, or the file name's prefix)."""
    rows = list(csv.DictReader((folder / "labels.tsv").read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    sources = {}
    if (folder / "SOURCES.tsv").is_file():
        listed = (folder / "SOURCES.tsv").read_text(encoding="utf-8").splitlines()
        sources = {r["file"]: r["repo"] for r in csv.DictReader(listed, delimiter="\t")}
    for row in rows:
        row["source"] = sources.get(row["file"], row["file"].split("__")[0])
    return rows


def sample_images(crawl: Path) -> list[tuple[Path, bool, bool]]:
    """(file, light, heavy) of every picture the sample crawl keeps (its truth: has_text, heavy)."""
    from urllib.parse import urlsplit

    import pyarrow.parquet as pq

    out = []
    for row in pq.read_table(crawl / "truth.parquet").to_pylist():
        if row["fate"] == "kept" and row["fault"] == "none":
            files = sorted(crawl.glob(f"hosts/*{urlsplit(row['url']).path}"))
            if files:
                out.append((files[0], bool(row["has_text"]), bool(row["heavy"])))
    return out


def score_files(files: list[Path], out: Path) -> list[dict]:
    """TextScore fields (or {"error": reason}) of each file with the default engine, cached per engine id and
    file content."""
    from curate.config import TextConfig
    from curate.ocr import TextEngine, engine_id

    config = TextConfig(threads=1)
    cache_path = out / f"scores-{engine_id(config)}.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    engine = None
    keys = []
    for i, path in enumerate(files):
        data = path.read_bytes()
        key = hashlib.sha256(data).hexdigest()
        keys.append(key)
        if key in cache:
            continue
        engine = engine or TextEngine(config)
        result = engine.score_bytes(data)
        cache[key] = result._asdict() if hasattr(result, "_asdict") else {"error": result.reason}
        if (i + 1) % 25 == 0:
            print(f"  scored {i + 1}/{len(files)}", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    cache_path.write_text(json.dumps(cache))
    return [cache[key] for key in keys]


def predict(kind: str, score: dict, t: dict[str, Any]) -> bool:
    from curate.config import TextConfig
    from curate.filters.text import is_heavy, is_light
    from curate.records import TextScore

    if "error" in score:
        return False
    s = TextScore(**score)
    config = TextConfig(**t)
    return is_light(s, config) if kind == "light" else is_heavy(s, config)


def precision_recall(pairs: list[tuple[bool, bool]]) -> tuple[float, float, int, int, int]:
    tp = sum(p and y for p, y in pairs)
    fp = sum(p and not y for p, y in pairs)
    fn = sum(y and not p for p, y in pairs)
    return tp / max(1, tp + fp), tp / max(1, tp + fn), tp, fp, fn


def fit(kind: str, items: list[tuple[dict, bool]], sample: list[tuple[dict, bool]]) -> dict[str, Any]:
    """The grid point with the best objective on these (score, label) items that keeps the sample crawl's
    (score, label) items at their bars."""
    goal_p, goal_r = GOALS[kind]
    bar_p, bar_r = SAMPLE_BARS[kind]
    names = list(GRIDS[kind])
    best: tuple | None = None
    for values in itertools.product(*GRIDS[kind].values()):
        t = dict(zip(names, values, strict=True))
        p, r, *_ = precision_recall([(predict(kind, s, t), y) for s, y in items])
        sp, sr, *_ = precision_recall([(predict(kind, s, t), y) for s, y in sample])
        f1 = 2 * p * r / max(1e-9, p + r)
        # higher is better; the negated thresholds prefer the smaller (simpler) rule on a tie
        rank = (not sample or (sp >= bar_p and sr >= bar_r), round(min(p / goal_p, r / goal_r), 6), round(f1, 6),
                *[-v for v in values])
        if best is None or rank > best[0]:
            best = (rank, t)
    assert best is not None
    return best[1]


def cross_validate(kind: str, rows: list[dict[str, str]], scores: dict[str, dict],
                   sample: list[tuple[dict, bool]]) -> dict[str, Any]:
    labelled = [(row, scores[row["file"]], row[kind] == "yes") for row in rows if row[kind] != "ambiguous"]
    pooled: list[tuple[bool, bool]] = []
    picks: Counter = Counter()
    misses: list[str] = []
    for source in sorted({row["source"] for row, _, _ in labelled}):
        train = [(s, y) for row, s, y in labelled if row["source"] != source]
        t = fit(kind, train, sample)
        picks[json.dumps(t, sort_keys=True)] += 1
        for row, s, y in labelled:
            if row["source"] == source:
                pooled.append((predict(kind, s, t), y))
                if pooled[-1][0] != y:
                    misses.append(f"{'FP' if pooled[-1][0] else 'FN'} {row['file']}")
    chosen = fit(kind, [(s, y) for _, s, y in labelled], sample)
    cv = precision_recall(pooled)
    fitted = precision_recall([(predict(kind, s, chosen), y) for _, s, y in labelled])
    on_sample = precision_recall([(predict(kind, s, chosen), y) for s, y in sample])
    return {"rule": kind, "images": len(labelled), "sources": len({row["source"] for row, _, _ in labelled}),
            "chosen": chosen, "cv_precision": round(cv[0], 3), "cv_recall": round(cv[1], 3),
            "cv_tp_fp_fn": cv[2:], "all_data_precision": round(fitted[0], 3), "all_data_recall": round(fitted[1], 3),
            "sample_precision": round(on_sample[0], 3) if sample else None,
            "sample_recall": round(on_sample[1], 3) if sample else None,
            "fold_picks": dict(picks.most_common()), "cv_errors": misses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labelled", required=True, help="a labelled image folder (images/, labels.tsv)")
    parser.add_argument("--crawl", help="a built sample crawl (curate sample-crawl): its truth is a constraint")
    parser.add_argument("--out", default="build/bench/calibrate", help="where scores are cached")
    args = parser.parse_args()
    folder = Path(args.labelled)
    if not (folder / "labels.tsv").is_file():
        raise SystemExit(f"{folder}/labels.tsv not found: --labelled takes a folder with images/ and labels.tsv")
    rows = load_labels(folder)
    started = time.perf_counter()
    files = [folder / "images" / row["file"] for row in rows]
    crawl = sample_images(Path(args.crawl)) if args.crawl else []
    scored = score_files(files + [path for path, _, _ in crawl], Path(args.out))
    scores = {row["file"]: s for row, s in zip(rows, scored, strict=False)}
    sample = {"light": [(s, light) for s, (_, light, _) in zip(scored[len(rows):], crawl, strict=True)],
              "heavy": [(s, heavy) for s, (_, _, heavy) in zip(scored[len(rows):], crawl, strict=True)]}
    print(f"{len(scored)} images scored (or cached) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    results = [cross_validate(kind, rows, scores, sample[kind]) for kind in ("light", "heavy")]
    for r in results:
        print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
