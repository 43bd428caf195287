"""`curate run` end to end on the served sample crawl: SIGKILL inside each stage, rerun, same shards as a clean run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from curate.sample.plan import SNAPSHOTS

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]
# The settings of the session's in-process run (tests/conftest.py: DOWNLOAD_FLAGS, WRITE_FLAGS), whose output
# (the `baseline` fixture) a killed and resumed `curate run` must reproduce.
SETTINGS = {"download": {"allow_private_hosts": ["127.0.0.1"], "deadline": 3, "timeout": 2, "samples_per_shard": 60},
            "shards": {"samples_per_shard": 40}}


def _curate_run(served_crawl, out: Path, config: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "curate", "run", "--snapshot", ",".join(s[0] for s in SNAPSHOTS),
            "--cc-base-url", served_crawl.url("crawl"), "--output", str(out), "--config", str(config),
            "--ocr-cache", str(cache)]


def _files(folder: Path, out: Path) -> dict[str, bytes]:
    """The folder's files; manifests list their inputs by URL, so the OUT path itself is set aside."""
    return {p.name: p.read_bytes().replace(str(out).encode(), b"OUT") for p in sorted(folder.iterdir()) if p.is_file()}


# Each stage and the folder under OUT it writes, in run order.
STAGES = (("extract", "refs"), ("download", "fetched"), ("decode", "images"), ("dedup", "dedup"), ("text", "text"),
          ("write", "shards"))


def _kill_inside(command: list[str], out: Path, folder: str) -> None:
    """Start the run and SIGKILL it (with its children) as soon as OUT/<folder> holds a file of the stage's output
    (its manifest comes last), polling every 5 ms."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if any(p.name != "_MANIFEST.json" for p in (out / folder).iterdir()):
                break
        except FileNotFoundError:  # not made yet, or being cleared
            pass
        time.sleep(0.005)
    assert proc.poll() is None, f"the run ended before it wrote into {folder}/"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_run_killed_in_every_stage_in_turn_resumes_to_the_same_shards(served_crawl, baseline: Path,
                                                                        tmp_path: Path) -> None:
    """SIGKILL inside extract, then (rerun) inside download, inside decode, ... inside write; the last rerun ends
    with the same shards and stats as an uninterrupted run (the session's, in process: `baseline`), and one more
    run reruns nothing."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(SETTINGS))
    cache = tmp_path / "ocr-cache"  # scores of these pictures, from the session's text stage: no OCR needed twice
    shutil.copytree(baseline / "cache" / "ocr", cache)
    clean = baseline
    assert json.loads((clean / "shards" / "_MANIFEST.json").read_text())["samples"] > 100

    killed = tmp_path / "killed"
    command = _curate_run(served_crawl, killed, config_file, cache)
    landed = []
    for i, (stage, folder) in enumerate(STAGES):
        _kill_inside(command, killed, folder)
        # where it landed: every stage before is complete, none after has begun
        done = [s for s, f in STAGES if (killed / f / "_MANIFEST.json").exists()]
        assert done[:i] == [s for s, _ in STAGES[:i]] and len(done) <= i + 1, (stage, done)
        assert not any((killed / f).exists() for _, f in STAGES[i + 2:]), (stage, done)
        landed.append(stage if len(done) == i else f"after {stage}")
    # a kill lands between the stage's first file and its manifest, unless the whole stage beat the 5 ms poll
    assert sum(not where.startswith("after") for where in landed) >= 4, landed

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "write: done" in resumed.stdout
    assert _files(killed / "shards", killed) == _files(clean / "shards", clean)
    stats = json.loads((killed / "stats.json").read_text())
    assert stats == json.loads((clean / "stats.json").read_text())
    for stage, part in stats.items():  # conservation, stage by stage
        for name, funnel in part.items():
            assert funnel["input"] == funnel["kept"] + sum(funnel["rejected"].values()) + funnel["failed"], (stage, name)
    assert (killed / "report.html").stat().st_size > 10_000

    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("up to date, skipped") == 6  # idempotent: nothing reruns
    assert _files(killed / "shards", killed) == _files(clean / "shards", clean)


def test_run_on_real_web_archives(tmp_path: Path) -> None:
    """Real WARCs from public projects (../shared/real-data): their remote images are unreachable here (robots.txt
    cannot be fetched: disallowed), their captured image payloads go all the way into the shards."""
    import webdataset as wds

    real = sorted((Path(__file__).resolve().parents[2] / "shared" / "real-data" / "warc").glob("*.warc*"))
    assert len(real) == 3
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"download": {"deadline": 3, "timeout": 2}}))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "curate", "run", "--input", *map(str, real), "--output", str(out),
                             "--config", str(config)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats) == {"extract", "download", "decode", "dedup", "text", "write"}
    for stage, part in stats.items():
        for name, funnel in part.items():
            assert funnel["input"] == funnel["kept"] + sum(funnel["rejected"].values()) + funnel["failed"], (stage, name)
    assert stats["extract"]["files"]["input"] == stats["extract"]["files"]["kept"] == 3
    inline = stats["download"]["references"]["kept"]
    assert inline >= 5 and stats["decode"]["images"]["input"] == inline  # captured payloads need no network
    samples = list(wds.WebDataset([str(p) for p in sorted((out / "shards").glob("*.tar"))], shardshuffle=False))
    assert len(samples) == stats["write"]["images"]["kept"] >= 1
    for sample in samples:
        meta = json.loads(sample["json"])
        assert meta["source"] == "inline" and meta["text"] is not None and meta["source_file"].endswith(
            tuple(p.name for p in real))


def _warc(path: Path, body: bytes) -> Path:
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record("http://example.com/", "response", payload=io.BytesIO(body),
                                                      http_headers=headers))
    return path


def test_a_crawl_without_images_is_an_honest_empty_run(tmp_path: Path, capsys) -> None:
    """Pages whose only images are data: URIs: every stage runs on nothing, exit 0, a funnel that says so,
    a report, and a rerun that skips every stage (before: exit 2, 'no refs: run curate extract first')."""
    warc = _warc(tmp_path / "noimg.warc.gz", b"<html><body><p>Text only.</p><img src='data:image/png;base64,AA'>"
                                             b"</body></html>")
    out = tmp_path / "out"
    from curate.commands.cli import main

    assert main(["run", "--input", str(warc), "--output", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["extract"]["references"] == {"input": 1, "kept": 0, "rejected": {"data_uri": 1, "duplicate_url": 0},
                                             "failed": 0}
    for stage, part in (("download", "references"), ("decode", "images"), ("dedup", "images"), ("text", "images"),
                        ("write", "images")):
        assert stats[stage][part] == {"input": 0, "kept": 0, "rejected": {}, "failed": 0}, stage
    assert json.loads((out / "shards" / "_MANIFEST.json").read_text())["samples"] == 0
    assert (out / "report.html").stat().st_size > 1000
    capsys.readouterr()
    assert main(["run", "--input", str(warc), "--output", str(out)]) == 0
    assert capsys.readouterr().out.count("up to date, skipped") == 6


def _picture(seed: int, size: tuple[int, int] = (160, 120), quality: int = 90) -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (160, 120), (seed * 53 % 256, 90, 200 - seed * 31 % 200))
    draw = ImageDraw.Draw(image)
    for i in range(6):  # shapes per seed: distinct pictures are far apart in pHash
        x, y = (seed * 37 + i * 53) % 130, (seed * 17 + i * 29) % 90
        draw.ellipse((x, y, x + 30, y + 30), fill=((i * 80 + seed * 20) % 256, (seed * 90) % 256, i * 40))
    buf = io.BytesIO()
    image.resize(size).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_decontamination_survives_a_rerun(tmp_path: Path, capsys) -> None:
    """`run --exclude-near` drops the evaluation picture from the shards; a later run without it is refused in
    one line before any work (before: dedup reran without the exclusion and the picture was back); the same
    flag again reruns nothing; a config file's dedup.exclude_near is the same setting."""
    import io

    import webdataset as wds
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    warc = tmp_path / "pictures.warc.gz"
    with open(warc, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for i in range(5):
            headers = StatusAndHeaders("200 OK", [("Content-Type", "image/jpeg")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(f"http://example.com/{i}.jpg", "response",
                                                          payload=io.BytesIO(_picture(i)), http_headers=headers))
    evalset = tmp_path / "eval"
    evalset.mkdir()
    (evalset / "copy.jpg").write_bytes(_picture(3, size=(120, 90), quality=70))  # picture 3, rescaled, recompressed
    from curate.commands.cli import main

    out = tmp_path / "out"
    command = ["run", "--input", str(warc), "--output", str(out), "--no-text"]

    def urls() -> list[str]:
        tars = [str(p) for p in sorted((out / "shards").glob("*.tar"))]
        return sorted(json.loads(s["json"])["url"] for s in wds.WebDataset(tars, shardshuffle=False))

    assert main([*command, "--exclude-near", str(evalset)]) == 0
    assert urls() == [f"http://example.com/{i}.jpg" for i in (0, 1, 2, 4)]
    assert json.loads((out / "stats.json").read_text())["dedup"]["images"]["rejected"] == {"eval_overlap": 1}

    capsys.readouterr()
    assert main(command) == 2
    forgot = capsys.readouterr()
    assert forgot.err.count("\n") == 1 and "was decontaminated (1 pictures, 1 hashes" in forgot.err, forgot.err
    assert "--exclude-near" in forgot.err and "extract" not in forgot.out  # refused before any stage ran
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"dedup": {"exclude_near": [str(evalset)]}}))
    assert main([*command, "--config", str(config)]) == 0
    assert capsys.readouterr().out.count("up to date, skipped") == 5
    assert urls() == [f"http://example.com/{i}.jpg" for i in (0, 1, 2, 4)]
    from curate.config import load_config
    from curate.pipelines import dedup

    dedup.check_settings(str(out), load_config(), force=True)  # --force drops it on purpose: no refusal


def test_filter_on_a_folder_of_broken_files_keeps_nothing_and_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    (broken / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut after the marker")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "curate", "filter", "--input", str(broken), "--output", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["decode"]["images"] == {"input": 2, "kept": 0, "rejected": {"undecodable": 2}, "failed": 0}
    assert stats["dedup"]["images"]["input"] == stats["text"]["images"]["input"] == 0


def _shards_train(out: Path, tmp_path: Path) -> list[dict]:
    """The samples of OUT/shards (webdataset), after checking that `curate train`'s loop reads them."""
    import webdataset as wds

    from curate.trainer.loop import train
    from tests.trainer.conftest import small

    tars = [str(p) for p in sorted((out / "shards").glob("*.tar"))]
    samples = [json.loads(s["json"]) for s in wds.WebDataset(tars, shardshuffle=False)]
    result = train(small(steps=2, batch_size=2), str(out / "shards"), str(tmp_path / f"train-{out.name}"),
                   progress=False)
    assert len(result.history) == 2 and result.corrupt == {}
    return samples


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # webdataset's unclosed tars
def test_run_takes_any_source_and_each_ends_in_shards_the_trainer_reads(served_crawl, sample_crawl: Path,
                                                                         downloaded, tmp_path: Path,
                                                                         capsys) -> None:
    """`run --input`: a folder of images, a webdataset tar, an img2dataset output folder, a URL list served on
    127.0.0.1; pictures enter at decode, the list at extract (then download)."""
    import pyarrow.parquet as pq
    import webdataset as wds

    from curate.commands.cli import main

    def run(*inputs: str, name: str, extra: tuple[str, ...] = ()) -> tuple[Path, dict, str]:
        out = tmp_path / name
        capsys.readouterr()
        assert main(["run", "--input", *inputs, "--output", str(out), "--no-text", *extra]) == 0
        return out, json.loads((out / "stats.json").read_text()), capsys.readouterr().out

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        (photos / f"p{i}.jpg").write_bytes(_picture(10 + i))
    (photos / "notes.md").write_text("not a picture")
    (photos / "p0.txt").write_text("a caption beside its picture, not a URL list")
    out, stats, stdout = run(str(photos), name="folder")
    assert set(stats) == {"decode", "dedup", "write"}  # nothing to fetch: extract and download do not run
    assert "time: decode " in stdout and "; total " in stdout  # per stage and in all, then the dataset
    assert "dataset: 4 images in 1 shards, " in stdout and f"in {out}/shards" in stdout
    assert stats["decode"]["sources"]["rejected"] == {"unsupported_format": 2}
    assert "skipped by name: .md 1, caption sidecar .txt 1" in stdout
    samples = _shards_train(out, tmp_path)
    assert sorted(s["url"] for s in samples) == sorted(p.as_uri() for p in photos.glob("*.jpg"))
    assert all(s["source"] == "file" and s["source_file"] == s["url"] for s in samples)

    tar = tmp_path / "web.tar"
    with wds.TarWriter(str(tar)) as writer:
        for i in range(3):
            writer.write({"__key__": f"s{i}", "jpg": _picture(20 + i), "txt": f"caption {i}",
                          "json": json.dumps({"url": f"http://example.com/{i}.jpg"}).encode()})
    out, stats, _ = run(str(tar), name="webdataset")
    samples = _shards_train(out, tmp_path)
    assert sorted((s["url"], s["alt"]) for s in samples) == [(f"http://example.com/{i}.jpg", f"caption {i}")
                                                               for i in range(3)]
    assert sorted((s["source"], s["source_file"]) for s in samples) == [("tar", f"{tar.as_uri()}#s{i}") for i in range(3)]

    fetched, _ = downloaded
    img2dataset = tmp_path / "img2dataset-output"  # img2dataset wrote these shards (tar, parquet, _stats.json)
    img2dataset.mkdir()
    for name in ("00000.tar", "00000.parquet", "00000_stats.json"):
        shutil.copy(fetched / "fetched" / name, img2dataset / name)
    out, stats, stdout = run(str(img2dataset), name="img2dataset")
    kept = sum(1 for p in img2dataset.glob("*.parquet") for r in pq.read_table(p).to_pylist() if r["status"] == "success")
    assert stats["decode"]["images"]["input"] == kept and "img2dataset metadata" in stdout  # its parquet: not refetched
    assert len(_shards_train(out, tmp_path)) == stats["write"]["images"]["kept"] > 20

    truth = [r for r in pq.read_table(sample_crawl / "truth.parquet").to_pylist()
             if r["fate"] == "kept" and r["source"] == "http"][:5]
    listing = tmp_path / "urls.csv"
    listing.write_text("url,caption\n" + "".join(f"{r['url']},picture {i}\n" for i, r in enumerate(truth))
                       + "not/absolute.jpg,\n")
    out, stats, _ = run(str(listing), name="urls", extra=("--allow-private-hosts",))
    assert stats["extract"]["references"]["rejected"]["bad_scheme"] == 1
    assert stats["download"]["references"] == {"input": 5, "kept": 5, "rejected": {}, "failed": 0}
    samples = _shards_train(out, tmp_path)
    assert sorted((s["url"], s["alt"], s["source"]) for s in samples) == sorted(
        (r["url"], f"picture {i}", "list") for i, r in enumerate(truth))


@pytest.mark.slow
def test_a_decontaminating_dedup_killed_midway_still_refuses_a_run_without_the_set(tmp_path: Path) -> None:
    """The record of decontamination is written before dedup starts, outside what any stage clears: SIGKILL a
    forced, decontaminating dedup after it cleared OUT/dedup, and a rerun without the evaluation set is refused
    in one line (it used to find no manifest, and put the evaluation picture back)."""
    folder, evalset = tmp_path / "in", tmp_path / "eval"
    folder.mkdir()
    evalset.mkdir()
    for i in range(5):
        (folder / f"{i}.jpg").write_bytes(_picture(i))
    (evalset / "copy.jpg").write_bytes(_picture(3, size=(120, 90), quality=70))
    out = tmp_path / "out"
    base = [sys.executable, "-m", "curate", "filter", "--input", str(folder), "--output", str(out), "--no-text"]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "CURATE_PROGRESS": "off"}
    first = subprocess.run([*base, "--exclude-near", str(evalset)], capture_output=True, text=True, env=env,
                           timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "rejected: eval_overlap 1" in first.stdout, first.stdout

    proc = subprocess.Popen([*base, "--exclude-near", str(evalset), "--force"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:  # dedup has begun: its old manifest is cleared
        if (out / "images" / "_MANIFEST.json").exists() and not (out / "dedup" / "_MANIFEST.json").exists():
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the forced run ended before dedup cleared its output"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "dedup" / "_MANIFEST.json").exists() and (out / "decontamination.json").exists()

    forgot = subprocess.run(base, capture_output=True, text=True, env=env, timeout=300)
    assert forgot.returncode == 2 and forgot.stderr.count("\n") == 1, forgot.stderr[-2000:]
    assert "was decontaminated (1 pictures, 1 hashes" in forgot.stderr and "--exclude-near" in forgot.stderr
