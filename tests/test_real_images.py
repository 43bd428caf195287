"""The text filters on real labelled images: photographs, scans, screenshots and charts from public
repositories (`shared/real-images` beside the checkout: images/, labels.tsv with light and heavy as yes / no /
ambiguous). `curate ocr` scores every one with the default engine, as a user would; CI holds the filters to
floors a little under the goals (BENCHMARKS.md, "Text filter on real images"), so a regression on real images
fails CI. Ambiguous labels are left out of precision and recall."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[2] / "shared" / "real-images"
FLOORS = {"light": (0.93, 0.9), "heavy": (0.85, 0.75)}  # precision, recall

pytestmark = pytest.mark.slow


def _precision_recall(pairs: list[tuple[bool, bool]]) -> tuple[float, float]:
    tp = sum(p and y for p, y in pairs)
    return tp / max(1, sum(p for p, _ in pairs)), tp / max(1, sum(y for _, y in pairs))


def test_curate_ocr_scores_every_real_image_and_the_filters_hold_their_floors(tmp_path: Path) -> None:
    assert (REAL / "labels.tsv").is_file(), "shared/real-images is expected beside the checkout"
    labels = list(csv.DictReader((REAL / "labels.tsv").read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    assert len(labels) >= 150
    # what decode refuses gets one line too: SVG, HTML named .jpg, an empty file, a JPEG cut in half
    odd = {"drawing.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
           "page.jpg": b"<!doctype html><html><body>moved</body></html>", "empty.png": b"",
           "cut.jpg": sorted((REAL / "images").glob("*.jpg"))[0].read_bytes()[:2000]}
    for name, data in odd.items():
        (tmp_path / name).write_bytes(data)
    paths = [str(REAL / "images" / row["file"]) for row in labels] + [str(tmp_path / name) for name in odd]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-m", "curate", "ocr", *paths], capture_output=True, text=True, env=env,
                          timeout=900, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["path"] for line in lines] == paths  # one line per image, in order
    by_path = {line["path"]: line for line in lines}
    for name in odd:
        line = by_path[str(tmp_path / name)]
        assert set(line) == {"path", "error", "detail"} and line["error"] in (
            "undecodable", "unsupported_format", "truncated"), line
    scored = [by_path[str(REAL / "images" / row["file"])] for row in labels]
    assert all("verdict" in line for line in scored), [line for line in scored if "verdict" not in line]
    figures = {}
    for kind, (floor_p, floor_r) in FLOORS.items():
        pairs = [(line[kind], row[kind] == "yes") for line, row in zip(scored, labels, strict=True)
                 if row[kind] != "ambiguous"]
        figures[kind] = _precision_recall(pairs)
        assert figures[kind][0] >= floor_p and figures[kind][1] >= floor_r, (kind, figures)
    print(f"real images: light P/R {figures['light']}, heavy P/R {figures['heavy']}")
