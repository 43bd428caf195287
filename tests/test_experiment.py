"""`curate experiment text-filter` end to end on shards in issue 7's format whose text scores come from the
real OCR engine on the sample crawl's pictures (documents, charts, tables, signs, screenshots, scenes,
photos): subsets, kept fractions, training, probes, table, JSON and PNG."""

from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.commands.cli import main
from curate.commands.experiment import read_scores, subset_keys
from curate.config import TextConfig
from curate.filters.text import is_heavy, is_light
from curate.records import TextScore
from curate.trainer.toyshards import encode, render, samples, write_shards

KINDS = ("document", "chart", "table", "sign", "screenshot", "natural", "photo")
SCORE_FIELDS = ("boxes", "area_fraction", "words", "chars", "mean_confidence", "lines", "text", "read", "page",
                "extent")


def _write_shard(folder: Path, stem: str, records: list[dict]) -> None:
    with tarfile.open(folder / f"{stem}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for r in records:
            for name, data in ((f"{r['key']}.{r['ext']}", r["data"]), (f"{r['key']}.json", json.dumps(r["meta"]).encode()),
                               (f"{r['key']}.txt", r["meta"]["alt"].encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    rows = []
    for r in records:
        meta = dict(r["meta"])
        text, dup = meta.pop("text"), meta.pop("dup")
        rows.append({**meta, **{f"text_{k}": v for k, v in text.items()}, "dup_cluster": dup["cluster"],
                     "dup_cluster_size": dup["cluster_size"]})
    pq.write_table(pa.Table.from_pylist(rows), folder / f"{stem}.parquet")


@pytest.fixture(scope="module")
def scored_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT/shards: 21 pictures (3 of each kind, 256 px, png/jpg) in 2 shards, scored by curate.ocr.TextEngine.
    The stored light/heavy booleans are deliberately wrong (all False): the experiment must recompute them."""
    from curate.ocr import OcrFailure, TextEngine

    engine = TextEngine(TextConfig(threads=1))  # one torch thread: two ran 5x slower on the busy 2-core machine
    records = []
    for i in range(3):
        for kind in KINDS:
            ext, fmt = ("png", "PNG") if kind in ("document", "chart", "table", "screenshot") else ("jpg", "JPEG")
            data = encode(render(kind, 1000 + i, 256), fmt)
            score = engine.score_bytes(data)
            assert not isinstance(score, OcrFailure), score
            key = f"{kind[:3]}{i:02d}" + "0" * 27
            meta = {"key": key, "url": f"https://example.com/{kind}/{i}.{ext}", "alt": f"a {kind}", "width": 256,
                    "height": 256, "format": fmt.lower(), "text": {f: getattr(score, f) for f in SCORE_FIELDS},
                    "light": False, "heavy": False, "dup": {"cluster": key, "cluster_size": 1}}
            records.append({"key": key, "ext": ext, "data": data, "meta": meta})
    shards = tmp_path_factory.mktemp("scored") / "shards"
    shards.mkdir()
    _write_shard(shards, "00000", records[:11])
    _write_shard(shards, "00001", records[11:])
    (shards / "_MANIFEST.json").write_text(json.dumps({"shards": [{"shard": "00000", "samples": 11},
                                                                   {"shard": "00001", "samples": 10}]}))
    return shards.parent


def _stored_scores(shards: Path) -> dict[str, TextScore]:
    rows = [r for p in sorted(shards.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["key"]: TextScore(ms=0.0, **{f: r[f"text_{f}"] for f in SCORE_FIELDS}) for r in rows}


@pytest.mark.slow  # the fixture runs OCR (~15 s)
def test_scores_are_read_from_parquet_and_tar_alike(scored_shards: Path, tmp_path: Path) -> None:
    from_parquet = read_scores(str(scored_shards))
    only_tars = tmp_path / "shards"
    only_tars.mkdir()
    for tar in (scored_shards / "shards").glob("*.tar"):
        (only_tars / tar.name).write_bytes(tar.read_bytes())
    from_tars = read_scores(str(only_tars))
    assert len(from_parquet) == 21
    assert sorted(from_parquet, key=str) == sorted(from_tars, key=str)
    config = TextConfig()
    heavy = subset_keys(from_parquet, "heavy", config)
    assert 0 < len(heavy) < len(subset_keys(from_parquet, "light", config)) < 21  # the sample's kinds separate
    assert subset_keys(from_parquet, "light", TextConfig(light_min_chars=10**6, light_min_extent=math.inf)) == set()


@pytest.mark.slow
def test_text_filter_experiment_end_to_end(scored_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "experiment"
    config = tmp_path / "thresholds.yaml"
    config.write_text("text:\n  heavy_min_lines: 3\n")
    argv = ["experiment", "text-filter", "--data", str(scored_shards), "--filters", "none,heavy", "--seeds", "1",
            "--seed", "3", "--steps", "12", "--batch-size", "8", "--num-workers", "0", "--per-class", "6",
            "--train", "warmup_steps=0", "--train", "momentum_teacher=0.9", "--train", "lr=0.001",
            "--config", str(config), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "table.txt").read_text().strip() == printed.strip()

    # kept fractions: what the shards' scores say under the configured thresholds (not the stored booleans)
    scores = _stored_scores(scored_shards / "shards")
    thresholds = TextConfig(heavy_min_lines=3)
    heavy = [k for k, s in scores.items() if is_heavy(s, thresholds)]
    assert result["text_thresholds"]["heavy_min_lines"] == 3
    rows = result["rows"]
    assert list(rows) == ["random", "none", "heavy"]
    assert (rows["none"]["kept"], rows["none"]["fraction"]) == (21, 1.0)
    assert rows["heavy"]["kept"] == len(heavy) and rows["heavy"]["fraction"] == pytest.approx(len(heavy) / 21)
    assert 0 < len(heavy) < 21
    assert any(is_light(s, thresholds) and k not in heavy for k, s in scores.items())
    subset = out / "subsets" / "heavy"
    with_members = set()
    for path in subset.glob("*.tar"):
        with tarfile.open(path) as tar:
            with_members |= {name.split(".")[0] for name in tar.getnames()}
    assert with_members == set(heavy)

    # the same seen images per run; smaller subsets repeat
    assert result["seen_per_run"] == 12 * 8
    for name in ("none", "heavy"):
        (run,) = rows[name]["runs"]
        assert run["seed"] == 3 and run["steps"] == 12 and run["seen"] == 96
        assert rows[name]["epochs"] == pytest.approx(96 / rows[name]["kept"])

    # every accuracy computed: in [0, 1], not all alike, deltas are differences of means
    cells = {}
    for name, row in rows.items():
        for probe in ("textkind", "digits"):
            for metric in ("knn", "linear"):
                cell = row["probes"][probe][metric]
                assert len(cell["per_seed"]) == 1 and cell["std"] == 0.0
                assert 0.0 <= cell["mean"] <= 1.0 and cell["mean"] == cell["per_seed"][0]
                assert cell["delta"] == pytest.approx(cell["mean"] - rows["none"]["probes"][probe][metric]["mean"])
                cells[name, probe, metric] = cell["mean"]
    assert len(set(cells.values())) > 4
    for probe in ("textkind", "digits"):
        assert len({cells[n, probe, "knn"] for n in rows}) > 1 or len({cells[n, probe, "linear"] for n in rows}) > 1
    assert result["probe_images"] == {"digits": 1797, "textkind": 36}

    # the printed table: a header, one line per row with kept % and every probe/metric, deltas on "heavy"
    lines = printed.splitlines()
    header = next(line for line in lines if line.startswith("filter"))
    assert all(h in header for h in ("kept", "epochs", "textkind k-NN", "textkind linear", "digits k-NN",
                                     "digits linear"))
    heavy_line = next(line for line in lines if line.startswith("heavy "))
    assert f"{100 * len(heavy) / 21:.1f}%" in heavy_line and heavy_line.count("(") == 4
    knn = rows["heavy"]["probes"]["textkind"]["knn"]
    assert f"({100 * knn['delta']:+5.1f})" in heavy_line

    # a second call reuses the finished runs and gives the same figures
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["rows"] == rows


def test_unscored_output_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_shards(str(tmp_path / "out" / "shards"), samples(4, size=32), per_shard=2)  # text: null
    assert main(["experiment", "text-filter", "--data", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no text scores" in err and "needs a scored output" in err


@pytest.mark.parametrize("argv, message", [
    (["--filters", "none,bright"], "unknown filter"),
    (["--seeds", "0"], "must be >= 1"),
    (["--light-min-chars", "0"], "light_min_chars"),
    (["--train", "arch=vit-huge"], "unknown arch"),
    (["--train", "colour=1"], "unknown training setting"),
])
def test_bad_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    try:  # flags are checked before the data is read
        code = main(["experiment", "text-filter", "--data", str(tmp_path), "--out", str(tmp_path), *argv])
    except SystemExit as e:  # argparse's usage errors
        code = int(e.code or 0)
    assert code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_filter_that_keeps_nothing_is_a_user_error(scored_shards: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    code = main(["experiment", "text-filter", "--data", str(scored_shards / "shards"), "--out", str(tmp_path),
                 "--filters", "none,heavy", "--heavy-min-chars", "1000000", "--heavy-min-extent", "inf",
                 "--heavy-dense-chars", "1000000", "--no-progress"])
    assert code == 2 and "heavy keeps none of the 21 images" in capsys.readouterr().err
