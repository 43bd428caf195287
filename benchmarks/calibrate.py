"""Choose the text filters' thresholds on real labelled images, by leave-one-source-out cross-validation.

A labelled set is a folder with `images/` and `labels.tsv` (`file`, `light`, `heavy`: yes | no | ambiguous;
ambiguous rows are left out of every figure) and optionally `SOURCES.tsv` (`file`, `repo`): images from one
repository share a source; without it, the part of the file name before `__` is the source. --kinds names a
table (`file`, `kinds`: comma-separated, e.g. `indic,scene`) whose kinds get a recall line each.

1. Every image is scored once with the default engine (`TextEngine(TextConfig())`, one thread), and so is a
   fixed, stratified part of the set turned by 90, 180 and 270 degrees (unless --no-rotations; a turned real page is still
   a real page, labelled as the original and in its source's fold). Scores are kept in
   --out/scores-<engine id>.json, so changing only the rules below rescores nothing.
2. The rules are filters/text.py's (is_light, is_heavy) at every point of a small grid (GRIDS). For each rule,
   the thresholds are chosen by OBJECTIVE on all sources but one and judged on the one left out; the held-out
   verdicts of every source pooled give the cross-validated precision and recall, the figure to trust on images
   not yet seen, overall, on the originals alone, and per kind.
3. The thresholds chosen on all sources together are printed as the defaults to use (curate.config.TextConfig),
   with how often each fold picked them (a rule whose thresholds jump from fold to fold is over-fitted) and how
   many scored pictures lie within 5% of each threshold (a threshold with pictures at its edge has no margin).

Objective: the goals on real images as ratios (light P >= 0.95, R >= 0.93; heavy P >= 0.9, R >= 0.85; the recall
of every kind with at least KIND_MIN positives >= KIND_RECALL), with margin: a choice is worth min(P / goal P,
R / goal R, each such kind's recall / KIND_RECALL, 1) at its worst over the scores as measured and with
every measure compared (characters, extent, page) moved 5% down and 5% up (MARGIN). Among choices that meet
the goals, fewer pictures within 5% of a threshold win, then F1, then the smaller thresholds (the simpler
rule): once the goals are met, a threshold in a gap between pictures is worth more than one more calibration
picture caught at the edge of a cluster. With --crawl (a built sample crawl), a choice must first keep
the sample crawl's truth at its bars (light P >= 0.95, R >= 0.9; heavy P >= 0.9, R >= 0.8): a constraint in
every fold, never a source to fit.

    python benchmarks/calibrate.py --labelled DIR [--crawl build/sample] [--out build/bench/calibrate]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import math
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

GOALS = {"light": (0.95, 0.93), "heavy": (0.9, 0.85)}
SAMPLE_BARS = {"light": (0.95, 0.9), "heavy": (0.9, 0.8)}
INF = math.inf
GRIDS: dict[str, dict[str, list[Any]]] = {
    "light": {"light_min_chars": [1, 2, 3, 4, 5, 6, 8, 10],
              "light_min_extent": [8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, INF]},
    "heavy": {"heavy_min_chars": [40, 50, 60, 80, 100, 120, 150],
              "heavy_min_page": [0.4, 0.45, 0.5, 0.55, 0.6, 0.65],
              "heavy_min_extent": [20.0, 30.0, 40.0, 60.0, 80.0, 120.0, INF],
              "heavy_dense_chars": [200, 300, 400, 600, 800, 10**9]},
}
# the TextScore field each threshold is compared with (for the pictures-near-a-threshold count)
MEASURED = {"light_min_chars": "chars", "light_min_extent": "extent", "heavy_min_chars": "chars",
            "heavy_min_page": "page", "heavy_min_extent": "extent", "heavy_dense_chars": "chars"}
DEFAULT_KINDS = Path(__file__).resolve().parent.parent / "tests" / "data" / "real_image_kinds.tsv"
TURNS = (90, 180, 270)
KIND_RECALL, KIND_MIN = 0.8, 5
MARGIN = (0.95, 1.05)  # the measures moved by these factors: a choice is judged at its worst over them


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


def load_kinds(path: Path | None) -> dict[str, list[str]]:
    if path is None or not path.is_file():
        return {}
    listed = path.read_text(encoding="utf-8").splitlines()
    return {r["file"]: r["kinds"].split(",") for r in csv.DictReader(listed, delimiter="\t")}


def turned_rows(rows: list[dict[str, str]], kinds: dict[str, list[str]]) -> list[dict[str, str]]:
    """A fixed, stratified part of the set to turn: every 7th heavy page, every 7th light-only picture and every
    12th picture without text (in file order; pictures already turned or with vertical text left out), each at
    90, 180 and 270 degrees counter-clockwise. Labels and source are the original's; the kind is the turn."""
    upright = [r for r in rows if not {"rotated", "vertical"} & set(kinds.get(r["file"], []))]
    picked = (sorted((r for r in upright if r["heavy"] == "yes"), key=lambda r: r["file"])[::7]
              + sorted((r for r in upright if r["light"] == "yes" and r["heavy"] == "no"), key=lambda r: r["file"])[::7]
              + sorted((r for r in upright if r["light"] == "no"), key=lambda r: r["file"])[::12])
    return [{**r, "file": f"{r['file']}@{turn}", "original": r["file"], "turn": str(turn)}
            for r in picked for turn in TURNS]


def image_bytes(folder: Path, row: dict[str, str]) -> bytes:
    """A labelled file's bytes, or a turned copy's: the original decoded as the engine decodes it (EXIF
    orientation applied), turned, and stored losslessly as PNG."""
    if "turn" not in row:
        return (folder / "images" / row["file"]).read_bytes()
    from PIL import Image, ImageOps

    with Image.open(folder / "images" / row["original"]) as im:
        picture = ImageOps.exif_transpose(im)
        picture.load()
    turned = picture.rotate(int(row["turn"]), expand=True)
    buffer = io.BytesIO()
    turned.save(buffer, format="PNG")
    return buffer.getvalue()


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


def score_all(pictures: list[Callable[[], bytes]], out: Path) -> list[dict]:
    """TextScore fields (or {"error": reason}) of each picture with the default engine, cached per engine id and
    picture content."""
    from curate.config import TextConfig
    from curate.ocr import TextEngine, engine_id

    config = TextConfig(threads=1)
    cache_path = out / f"scores-{engine_id(config)}.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    engine = None
    keys = []
    for i, read in enumerate(pictures):
        data = read()
        key = hashlib.sha256(data).hexdigest()
        keys.append(key)
        if key in cache:
            continue
        engine = engine or TextEngine(config)
        result = engine.score_bytes(data)
        cache[key] = result._asdict() if hasattr(result, "_asdict") else {"error": result.reason}
        if (i + 1) % 25 == 0:
            print(f"  scored {i + 1}/{len(pictures)}", file=sys.stderr, flush=True)
            out.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cache))
    out.mkdir(parents=True, exist_ok=True)
    cache_path.write_text(json.dumps(cache))
    return [cache[key] for key in keys]


def grid(kind: str) -> list[dict[str, Any]]:
    names = list(GRIDS[kind])
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*GRIDS[kind].values())]


def verdicts(kind: str, scores: list[dict], points: list[dict[str, Any]], factor: float = 1.0) -> np.ndarray:
    """[grid point, picture] -> the rule's verdict (filters/text.py), False for a picture that failed; with the
    measures the thresholds compare (MEASURED) multiplied by `factor`."""
    from curate.config import TextConfig
    from curate.filters.text import is_heavy, is_light
    from curate.records import TextScore

    rule = is_light if kind == "light" else is_heavy
    moved = set(MEASURED.values())
    parsed = [None if "error" in s else TextScore(**{k: v * factor if k in moved else v for k, v in s.items()})
              for s in scores]
    out = np.zeros((len(points), len(scores)), bool)
    for g, t in enumerate(points):
        config = TextConfig(**t)
        out[g] = [s is not None and rule(s, config) for s in parsed]
    return out


def near(scores: list[dict], points: list[dict[str, Any]]) -> np.ndarray:
    """[grid point, picture] -> the picture's measure lies within 5% of one of the point's thresholds (thresholds
    that are off, infinite or 10**9, excluded)."""
    out = np.zeros((len(points), len(scores)), bool)
    bands: dict[tuple[str, float], np.ndarray] = {}
    for g, t in enumerate(points):
        for name, v in t.items():
            if not (math.isfinite(v) and v < 10**9):
                continue
            if (name, v) not in bands:
                measured = np.array([s.get(MEASURED[name], -1.0) if "error" not in s else -1.0 for s in scores])
                bands[name, v] = (measured >= 0.95 * v) & (measured <= 1.05 * v)
            out[g] |= bands[name, v]
    return out


def counts(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tp, fp, fn per grid point (rows of predicted) against truth."""
    return (predicted & truth).sum(1), (predicted & ~truth).sum(1), (~predicted & truth).sum(1)


def precision_recall(tp: Any, fp: Any, fn: Any) -> tuple[Any, Any]:
    return tp / np.maximum(1, tp + fp), tp / np.maximum(1, tp + fn)


def fit(kind: str, predicted: np.ndarray, moved: list[np.ndarray], truth: np.ndarray, members: np.ndarray,
        columns: np.ndarray, margins: np.ndarray, sample_ok: np.ndarray, points: list[dict[str, Any]]) -> int:
    """The grid point with the best objective on the pictures in `columns` (module docstring); `moved`: the
    verdicts with the measures moved by each MARGIN factor; `members`: [kind, picture] membership."""
    goal_p, goal_r = GOALS[kind]
    p, r = precision_recall(*counts(predicted[:, columns], truth[columns]))
    f1 = 2 * p * r / np.maximum(1e-9, p + r)
    positives = (members[:, columns] & truth[columns]).astype(np.int64)
    counted = positives.sum(1) >= KIND_MIN
    objective = np.ones(len(points))
    for verdict in (predicted, *moved):
        mp, mr = precision_recall(*counts(verdict[:, columns], truth[columns]))
        objective = np.minimum(objective, np.minimum(mp / goal_p, mr / goal_r))
        if counted.any():
            found = verdict[:, columns].astype(np.int64) @ positives[counted].T  # [point, kind]
            objective = np.minimum(objective, (found / positives[counted].sum(1)).min(1) / KIND_RECALL)
    objective = np.round(objective, 6)
    crowded = margins[:, columns].sum(1)
    best: tuple | None = None
    for g, t in enumerate(points):
        rank = (bool(sample_ok[g]), objective[g], -int(crowded[g]), round(float(f1[g]), 6), *[-v for v in t.values()])
        if best is None or rank > best[0]:
            best = (rank, g)
    assert best is not None
    return best[1]


def cross_validate(kind: str, rows: list[dict[str, str]], scores: list[dict], kinds: dict[str, list[str]],
                   sample: list[tuple[dict, bool]]) -> dict[str, Any]:
    labelled = [i for i, row in enumerate(rows) if row[kind] != "ambiguous"]
    rows, scores = [rows[i] for i in labelled], [scores[i] for i in labelled]
    truth = np.array([row[kind] == "yes" for row in rows])
    points = grid(kind)
    predicted = verdicts(kind, scores, points)
    moved = [verdicts(kind, scores, points, factor) for factor in MARGIN]
    margins = near(scores, points)
    sample_ok = np.ones(len(points), bool)
    if sample:
        sp, sr = precision_recall(*counts(verdicts(kind, [s for s, _ in sample], points),
                                          np.array([y for _, y in sample])))
        sample_ok = (sp >= SAMPLE_BARS[kind][0]) & (sr >= SAMPLE_BARS[kind][1])
    sources = np.array([row["source"] for row in rows])
    names = sorted({k for row in rows for k in row_kinds(row, kinds)})
    members = np.array([[name in row_kinds(row, kinds) for row in rows] for name in names]).reshape(len(names), -1)
    held_out = np.zeros(len(rows), bool)
    picks: Counter = Counter()
    for source in sorted(set(sources)):
        g = fit(kind, predicted, moved, truth, members, np.flatnonzero(sources != source), margins, sample_ok, points)
        picks[json.dumps(points[g])] += 1
        held_out[sources == source] = predicted[g, sources == source]
    chosen = fit(kind, predicted, moved, truth, members, np.arange(len(rows)), margins, sample_ok, points)

    def figures(mask: np.ndarray, verdict: np.ndarray) -> dict[str, Any]:
        tp, fp, fn = (int(x[0]) for x in counts(verdict[None, mask], truth[mask]))
        p, r = precision_recall(tp, fp, fn)
        return {"precision": round(float(p), 3), "recall": round(float(r), 3), "tp_fp_fn": [tp, fp, fn]}

    originals = np.array(["turn" not in row for row in rows])
    per_kind: dict[str, Any] = {}
    for name, mask in zip(names, members, strict=True):
        per_kind[name] = {"pictures": int(mask.sum()), "positives": int((mask & truth).sum()),
                          "cv_recall": figures(mask, held_out)["recall"] if (mask & truth).any() else None,
                          "cv_false_positives": int((mask & ~truth & held_out).sum())}
    result = {"rule": kind, "images": len(rows), "originals": int(originals.sum()), "sources": len(set(sources)),
              "chosen": points[chosen], "cv": figures(np.ones(len(rows), bool), held_out),
              "cv_originals": figures(originals, held_out), "cv_turned": figures(~originals, held_out),
              "all_data": figures(np.ones(len(rows), bool), predicted[chosen]),
              "near_thresholds": {name: int(near(scores, [{name: v}]).sum()) for name, v in points[chosen].items()},
              "fold_picks": dict(picks.most_common()), "per_kind": per_kind,
              "cv_errors": [f"{'FP' if held_out[i] else 'FN'} {row['file']}" for i, row in enumerate(rows)
                            if held_out[i] != truth[i]]}
    if sample:
        sp, sr = precision_recall(*(int(x[0]) for x in counts(verdicts(kind, [s for s, _ in sample], [points[chosen]]),
                                                               np.array([y for _, y in sample]))))
        result["sample"] = {"precision": round(float(sp), 3), "recall": round(float(sr), 3)}
    return result


def row_kinds(row: dict[str, str], kinds: dict[str, list[str]]) -> list[str]:
    """A picture's kinds: its row in the kinds table, or for a turned copy the turn (of text, or of none)."""
    if "turn" in row:
        return [f"turned-{row['turn']}" if row["light"] == "yes" else "turned-no-text"]
    return kinds.get(row["file"], [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labelled", required=True, help="a labelled image folder (images/, labels.tsv)")
    parser.add_argument("--kinds", type=Path, default=DEFAULT_KINDS, help="a table of each file's kinds (file, kinds)")
    parser.add_argument("--no-rotations", action="store_true", help="score only the pictures as stored")
    parser.add_argument("--crawl", help="a built sample crawl (curate sample-crawl): its truth is a constraint")
    parser.add_argument("--out", default="build/bench/calibrate", help="where scores are cached")
    args = parser.parse_args()
    folder = Path(args.labelled)
    if not (folder / "labels.tsv").is_file():
        raise SystemExit(f"{folder}/labels.tsv not found: --labelled takes a folder with images/ and labels.tsv")
    rows = load_labels(folder)
    kinds = load_kinds(args.kinds)
    if not args.no_rotations:
        rows += turned_rows(rows, kinds)
    started = time.perf_counter()
    crawl = sample_images(Path(args.crawl)) if args.crawl else []
    pictures: list[Callable[[], bytes]] = [lambda row=row: image_bytes(folder, row) for row in rows]
    pictures += [path.read_bytes for path, _, _ in crawl]
    scored = score_all(pictures, Path(args.out))
    sample = {"light": [(s, light) for s, (_, light, _) in zip(scored[len(rows):], crawl, strict=True)],
              "heavy": [(s, heavy) for s, (_, _, heavy) in zip(scored[len(rows):], crawl, strict=True)]}
    print(f"{len(scored)} images scored (or cached) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    by_kind: dict[str, Any] = defaultdict(dict)
    for kind in ("light", "heavy"):
        result = cross_validate(kind, rows, scored[:len(rows)], kinds, sample[kind])
        for name, figures in result.pop("per_kind").items():
            by_kind[name][kind] = figures
        print(json.dumps(result, indent=1))
    print(json.dumps({"per_kind": by_kind}, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
