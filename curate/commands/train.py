"""`curate train` and `curate eval`: wiring from argparse to `curate.trainer.loop` and `curate.trainer.eval`."""

from __future__ import annotations

import argparse
import json
import sys

from curate.commands.args import Add, output_option
from curate.errors import ConfigError, UserError

# flag -> TrainConfig field, type, help
_OVERRIDES: tuple[tuple[str, str, type, str], ...] = (
    ("--steps", "steps", int, "optimizer steps in the whole run"),
    ("--batch-size", "batch_size", int, "images per step"),
    ("--seed", "seed", int, "seed of initialisation, data order and augmentation"),
    ("--lr", "lr", float, "peak learning rate (after warmup)"),
    ("--warmup-steps", "warmup_steps", int, "linear learning-rate warmup steps"),
    ("--arch", "arch", str, "vit-pico | vit-nano | vit-tiny | vit-small"),
    ("--patch-size", "patch_size", int, "ViT patch size in pixels"),
    ("--image-size", "image_size", int, "global crop (and evaluation) size"),
    ("--local-size", "local_size", int, "local crop size"),
    ("--local-crops", "local_crops", int, "local crops per image"),
    ("--out-dim", "out_dim", int, "DINO head prototypes"),
    ("--koleo", "koleo_weight", float, "KoLeo regulariser weight (0: off)"),
    ("--momentum-teacher", "momentum_teacher", float, "EMA momentum at the start (cosine to 1)"),
    ("--shuffle-buffer", "shuffle_buffer", int, "samples in the shuffle buffer of each loader worker"),
    ("--num-workers", "num_workers", int, "DataLoader workers (at most one per shard; 0: in-process)"),
    ("--checkpoint-every", "checkpoint_every", int, "write RUN/last.pt every K steps (and at the end)"),
    ("--device", "device", str, "auto | cpu | cuda"),
    ("--threads", "threads", int, "torch CPU threads"),
)


def _train(args: argparse.Namespace) -> int:
    from curate.trainer.config import preset
    from curate.trainer.loop import train

    overrides = {field: getattr(args, field) for _, field, _, _ in _OVERRIDES}
    if args.no_bf16:
        overrides["bf16"] = False
    if args.resume:
        given = [flag for flag, field, _, _ in _OVERRIDES if overrides[field] is not None]
        if given:
            raise UserError(f"--resume continues with the checkpoint's settings: drop {', '.join(given)}")
    try:
        config = preset(args.preset, **overrides)
    except ConfigError as e:
        raise UserError(str(e)) from e
    result = train(config, args.data, args.output, resume=args.resume, progress=not args.no_progress,
                   data_format=args.format)
    last = result.history[-1] if result.history else {}
    summary = {"checkpoint": result.checkpoint, "steps": len(result.history), "final_loss": last.get("loss"),
               "teacher_mean_entropy": last.get("teacher_mean_entropy"), "corrupt_samples": result.corrupt,
               "images_per_s": round(result.images_per_s, 1)}
    print(json.dumps(summary))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from curate.trainer.eval import PROBES, evaluate, table

    probes = PROBES if args.probe == "all" else (args.probe,)
    result = evaluate(args.checkpoint, probes, seed=args.seed, per_class=args.per_class, net=args.net)
    print(table(result), file=sys.stderr)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        import fsspec

        with fsspec.open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


def register(add: Add) -> None:
    from curate.trainer.config import PRESETS, PROBES

    p = add("train", _train, "Train a compact DINO ViT on curate's shards (WebDataset tars or Parquet with image "
                             "bytes, any fsspec URL). Writes RUN/last.pt every K steps and at the end; --resume "
                             "continues exactly where it stopped.")
    p.add_argument("--data", required=True, help="folder of shards (OUT/shards): *.tar, else *.parquet")
    output_option(p, "run folder (RUN/last.pt)", required=True)
    p.add_argument("--preset", choices=tuple(PRESETS), default="cpu-tiny",
                   help="cpu-tiny: small ViT on 32-px crops, fp32, minutes on a CPU; gpu-small: ViT-S/16 at "
                        "224 px, bf16 autocast")
    p.add_argument("--format", choices=("auto", "tar", "parquet"), default="auto", help="which shard files to read")
    p.add_argument("--resume", action="store_true", help="continue from RUN/last.pt with its settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-bf16", action="store_true", help="fp32 on CUDA too")
    for flag, field, kind, text in _OVERRIDES:
        p.add_argument(flag, dest=field, type=kind, default=None, help=f"{text} [default: the preset's]")

    p = add("eval", _eval, "Probe a checkpoint's frozen features (k-NN, cosine, k=20; logistic-regression linear "
                           "probe) next to the same architecture with random weights. Table on stderr, JSON on "
                           "stdout.")
    p.add_argument("--checkpoint", required=True, help="RUN/last.pt")
    p.add_argument("--probe", choices=(*PROBES, "all"), default="all", help="which probe")
    p.add_argument("--seed", type=int, default=0, help="probe seed: held-out images, split, random-init weights")
    p.add_argument("--per-class", type=int, default=40, help="textkind images per class")
    p.add_argument("--net", choices=("teacher", "student"), default="teacher", help="which network's backbone")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the JSON result here")
