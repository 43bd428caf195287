"""`curate experiment text-filter`: the seed paper's text-filter ablation (its Table 2) in miniature.

The paper trained the same ViT on all of its web data, on the images with readable text ("light", 50.3%
kept) and on text-dense images ("heavy", 1.3% kept), each for the same number of seen images, and OCR &
Chart VQA rose from 26.8 to 33.2 and 40.4. This command does the same on one curated, text-scored but
unfiltered output:
1. reads the stored text scores from OUT/shards/*.parquet (no OCR rerun; key.json in the tars when there
   is no Parquet), decides each filter with `curate.filters.text` on `TextConfig` thresholds (defaults < --config
   YAML < flags; the stored light/heavy booleans are not trusted), and copies each subset's tar members
   into RUN/subsets/FILTER/ (the trainer reads them unchanged; "none" reads OUT/shards itself);
2. trains the same preset on every subset and seed for the same number of steps x batch = seen images
   (smaller subsets repeat);
3. probes every run's teacher (curate.trainer.eval: textkind = the text probe, digits = the natural-image
   probe; k-NN and linear) next to the random initialisation of the same seed, probe seed = training seed;
4. prints a table shaped like the paper's (data kept, mean ± std over seeds, deltas to "none" in points)
   and writes RUN/results.json, RUN/results.png and RUN/table.txt.
A finished run (RUN/runs/FILTER-sSEED/result.json with the same settings and data) is reused, so a killed
experiment goes on where it stopped; --force trains everything again.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec

from curate.commands.args import Add, int_from, output_option, positive_int
from curate.config import TEXT_FILTERS, TextConfig
from curate.errors import ConfigError, InputError, UserError
from curate.records import TextScore
from curate.shards import tar_samples, write_tar
from curate.tables import SCORE

PAPER = {"none": (100.0, 26.8), "light": (50.3, 33.2), "heavy": (1.3, 40.4)}  # kept %, OCR & Chart VQA (ViT-2B)
METRICS = ("knn", "linear")
_COLORS = {"none": "#888888", "light": "#dd8452", "heavy": "#4c72b0", "notext": "#55a868"}


# ---------------------------------------------------------------------------------------------------------
# scores and subsets


@dataclass(frozen=True)
class Scored:
    key: str
    shard: str  # stem of the shard that holds it (00000)
    score: TextScore | None  # None: the text stage did not score this sample


def shard_folder(data: str) -> tuple[Any, str]:
    """(filesystem, path) of the shards: OUT/shards when --data is an output, else --data itself."""
    fs, root = fsspec.core.url_to_fs(data)
    root = root.rstrip("/")
    if fs.isdir(f"{root}/shards"):
        root = f"{root}/shards"
    if not fs.isdir(root) or not (fs.glob(f"{root}/*.tar") or fs.glob(f"{root}/*.parquet")):
        raise InputError(f"--data {data}: no shards (OUT/shards/*.tar + *.parquet) found")
    return fs, root


def _score(values: dict[str, Any]) -> TextScore | None:
    """A TextScore from the stored fields (`ms` is not stored: 0), or None when the sample was not scored."""
    if values.get("chars") is None:
        return None
    kinds: dict[str, Callable[[Any], Any]] = {"text": str, "area_fraction": float, "mean_confidence": float,
                                              "page": float, "extent": float}
    fields = {f: kinds.get(f, int)(values.get(f) or 0) for f in SCORE}
    return TextScore(ms=0.0, **fields)


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].split(".", 1)[0]


def read_scores(data: str) -> list[Scored]:
    """Every sample's key, shard and stored text score, in shard and row order."""
    import pyarrow.parquet as pq

    fs, root = shard_folder(data)
    parquets = sorted(fs.glob(f"{root}/*.parquet"))
    out: list[Scored] = []
    if not parquets:
        return list(_tar_scores(fs, sorted(fs.glob(f"{root}/*.tar"))))
    for path in parquets:
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            if "key" not in names:
                raise InputError(f"{path}: no `key` column: not a curate shard")
            flat = [f"text_{n}" for n in SCORE if f"text_{n}" in names]
            columns = ["key", *flat, *(["text"] if "text" in names and not flat else [])]
            for batch in pf.iter_batches(columns=columns, batch_size=4096):
                for row in batch.to_pylist():
                    stored = row.get("text") if not flat else {n[5:]: row[n] for n in flat}
                    out.append(Scored(row["key"], _stem(path), _score(stored) if isinstance(stored, dict) else None))
    return out


def _tar_scores(fs: Any, tars: list[str]) -> Iterator[Scored]:
    for path in tars:
        for key, members in tar_samples(fs.unstrip_protocol(path)):
            if "json" in members:
                meta = json.loads(members["json"])
                stored = meta.get("text")
                yield Scored(meta.get("key") or key, _stem(path), _score(stored) if isinstance(stored, dict) else None)


def keeps(name: str, score: TextScore | None, config: TextConfig) -> bool:
    """Whether filter `name` keeps a sample with this score (an unscored sample only passes "none")."""
    from curate import reasons as R
    from curate.filters.text import verdict

    return name == "none" or (score is not None and verdict(score, dataclasses.replace(config, filter=name)) == R.KEPT)


def subset_keys(scored: list[Scored], name: str, config: TextConfig) -> set[str]:
    return {s.key for s in scored if keeps(name, s.score, config)}


def write_subset(data: str, keys: set[str], dest: str) -> list[str]:
    """Copy the tar members of `keys` from every shard into DEST/STEM.tar (a shard left with nothing is not
    written); each file appears whole (temporary name, then rename). Returns the written paths."""
    fs, root = shard_folder(data)
    out_fs, out_root = fsspec.core.url_to_fs(dest)
    out_root = out_root.rstrip("/")
    out_fs.makedirs(out_root, exist_ok=True)
    written = []
    for path in sorted(fs.glob(f"{root}/*.tar")):
        kept = [(key, members) for key, members in tar_samples(fs.unstrip_protocol(path)) if key in keys]
        if kept:
            target = f"{out_root}/{path.rsplit('/', 1)[-1]}"
            out_fs.pipe_file(f"{target}.tmp", write_tar(kept))
            out_fs.mv(f"{target}.tmp", target)
            written.append(target)
    return written


# ---------------------------------------------------------------------------------------------------------
# the experiment


@dataclass(frozen=True)
class Plan:
    data: str
    out: str
    filters: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: str
    overrides: dict[str, Any]
    text: TextConfig
    per_class: int = 40
    force: bool = False
    progress: bool = True


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_subsets(plan: Plan, scored: list[Scored]) -> dict[str, dict[str, Any]]:
    """{filter: {"kept", "samples", "fraction", "data" (shard folder), "digest"}}; raises UserError when a
    filter keeps nothing."""
    fs, root = shard_folder(plan.data)
    total = len(scored)
    subsets = {}
    for name in plan.filters:
        keys = subset_keys(scored, name, plan.text)
        if not keys:
            raise UserError(f"filter {name} keeps none of the {total} images: nothing to train on (lower its "
                            f"thresholds with --config or flags)")
        digest = _digest(sorted(keys))
        if name == "none":
            folder = root if "file" in fs.protocol else fs.unstrip_protocol(root)
        else:
            folder = f"{plan.out.rstrip('/')}/subsets/{name}"
            marker = f"{folder}/_SUBSET.json"
            mfs, mpath = fsspec.core.url_to_fs(marker)
            current = json.loads(mfs.cat_file(mpath)) if mfs.isfile(mpath) else {}
            if current.get("digest") != digest:
                if mfs.isdir(mpath.rsplit("/", 1)[0]):
                    mfs.rm(mpath.rsplit("/", 1)[0], recursive=True)
                started = time.perf_counter()
                shards = write_subset(plan.data, keys, folder)
                mfs.pipe_file(mpath, json.dumps({"filter": name, "digest": digest, "samples": len(keys),
                                                 "shards": len(shards)}).encode())
                _log(f"subset {name}: {len(keys)} samples in {len(shards)} shards "
                     f"({time.perf_counter() - started:.1f} s)")
        subsets[name] = {"kept": len(keys), "samples": total, "fraction": len(keys) / total, "data": folder,
                         "digest": digest}
    return subsets


def train_config(plan: Plan, seed: int) -> Any:
    from curate.trainer.config import preset

    try:
        return preset(plan.preset, **{**plan.overrides, "seed": seed})
    except ConfigError as e:
        raise UserError(str(e)) from e


def _run(plan: Plan, name: str, subset: dict[str, Any], seed: int, random_scores: dict[str, Any],
         probes: dict[str, Any]) -> dict[str, Any]:
    """Train (unless an identical finished run is there) and probe one (filter, seed)."""
    from curate.trainer.loop import train

    config = train_config(plan, seed)
    folder = f"{plan.out.rstrip('/')}/runs/{name}-s{seed}"
    identity = _digest(config.to_dict(), subset["digest"], plan.per_class)
    fs, path = fsspec.core.url_to_fs(f"{folder}/result.json")
    if not plan.force and fs.isfile(path):
        done = json.loads(fs.cat_file(path))
        if done.get("identity") == identity:
            _log(f"{name} seed {seed}: finished before, reused")
            return dict(done)
    _log(f"{name} seed {seed}: training {config.steps} steps x {config.batch_size} on {subset['kept']} images")
    started = time.perf_counter()
    trained = train(config, subset["data"], folder, progress=plan.progress)
    seconds = time.perf_counter() - started
    scores = probe_checkpoint(trained.checkpoint, probes, seed)
    last = trained.history[-1] if trained.history else {}
    result = {"identity": identity, "filter": name, "seed": seed, "checkpoint": trained.checkpoint,
              "steps": len(trained.history), "seen": sum(int(h.get("images", 0)) for h in trained.history),
              "final_loss": last.get("loss"), "train_seconds": round(seconds, 1),
              "images_per_s": round(trained.images_per_s, 1), "corrupt": trained.corrupt, "probes": scores,
              "random": random_scores}
    fs.pipe_file(path, json.dumps(result, indent=2).encode())
    return result


def probe_checkpoint(checkpoint: str, probes: dict[str, Any], seed: int) -> dict[str, dict[str, float]]:
    """The teacher backbone's k-NN and linear accuracy on each probe (as `curate eval` measures them)."""
    from curate.trainer.config import TrainConfig
    from curate.trainer.loop import build_net, load_checkpoint, pick_device

    ckpt = load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(ckpt["config"])
    net = build_net(config)
    net.load_state_dict(ckpt["teacher"])
    backbone = net.backbone.to(pick_device(config))
    return _probe(backbone, config, probes, seed)


def _probe(backbone: Any, config: Any, probes: dict[str, Any], seed: int) -> dict[str, dict[str, float]]:
    from threadpoolctl import threadpool_limits

    from curate.trainer.eval import probe_scores

    # BLAS threads as many as torch's: on a busy 2-core machine the default pool made the digits linear probe
    # (scikit-learn's lbfgs) take 18 s instead of 0.09 s
    with threadpool_limits(config.threads):
        return {p: probe_scores(backbone, images, labels, config.image_size, seed)
                for p, (images, labels) in probes.items()}


def probe_random(plan: Plan, seed: int, probes: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The same probes on the initialisation every seed-`seed` run started from (State.new's seeding)."""
    import torch

    from curate.trainer.loop import build_net, pick_device

    config = train_config(plan, seed)
    identity = _digest(config.to_dict(), plan.per_class)
    fs, path = fsspec.core.url_to_fs(f"{plan.out.rstrip('/')}/runs/random-s{seed}.json")
    if not plan.force and fs.isfile(path):
        done = json.loads(fs.cat_file(path))
        if done.get("identity") == identity:
            return dict(done["probes"])
    torch.manual_seed(config.seed)
    backbone = build_net(config).backbone.to(pick_device(config))
    scores = _probe(backbone, config, probes, seed)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, json.dumps({"identity": identity, "seed": seed, "probes": scores}, indent=2).encode())
    return scores


def _stats(values: list[float]) -> dict[str, Any]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "per_seed": values}


def summarize(plan: Plan, subsets: dict[str, dict[str, Any]], runs: list[dict[str, Any]],
              random: dict[int, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Means, sample standard deviations over seeds, and deltas (mean - mean of "none") per filter, probe,
    metric; the random initialisation as its own row."""
    from curate.trainer.eval import PROBES

    probes = [p for p in ("textkind", "digits") if p in PROBES]
    seeds = list(plan.seeds)
    rows: dict[str, Any] = {"random": {"probes": {p: {m: _stats([random[s][p][m] for s in seeds]) for m in METRICS}
                                                  for p in probes}}}
    config = train_config(plan, seeds[0])
    seen = config.steps * config.batch_size
    for name in plan.filters:
        mine = sorted((r for r in runs if r["filter"] == name), key=lambda r: r["seed"])
        rows[name] = {**{k: subsets[name][k] for k in ("kept", "samples", "fraction")},
                      "epochs": seen / subsets[name]["kept"],
                      "runs": [{k: r[k] for k in ("seed", "steps", "seen", "final_loss", "train_seconds",
                                                  "images_per_s", "checkpoint")} for r in mine],
                      "probes": {p: {m: _stats([r["probes"][p][m] for r in mine]) for m in METRICS} for p in probes}}
    base = rows.get("none")
    for row in rows.values():
        for p in probes:
            for m in METRICS:
                cell = row["probes"][p][m]
                cell["delta"] = cell["mean"] - base["probes"][p][m]["mean"] if base else None
    return {"experiment": "text-filter", "data": plan.data, "images": next(iter(subsets.values()))["samples"],
            "filters": list(plan.filters), "seeds": seeds,
            "preset": plan.preset, "train": config.to_dict() | {"seed": None}, "seen_per_run": seen,
            "text_thresholds": {k: getattr(plan.text, k) for _, k, _ in _THRESHOLDS},
            "probes": probes, "probe_images": _probe_sizes(plan, seeds[0]),
            "paper": {k: {"kept_percent": v[0], "ocr_chart_vqa": v[1]} for k, v in PAPER.items()},
            "rows": rows}


def _probe_sizes(plan: Plan, seed: int) -> dict[str, int]:
    from curate.trainer.eval import PROBES, probe_data

    return {p: len(probe_data(p, seed, plan.per_class)[1]) for p in PROBES}


def _cell(stats: dict[str, Any], with_delta: bool) -> str:
    text = f"{100 * stats['mean']:5.1f} ± {100 * stats['std']:4.1f}"
    if with_delta and stats.get("delta") is not None:
        text += f" ({100 * stats['delta']:+5.1f})"
    return text


def table(summary: dict[str, Any]) -> str:
    """The paper-shaped table (accuracies in %, deltas to "none" in points) and the per-seed figures."""
    probes, rows = summary["probes"], summary["rows"]
    heads = [f"{p} {'k-NN' if m == 'knn' else m}" for p in probes for m in METRICS]
    width = 22
    lines = [f"text-filter experiment: {summary['images']} images in {summary['data']}; {summary['preset']} "
             f"({summary['train']['arch']}), {summary['train']['steps']} steps x {summary['train']['batch_size']} "
             f"= {summary['seen_per_run']} images seen per run; seeds {', '.join(map(str, summary['seeds']))}",
             "accuracy % on held-out probe images, mean ± std over seeds (delta to none in points)",
             f"{'filter':8s} {'kept':>15s} {'epochs':>7s}  " + "  ".join(f"{h:>{width}s}" for h in heads)]
    for name, row in rows.items():
        kept = f"{100 * row['fraction']:6.1f}% {row['kept']:>7d}" if "kept" in row else "-"
        epochs = f"{row['epochs']:7.1f}" if "epochs" in row else "-"
        cells = [_cell(row["probes"][p][m], name not in ("none", "random")) for p in probes for m in METRICS]
        lines.append(f"{name:8s} {kept:>15s} {epochs:>7s}  " + "  ".join(f"{c:>{width}s}" for c in cells))
    lines += ["", "per seed: " + ", ".join(heads)]
    for name, row in rows.items():
        for i, seed in enumerate(summary["seeds"]):
            values = " ".join(f"{100 * row['probes'][p][m]['per_seed'][i]:6.1f}" for p in probes for m in METRICS)
            lines.append(f"  {name:8s} seed {seed}: {values}")
    paper = ", ".join(f"{k} {v['kept_percent']}% -> {v['ocr_chart_vqa']}" for k, v in summary["paper"].items())
    lines.append(f"paper (ViT-2B, OCR & Chart VQA): {paper}")
    return "\n".join(lines)


def plot(summary: dict[str, Any], url: str) -> None:
    """One panel per probe and metric: mean ± std per filter, the random initialisation as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probes, rows = summary["probes"], summary["rows"]
    names = [n for n in rows if n != "random"]
    fig, axes = plt.subplots(1, len(probes) * len(METRICS), figsize=(3.2 * len(probes) * len(METRICS), 3.4),
                             squeeze=False)
    labels = [f"{n}\n{100 * rows[n]['fraction']:.1f}%" for n in names]
    for ax, (p, m) in zip(axes[0], [(p, m) for p in probes for m in METRICS], strict=True):
        means = [100 * rows[n]["probes"][p][m]["mean"] for n in names]
        stds = [100 * rows[n]["probes"][p][m]["std"] for n in names]
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=[_COLORS[n] for n in names])
        ax.axhline(100 * rows["random"]["probes"][p][m]["mean"], color="black", linestyle="--", linewidth=1,
                   label="random init")
        ax.set_xticks(range(len(names)), labels)
        ax.set_title(f"{p} {'k-NN' if m == 'knn' else m}")
        ax.set_ylabel("accuracy %")
        low = min([*means, 100 * rows["random"]["probes"][p][m]["mean"]])
        ax.set_ylim(max(0.0, low - 15), min(100.0, max(means) + max(stds, default=0) + 8))
    axes[0][0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"text filter: {summary['preset']}, {summary['seen_per_run']} images seen per run, "
                 f"{len(summary['seeds'])} seed(s)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with fsspec.open(url, "wb") as f:
        f.write(buf.getvalue())


def run_experiment(plan: Plan) -> dict[str, Any]:
    """Subsets, training, probes, summary; writes RUN/results.json, RUN/results.png and RUN/table.txt."""
    from curate.trainer.eval import PROBES, probe_data

    for seed in plan.seeds:
        train_config(plan, seed)  # a bad preset or override fails before any work
    scored = read_scores(plan.data)
    if not scored:
        raise UserError(f"--data {plan.data}: the shards hold no samples")
    if all(s.score is None for s in scored):
        raise UserError(f"--data {plan.data}: no text scores in the shards (the text stage did not run): the "
                        f"experiment needs a scored output (curate text, or curate run without --no-text)")
    unscored = sum(s.score is None for s in scored)
    if unscored:
        _log(f"{unscored} of {len(scored)} samples have no text score: only 'none' can keep them")
    subsets = prepare_subsets(plan, scored)
    for name, s in subsets.items():
        _log(f"{name:7s} keeps {s['kept']:>7d} of {s['samples']} images ({100 * s['fraction']:.1f}%)")
    runs, random = [], {}
    for seed in plan.seeds:
        probes = {p: probe_data(p, seed, plan.per_class) for p in PROBES}
        random[seed] = probe_random(plan, seed, probes)
        for name in plan.filters:
            runs.append(_run(plan, name, subsets[name], seed, random[seed], probes))
    summary = summarize(plan, subsets, runs, random)
    summary["unscored"] = unscored
    out = plan.out.rstrip("/")
    text = table(summary)
    with fsspec.open(f"{out}/results.json", "w") as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    with fsspec.open(f"{out}/table.txt", "w") as f:
        f.write(text + "\n")
    plot(summary, f"{out}/results.png")
    summary["table"] = text
    return summary


# ---------------------------------------------------------------------------------------------------------
# command line


def _filters(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in TEXT_FILTERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown filter(s) {', '.join(unknown) or '(none given)'} "
                                         f"(choose from {', '.join(TEXT_FILTERS)})")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a filter is named twice: {text}")
    return names


def _setting(text: str) -> tuple[str, Any]:
    """FIELD=VALUE with VALUE read as an int, else a float, else a string."""
    field, sep, raw = text.partition("=")
    if not sep or not field.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    value: Any = raw
    for kind in (int, float):
        try:
            value = kind(raw)
            break
        except ValueError:
            continue
    return field.strip(), value


_TRAIN_FLAGS = (("--steps", "steps", 1, "optimizer steps per run (seen images = steps x batch size, the same "
                 "for every filter)"),
                ("--batch-size", "batch_size", 1, "images per step"),
                ("--num-workers", "num_workers", 0, "DataLoader workers per run (0: in-process)"),
                ("--threads", "threads", 1, "torch CPU threads"))
_THRESHOLDS = (("--light-min-chars", "light_min_chars", int), ("--light-min-extent", "light_min_extent", float),
               ("--heavy-min-lines", "heavy_min_lines", int), ("--heavy-min-chars", "heavy_min_chars", int),
               ("--heavy-min-extent", "heavy_min_extent", float), ("--heavy-min-page", "heavy_min_page", float),
               ("--heavy-dense-chars", "heavy_dense_chars", int), ("--heavy-dense-lines", "heavy_dense_lines", int))


def _command(args: argparse.Namespace) -> int:
    from curate.config import load_config

    text = load_config(args.config, {f"text.{f}": getattr(args, f) for _, f, _ in _THRESHOLDS}).text
    overrides: dict[str, Any] = {f: getattr(args, f) for _, f, _, _ in _TRAIN_FLAGS if getattr(args, f) is not None}
    if args.device:
        overrides["device"] = args.device
    overrides.update(dict(args.train or ()))
    base = args.data.rstrip("/")
    out = args.output or f"{base[:-len('/shards')] if base.endswith('/shards') else base}/experiments/text-filter"
    plan = Plan(data=args.data, out=out, filters=args.filters, seeds=tuple(range(args.seed, args.seed + args.seeds)),
                preset=args.preset, overrides=overrides, text=text, per_class=args.per_class, force=args.force,
                progress=not args.no_progress)
    summary = run_experiment(plan)
    print(summary["table"])
    print(f"results: {out}/results.json, {out}/results.png, {out}/table.txt", file=sys.stderr)
    return 0


def register(add: Add) -> None:
    from curate.trainer.config import PRESETS

    p = add("experiment", _command,
            "Experiments on a curated output. text-filter: the seed paper's Table 2 in miniature: train the same "
            "model on all images, on those with readable text (light) and on text-dense ones (heavy) for the same "
            "number of seen images, probe each run (textkind, digits) over several seeds, and print a table of "
            "data kept, accuracies and deltas; writes results.json, results.png and table.txt.")
    p.add_argument("experiment", choices=("text-filter",), help="which experiment")
    p.add_argument("--data", required=True, help="a curated, text-scored, unfiltered output (OUT or OUT/shards)")
    p.add_argument("--filters", type=_filters, default="none,light,heavy",
                   help=f"comma-separated, from {', '.join(TEXT_FILTERS)} (none is the baseline of the deltas)")
    p.add_argument("--seeds", type=positive_int, default=3, help="training seeds per filter (probe seed = training seed)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--preset", choices=tuple(PRESETS), default="cpu-tiny", help="trainer preset")
    for flag, field, low, help_text in _TRAIN_FLAGS:
        p.add_argument(flag, dest=field, type=int_from(low), default=None, help=f"{help_text} [default: the preset's]")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="[default: the preset's]")
    p.add_argument("--train", type=_setting, action="append", default=None, metavar="FIELD=VALUE",
                   help="any other TrainConfig field (curate/trainer/config.py), e.g. --train arch=vit-nano "
                        "--train warmup_steps=0; repeatable")
    p.add_argument("--per-class", type=positive_int, default=40, help="textkind probe images per class")
    output_option(p, "experiment folder [default: DATA/experiments/text-filter]")
    p.add_argument("--config", default=None, help="YAML config file: its text section's thresholds decide light "
                                                  "and heavy (defaults < file < flags)")
    for flag, field, kind in _THRESHOLDS:
        p.add_argument(flag, dest=field, type=kind, default=None,
                       help=f"[config text.{field}, default {getattr(TextConfig(), field)}]")
    p.add_argument("--force", action="store_true", help="train every run again, even if finished before")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


