"""OCR benchmark: the fast text engine next to naive easyocr, in one run, on the same images.

Images: a labelled real set (--labelled DIR: images/ and labels.tsv, light and heavy as yes / no /
ambiguous; ambiguous labels are left out of precision and recall), or every decoded image of the sample
crawl (OUT/images with the crawl's truth.parquet: light = has_text, heavy = a document, chart, table or
screenshot).
In one process, with one thread (so images/s is images/s/core), each image goes through
- naive: Pillow decode + `curate.ocr.score` (prepare + `easyocr.Reader.readtext`) at its DEFAULT settings
  (canvas_size 2560, every box recognized), scored like the full mode (page included);
- fast: `TextEngine(TextConfig()).score_bytes(data)`, the default engine (PP-OCRv4 on ONNX Runtime);
- one more fast column per --also SETTINGS (e.g. `detect_side=640`, `read=4`): what another setting costs.
The sides are interleaved per image, in an order that rotates from image to image, so that other load on
the machine (other people's tests) falls on every side alike and the ratio stays honest even when the
absolute figures do not. Decode time counts on every side.

Reported per side: images/s/core, the ratio to naive, light and heavy precision/recall against the labels
with the default thresholds (filters/text.py rules, curate.config.TextConfig), verdict agreement with naive,
failures, and peak RSS: the measuring process (every side together), and a child process that runs only
the fast engine (its own peak: what one text worker needs). Goals (issue 16, real images): fast >= 20x
naive images/s; light P >= 0.95, R >= 0.93; heavy P >= 0.9, R >= 0.8; <= 1.5 GiB per worker.

    python benchmarks/ocr.py --labelled DIR [--quick 40] [--also detect_side=640]
    python benchmarks/ocr.py --labelled DIR --fast-alone     # only the fast engine's memory, 3 rounds
    python benchmarks/ocr.py --images build/demo/images --truth build/sample/truth.parquet
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



# --- inputs ------------------------------------------------------------------------------------------------

def decoded_sample(crawl: Path, out: Path) -> Path:
    """OUT/images of the sample crawl in `crawl`: served on 127.0.0.1, extracted, downloaded and decoded (as
    `make demo` does), unless an earlier run left a complete OUT/images."""
    images = out / "images"
    if (images / "_MANIFEST.json").is_file():
        return images
    from curate.commands.demo import DEMO_FLAGS
    from curate.config import load_config
    from curate.crawl import snapshot_files
    from curate.pipelines import decode, download, extract
    from curate.readers import list_sources
    from curate.sample.plan import SNAPSHOTS
    from curate.sample.serve import SampleServer

    config = load_config(None, DEMO_FLAGS)
    with SampleServer(crawl) as server:
        extract.run(snapshot_files([s[0] for s in SNAPSHOTS], server.url("crawl"), "warc"), str(out), config, force=True)
        download.run(str(out), config, force=True)
    decode.run(list_sources([str(out / "fetched" / "*.tar")]), str(out), load_config(), force=True)
    return images


def load(images: Path, truth_path: Path, quick: int = 0) -> tuple[list[tuple[str, bytes]], dict[str, dict]]:
    """(key, bytes) of every decoded sample-crawl image, in key order (a stratified subset of `quick` by text
    kind), and each key's truth: light (has_text), heavy and its kind."""
    import pyarrow.parquet as pq

    rows = pq.read_table(truth_path, columns=["key", "has_text", "heavy", "text_kind"]).to_pylist()
    truth = {r["key"]: {"light": bool(r["has_text"]), "heavy": bool(r["heavy"]), "kind": r["text_kind"]}
             for r in rows}
    items = sorted((r["key"], r["data"]) for f in sorted(images.glob("*.parquet"))
                   for r in pq.read_table(f, columns=["key", "data"]).to_pylist())
    missing = [k for k, _ in items if k not in truth]
    if missing:
        raise SystemExit(f"{len(missing)} images have no truth row (is {truth_path} the crawl {images} came from?)")
    if quick:
        items = stratified(items, {k: truth[k]["kind"] for k, _ in items}, quick)
    return items, truth


def load_labelled(folder: Path, quick: int = 0) -> tuple[list[tuple[str, bytes]], dict[str, dict]]:
    """(file, bytes) of every image of a labelled set (labels.tsv: light, heavy as yes / no / ambiguous), and
    each file's truth (None where ambiguous); `quick`: a subset stratified by (light, heavy) label."""
    import csv

    labels = list(csv.DictReader((folder / "labels.tsv").read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    value = {"yes": True, "no": False}
    truth = {r["file"]: {"light": value.get(r["light"]), "heavy": value.get(r["heavy"]),
                         "kind": f"{r['light']}/{r['heavy']}"} for r in labels}
    items = sorted((r["file"], (folder / "images" / r["file"]).read_bytes()) for r in labels)
    if quick:
        items = stratified(items, {k: truth[k]["kind"] for k, _ in items}, quick)
    return items, truth


def stratified(items: list[tuple[str, bytes]], kinds: dict[str, str], n: int) -> list[tuple[str, bytes]]:
    """About n items, each kind in proportion (at least one of each), evenly spaced within a kind."""
    by_kind: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for item in items:
        by_kind[kinds[item[0]]].append(item)
    chosen = []
    for group in by_kind.values():
        take = max(1, round(n * len(group) / len(items)))
        step = len(group) / min(take, len(group))
        chosen += [group[int(i * step)] for i in range(min(take, len(group)))]
    return sorted(chosen)


# --- the sides ---------------------------------------------------------------------------------------------

def _one_thread(torch_too: bool = True) -> None:
    """One thread for OpenCV (and torch, which only the naive side needs: a text worker of the fast engine
    never imports it, so the fast engine's own memory is measured without it)."""
    import warnings

    import cv2

    cv2.setNumThreads(1)
    if torch_too:
        import torch

        # easyocr's recognizer asks its DataLoader for pinned memory, which warns on every call without a GPU
        warnings.filterwarnings("ignore", message=".*pin_memory.*")
        torch.set_num_threads(1)


def settings(text: str) -> dict[str, Any]:
    """`detect_side=640,read=4` -> TextConfig keyword arguments (ints where they parse)."""
    out: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    return out


def _engines(also: tuple[str, ...] = ()) -> tuple[Any, dict[str, Any]]:
    from curate.config import TextConfig
    from curate.ocr import TextEngine, load_reader
    from curate.ppocr import PPOCR

    reader, models = load_reader(threads=1), PPOCR(threads=1)
    engines = {"fast": TextEngine(TextConfig(threads=1), models)}
    for extra in also:
        engines[f"fast {extra}"] = TextEngine(TextConfig(threads=1, **settings(extra)), models)
    return reader, engines


def naive(reader: Any, data: bytes) -> Any:
    """Plain easyocr: Pillow decode and readtext at its default settings (canvas 2560), through the full mode's
    `curate.ocr.score` (odd sizes padded, failures reason-coded); the decoding counts in its time."""
    from PIL import Image

    from curate.ocr import score

    with Image.open(io.BytesIO(data)) as src:
        return score(reader, src, canvas=2560)


def _verdicts(result: Any) -> tuple[bool, bool]:
    from curate.config import TextConfig
    from curate.filters.text import is_heavy, is_light
    from curate.records import TextScore

    if not isinstance(result, TextScore):
        return False, False
    config = TextConfig()
    return is_light(result, config), is_heavy(result, config)


def measure(items: list[tuple[str, bytes]], progress: bool = True, also: tuple[str, ...] = ()) -> dict:
    """Every side on every image, interleaved: seconds and verdicts per side."""
    _one_thread()
    reader, engines = _engines(also)
    sides: dict[str, Any] = {"naive": lambda data: naive(reader, data)}
    sides.update({name: engine.score_bytes for name, engine in engines.items()})
    names = list(sides)
    for fn in sides.values():  # warm-up (first-call allocations, kernel selection), not timed
        fn(items[0][1])
    seconds = dict.fromkeys(names, 0.0)
    verdicts: dict[str, list[tuple[bool, bool]]] = {name: [] for name in names}
    failures = dict.fromkeys(names, 0)
    started = time.perf_counter()
    for i, (_, data) in enumerate(items):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            result = sides[name](data)
            seconds[name] += time.perf_counter() - t0
            verdicts[name].append(_verdicts(result))
            failures[name] += not hasattr(result, "chars")
        if progress and (i + 1) % 10 == 0:
            print(f"  ocr bench {i + 1}/{len(items)} images, {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)
    return {"names": names, "seconds": seconds, "verdicts": verdicts, "failures": failures,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def fast_alone(items: list[tuple[str, bytes]], rounds: int = 3) -> dict:
    """The fast engine by itself (for its own peak memory): models loaded, then every image, `rounds` times
    over: the peak after each round shows whether memory grows with the pictures scored."""
    from curate.config import TextConfig
    from curate.ocr import TextEngine

    _one_thread(torch_too=False)
    engine = TextEngine(TextConfig(threads=1))
    loaded = _hwm_mib("VmRSS")
    engine.score_bytes(items[0][1])
    started = time.perf_counter()
    peaks = []
    for _ in range(rounds):
        for _, data in items:
            engine.score_bytes(data)
        peaks.append(round(_hwm_mib()))
    seconds = time.perf_counter() - started
    return {"images_per_s": rounds * len(items) / seconds, "peak_rss_mib": _hwm_mib(), "loaded_rss_mib": loaded,
            "peak_after_each_round_mib": peaks}


def _hwm_mib(field: str = "VmHWM") -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith(field + ":")) / 1024


# --- the report --------------------------------------------------------------------------------------------

def _pr(predicted: list[bool], actual: list[bool | None]) -> tuple[float, float]:
    """Precision and recall, items whose truth is None (ambiguous) left out."""
    pairs = [(p, a) for p, a in zip(predicted, actual, strict=True) if a is not None]
    tp = sum(p and a for p, a in pairs)
    return (round(tp / max(1, sum(p for p, _ in pairs)), 3), round(tp / max(1, sum(bool(a) for _, a in pairs)), 3))


def rows(items: list[tuple[str, bytes]], truth: dict[str, dict], measured: dict, alone: dict | None) -> list[dict]:
    n = len(items)
    light = [truth[k]["light"] for k, _ in items]
    heavy = [truth[k]["heavy"] for k, _ in items]
    base = measured["verdicts"]["naive"]
    naive_rate = n / measured["seconds"]["naive"]
    out = []
    for name in measured["names"]:
        v = measured["verdicts"][name]
        light_agree = sum(a[0] == b[0] for a, b in zip(v, base, strict=True))
        heavy_agree = sum(a[1] == b[1] for a, b in zip(v, base, strict=True))
        light_p, light_r = _pr([x[0] for x in v], light)
        heavy_p, heavy_r = _pr([x[1] for x in v], heavy)
        rate = n / measured["seconds"][name]
        out.append({
            "benchmark": "ocr", "engine": name, "images": n, "images_per_s_core": round(rate, 3),
            "ms_per_image": round(1000 / rate, 1), "ratio_vs_naive": round(rate / naive_rate, 1),
            "light_p_r": f"{light_p:.3f} / {light_r:.3f}", "heavy_p_r": f"{heavy_p:.3f} / {heavy_r:.3f}",
            "light_agree": f"{light_agree}/{n} ({100 * light_agree / n:.1f}%)",
            "heavy_agree": f"{heavy_agree}/{n} ({100 * heavy_agree / n:.1f}%)",
            "light_kept": sum(x[0] for x in v), "heavy_kept": sum(x[1] for x in v), "failures": measured["failures"][name],
            "peak_rss_mib": round(measured["peak_rss_mib"]) if name == "naive" else
            (round(alone["peak_rss_mib"]) if alone and name == "fast" else "-"),
        })
    return out


def _child(args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, __file__, *args, "--json"], capture_output=True, text=True, env=env,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"ocr benchmark child {args} failed:\n{done.stderr[-3000:]}")
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench(source: list[str], quick: int = 0) -> list[dict]:
    """The rows (one per side), measured in a fresh child process with one thread: its settings and memory stay
    out of the caller's (make bench runs other benchmarks in its own process). `source`: `--labelled DIR` or
    `--images DIR --truth FILE`."""
    result: list[dict] = _child([*source, "--quick", str(quick)])["rows"]
    return result


def bench_crawl(crawl: Path, out: Path, quick: int = 0) -> list[dict]:
    """`make bench`: the sample crawl in `crawl` decoded into `out` (once), then `bench`."""
    return bench(["--images", str(decoded_sample(crawl, out)), "--truth", str(crawl / "truth.parquet")], quick)


def _print_table(table: list[dict]) -> None:
    keys = list(table[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in table:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labelled", help="a labelled real image folder (images/, labels.tsv)")
    parser.add_argument("--images", default="build/demo/images", help="OUT/images of a decoded sample crawl")
    parser.add_argument("--truth", default="build/sample/truth.parquet", help="that crawl's truth.parquet")
    parser.add_argument("--crawl", help="a sample crawl directory: decode it into --out first (ignores --images, "
                                        "--truth)")
    parser.add_argument("--out", default="build/bench/ocr", help="with --crawl: where its stages write")
    parser.add_argument("--quick", type=int, default=0, help="a stratified subset of about N images (0: all)")
    parser.add_argument("--also", action="append", default=[], metavar="SETTINGS",
                        help="one more fast column with these TextConfig settings, e.g. detect_side=640,read=4 "
                             "(repeatable)")
    parser.add_argument("--no-alone", action="store_true", help="skip the fast engine's own memory run")
    parser.add_argument("--fast-alone", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    if args.labelled:
        source = ["--labelled", args.labelled]
        items, truth = load_labelled(Path(args.labelled), args.quick)
    else:
        images, truth_path = Path(args.images), Path(args.truth)
        if args.crawl:
            images, truth_path = decoded_sample(Path(args.crawl), Path(args.out)), Path(args.crawl) / "truth.parquet"
        source = ["--images", str(images), "--truth", str(truth_path)]
        items, truth = load(images, truth_path, args.quick)
    if args.fast_alone:
        print(json.dumps(fast_alone(items)))
        return 0
    alone = None if args.no_alone else _child([*source, "--quick", str(args.quick), "--fast-alone"])
    started = time.time()
    measured = measure(items, progress=not args.json, also=tuple(args.also))
    table = rows(items, truth, measured, alone)
    base = measured["verdicts"]["naive"]
    differ = {name: [f"{key} {truth[key]['kind']}: naive {base[i]} {name} {v[i]}"
                     for i, (key, _) in enumerate(items) if v[i] != base[i]]
              for name, v in measured["verdicts"].items() if name != "naive"}
    result = {"images": len(items), "seconds": round(time.time() - started), "threads": 1, "rows": table,
              "disagreements (light, heavy)": differ,
              "fast_alone": alone,
              "interleaved": "per image, rotating order; other load on the machine hits every side alike"}
    if not args.json:
        _print_table(table)
        if alone:
            print(f"\nfast engine alone (child process, not interleaved): {alone['images_per_s']:.1f} images/s/core, "
                  f"peak RSS {alone['peak_rss_mib']:.0f} MiB ({alone['loaded_rss_mib']:.0f} MiB resident once the models "
                  f"are loaded); all sides' process peak RSS {measured['peak_rss_mib']:.0f} MiB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # here, not on import: make bench's other benchmarks keep theirs
    sys.exit(main())
