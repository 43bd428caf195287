"""Decontamination recall per edit family, and training pictures dropped that are not copies, through the stages.

The evaluation set is a folder of real pictures (`--eval`). The training run is a folder made here: every
evaluation picture as is ("original") and one edited copy of it per family (curate.sample.edits: crops up to
10% a side, rescale, JPEG, format, brightness, contrast, caption bar, watermark, two combined), planted among
other real pictures that are no copies (`--others`, e.g. photographs of people and scenes; those within pHash
radius 6 of an evaluation picture are the same picture and are left out). The folder goes
through the decode and dedup stages as `curate filter` runs them (DirectRunner), with the evaluation set as
`dedup.exclude_near`, so the figures are the pipeline's: a copy is caught when dedup rejects it as
`eval_overlap`; every `eval_overlap` among the other pictures is a training picture wrongly dropped. The same
run without the evaluation set gives dedup's time without decontamination, for the cost.

    python benchmarks/decontaminate.py --eval DIR --others DIR [--out build/bench/decontaminate.json]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from curate import reasons as R
from curate.config import load_config
from curate.hashing import hamming, phash64
from curate.imaging import Decoded, to_rgb
from curate.imaging import decode as decode_picture
from curate.io import parquet_files
from curate.pipelines import decode, dedup
from curate.readers import IMAGE_SUFFIXES, list_sources
from curate.sample.edits import FAMILIES, edited


def _pictures(folder: str) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _hash(path: Path) -> int | None:
    result = decode_picture(path.read_bytes())
    return phash64(result.view) if isinstance(result, Decoded) else None


def _plant(evaluation: list[Path], others: list[Path], folder: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Write the training folder; returns file name -> (family or "other", the evaluation picture's name), and
    the other pictures left out because they are evaluation pictures too (within pHash radius 6 of one: two
    sets may hold one upstream file under two names)."""
    planted: dict[str, tuple[str, str]] = {}
    hashes = [h for h in map(_hash, evaluation) if h is not None]
    shared = [p.name for p in others if (h := _hash(p)) is not None and min(hamming(h, e) for e in hashes) <= 6]
    for n, path in enumerate(evaluation):
        data = path.read_bytes()
        name = f"e{n:04d}-original{path.suffix.lower()}"
        (folder / name).write_bytes(data)
        planted[name] = ("original", path.name)
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.seek(0)
                rgb = ImageOps.exif_transpose(to_rgb(im))
        except OSError:
            continue
        for family in FAMILIES:
            copy, _ = edited(rgb, family, n)
            suffix = ".png" if copy.startswith(b"\x89PNG") else ".webp" if copy.startswith(b"RIFF") else ".jpg"
            name = f"e{n:04d}-{family}{suffix}"
            (folder / name).write_bytes(copy)
            planted[name] = (family, path.name)
    for n, path in enumerate(others):
        if path.name not in shared:
            name = f"o{n:04d}{path.suffix.lower()}"
            shutil.copyfile(path, folder / name)
            planted[name] = ("other", path.name)
    return planted, shared


def _decisions(out: Path) -> dict[str, dict[str, Any]]:
    import pyarrow.parquet as pq

    urls = {}
    for url in parquet_files(str(out), "images", "no images"):
        for row in pq.read_table(url, columns=["key", "url"]).to_pylist():
            urls[row["key"]] = Path(row["url"]).name
    return {urls[row["key"]]: row for url in parquet_files(str(out), "dedup", "no decisions")
            for row in pq.read_table(url).to_pylist()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", required=True, help="the evaluation set: a folder of real pictures")
    parser.add_argument("--others", required=True, help="real pictures that are no copies of the evaluation set")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    evaluation, others = _pictures(args.eval), _pictures(args.others)
    with tempfile.TemporaryDirectory(prefix="curate-decontaminate-") as tmp:
        folder, out = Path(tmp, "train"), Path(tmp, "out")
        folder.mkdir()
        planted, shared = _plant(evaluation, others, folder)
        started = time.perf_counter()
        decode.run(list_sources([str(folder)]), str(out), load_config())
        decode_s = time.perf_counter() - started
        started = time.perf_counter()
        dedup.run(str(out), load_config())
        plain_s = time.perf_counter() - started
        config = load_config(None, {"dedup.exclude_near": [args.eval]})
        started = time.perf_counter()
        dedup.run(str(out), config, force=True)
        decontaminated_s = time.perf_counter() - started
        started = time.perf_counter()
        dedup.run(str(out), config)  # up to date: the evaluation set's index is cached, no picture is read
        check_s = time.perf_counter() - started
        decided = _decisions(out)
    decoded = Counter(planted[name][0] for name in decided)
    caught = Counter(planted[name][0] for name, d in decided.items() if d["reason"] == R.EVAL_OVERLAP)
    wrong = sorted(planted[name][1] for name, d in decided.items()
                   if d["reason"] == R.EVAL_OVERLAP and planted[name][0] == "other")
    # a copy dropped for another evaluation picture than its own is caught, but not for the right reason
    misnamed = sorted(name for name, d in decided.items() if d["reason"] == R.EVAL_OVERLAP
                      and planted[name][0] != "other" and d["dup_of"] and "/" in d["dup_of"]
                      and Path(d["dup_of"]).name != planted[name][1])
    figures = {
        "evaluation_pictures": len(evaluation), "other_pictures": len(others) - len(shared),
        "others_left_out_as_evaluation_pictures": shared, "training_pictures": len(planted),
        "decoded": dict(decoded),
        "recall": {f: round(caught[f] / decoded[f], 3) if decoded[f] else None for f in ("original", *FAMILIES)},
        "caught": dict(caught), "others_dropped": len(wrong), "others_dropped_names": wrong[:20],
        "caught_for_another_evaluation_picture": misnamed[:20],
        "seconds": {"decode": round(decode_s, 1), "dedup": round(plain_s, 1),
                    "dedup_decontaminating": round(decontaminated_s, 1), "up_to_date_check": round(check_s, 2)},
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
