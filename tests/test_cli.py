"""The command line as a user meets it: help texts, one-line errors with exit status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.commands.cli import main


def _curate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "curate", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_subcommands() -> None:
    result = _curate("--help")
    assert result.returncode == 0
    for command in ("sample-crawl", "serve", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("sample-crawl", ["--out", "--seed", "--scale", "--port", "(default: 0)", "(default: 1)", "(default: 18700)"]),
        ("serve", ["--port", "--access-log"]),
        ("demo", ["--crawl", "--out", "(default: build/sample)", "(default: build/demo)"]),
        ("extract", ["--snapshot", "--input", "--output", "--source", "--max-files", "--cc-base-url", "--shards",
                     "--config", "--force", "(default: https://data.commoncrawl.org/)"]),
        ("filter", ["--input", "--output", "--min-side", "--max-aspect-ratio", "--max-pixels", "--formats",
                    "--hamming-radius", "--no-near", "--config", "--force", "[default 64]", "[default 6]"]),
        ("ocr", ["--text-filter", "--ocr-mode", "--detect-side", "--read", "--canvas", "--config", "images"]),
        ("text", ["--output", "--text-filter", "--ocr-mode", "--detect-side", "--read", "--ocr-cache", "--force"]),
        ("download", ["--output", "--timeout", "--deadline", "--retries", "--fetch-threads", "--max-bytes",
                      "--user-agent-token", "--disallowed-header-directives", "--allow-private-hosts", "--resize-mode",
                      "--resize-size", "--urls-per-shard", "--retry-failed", "[default 30]",
                      "[default noai,noimageai,noindex,noimageindex]", "[config download.threads]"]),
        ("run", ["--input", "--output", "--timeout", "--deadline", "--fetch-threads", "--urls-per-shard",
                 "--allow-private-hosts", "--min-side", "--max-pixels", "--formats", "--hamming-radius", "--no-near",
                 "--exclude-near", "--text-filter", "--samples-per-shard", "--set", "--config", "--force"]),
    ],
)
def test_subcommand_help_shows_every_flag_and_default(command: str, flags: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag in flags:
        assert flag in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sample-crawl", "--out", "x", "--scale", "0"], "--scale: must be >= 1"),
        (["sample-crawl", "--out", "x", "--scale", "many"], "not an integer"),
        (["sample-crawl", "--out", "x", "--port", "80"], "--port: must be between 1024"),
        (["sample-crawl"], "one of the arguments -o/--output is required"),
        (["serve", "/no/such/dir"], "not found"),
        (["no-such-command"], "invalid choice"),
        (["sample-crawl", "--out", "x", "--unknown"], "unrecognized arguments: --unknown"),
        (["extract", "--output", "x"], "one of the arguments --snapshot --input is required"),
        (["extract", "--snapshot", "CC-MAIN-21-4", "--output", "x"], "CC-MAIN-21-4"),
        (["extract", "--snapshot", "CC-MAIN-2021-04", "--cc-base-url", "/no/where", "--output", "x"],
         "no listing for CC-MAIN-2021-04"),
        (["extract", "--input", "/no/such/*.warc.gz", "--output", "x"], "/no/such/*.warc.gz"),
        (["extract", "--input", "/no/such.warc.gz", "--output", "x", "--config", "/no/config.yaml"],
         "cannot read config file"),
        (["download", "--output", "/no/such/out"], "run `curate extract --output /no/such/out` first"),
        (["filter", "--input", "/no/such/folder", "--output", "x"], "no such file or folder: /no/such/folder"),
        (["ocr", "/no/such.png"], "no such image: /no/such.png"),
        (["ocr", "x.png", "--text-filter", "medium"], "invalid choice: 'medium'"),
        (["filter", "--output", "x", "--input", "/tmp", "--formats", "jpeg,svg"], "image.formats must be one of"),
        (["download", "--output", "/no/out", "--allow-private-hosts", "localhost"], "not an IP address"),
        (["download", "--output", "/no/out", "--deadline", "1", "--timeout", "5"], "deadline must be >="),
    ],
)
def test_user_mistakes_print_one_line_and_exit_2(argv: list[str], message: str) -> None:
    result = _curate(*argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_out_that_is_a_file_is_a_user_error(tmp_path: Path, capsys) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["sample-crawl", "--out", str(target)]) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run", "--input", "/no/such.warc.gz"], ["filter", "--input", "/tmp"],
                                     ["download"], ["text"], ["extract", "--input", "/no/such.warc.gz"]])
def test_an_output_that_is_a_file_is_one_line_before_any_work(command: list[str], tmp_path: Path, capsys) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    for output in (target, target / "below"):
        assert main([*command, "--output", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not a directory" in err and "Traceback" not in err, err


def test_report_on_a_file_and_a_damaged_manifest_are_one_line(tmp_path: Path, capsys) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file" in err
    out = tmp_path / "out"
    (out / "refs").mkdir(parents=True)
    (out / "refs" / "_MANIFEST.json").write_text('{"stage": "extract", "tab')  # killed mid-write by hand
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "_MANIFEST.json is damaged" in err and "Traceback" not in err, err


def test_serve_refuses_a_port_the_crawl_was_not_built_for(sample_crawl: Path, crawl_port: int) -> None:
    result = _curate("serve", str(sample_crawl), "--port", str(crawl_port + 100))
    assert result.returncode == 2
    assert f"built for base port {crawl_port}" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_sample_crawl_command_prints_its_summary(tmp_path: Path, crawl_port: int) -> None:
    result = _curate("sample-crawl", "--out", str(tmp_path / "c"), "--port", str(crawl_port))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["port"] == crawl_port and summary["image_urls"] > 200
    assert (tmp_path / "c" / "truth.parquet").is_file()
    assert summary == json.loads((tmp_path / "c" / "sample.json").read_text())


def test_serve_command_serves_until_terminated(tmp_path: Path) -> None:
    """A one-host crawl of its own: the session's sample crawl is already being served on its ports."""
    import signal
    import urllib.request

    from curate.sample.serve import free_port_block

    port = free_port_block(1, start=20000, end=32000)
    (tmp_path / "hosts.json").write_text(json.dumps({"bind": "127.0.0.1", "base_port": port,
                                                     "hosts": {"crawl": {"port": port, "root": "."}}, "routes": {}}))
    (tmp_path / "hello.txt").write_text("hello")
    proc = subprocess.Popen([sys.executable, "-m", "curate", "serve", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "crawl  http://127.0.0.1:P/  -> DIR"
        assert line.split()[:2] == ["crawl", f"http://127.0.0.1:{port}/"], line
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt", timeout=10).read() == b"hello"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(scored: Path, tmp_path: Path) -> None:
    # The session's OCR scores of these same pictures, in the demo output's default cache: OCR is tested
    # elsewhere, and scoring them again would double this test's time.
    shutil.copytree(scored / "cache", tmp_path / "demo" / "cache")
    result = _curate("demo", "--crawl", str(tmp_path / "sample"), "--out", str(tmp_path / "demo"), timeout=900)
    assert result.returncode == 0, result.stderr
    truth = pq.read_table(tmp_path / "sample" / "truth.parquet").to_pylist()
    stats = json.loads((tmp_path / "demo" / "stats.json").read_text())
    after = {"extract": ("extract",), "download": ("extract", "download"), "decode": ("extract", "download", "decode")}
    for stage, part in (("extract", "references"), ("download", "references"), ("decode", "images")):
        expected = sum(1 for r in truth if r["in_warc"] and r["stage"] not in after[stage])
        assert f"kept (truth: {expected})" in result.stdout and stats[stage][part]["kept"] == expected
    unique = [r for r in truth if r["in_warc"] and r["fate"] == "kept"]
    assert f"kept (truth: {len(unique)})" in result.stdout and stats["dedup"]["images"]["kept"] == len(unique)
    with_text = sum(r["has_text"] for r in unique)
    assert f"(truth: {with_text} with text" in result.stdout
    assert abs(stats["text"]["images"]["kept"] - with_text) <= 0.05 * with_text  # the light filter is on
    assert stats["write"]["images"]["kept"] == stats["text"]["images"]["kept"]
    assert (tmp_path / "demo" / "shards" / "00000.tar").is_file() and (tmp_path / "demo" / "report.html").is_file()
    assert "report: " in result.stdout
    assert "  curate run --snapshot " in result.stdout  # the equivalent command line (checked below)


def test_demo_prints_a_run_command_with_the_demos_settings(tmp_path: Path) -> None:
    import shlex

    from curate.commands.cli import _build_parser, run_config
    from curate.commands.demo import DEMO_FLAGS, run_command
    from curate.config import load_config

    command = run_command("http://127.0.0.1:18700/", tmp_path / "demo", "heavy")
    args = _build_parser().parse_args(shlex.split(command)[1:])
    assert args.command == "run" and args.output == str(tmp_path / "demo") and args.force
    assert run_config(args).to_dict() == load_config(None, {**DEMO_FLAGS, "text.filter": "heavy"}).to_dict()


def test_extract_command_on_input_files(sample_crawl: Path, tmp_path: Path) -> None:
    pattern = str(sample_crawl / "crawl-data" / "CC-MAIN-2021-04" / "segments" / "*" / "warc" / "*.warc.gz")
    result = _curate("extract", "--input", pattern, "--output", str(tmp_path / "out"), "--shards", "2",
                     "--direct_num_workers=1")
    assert result.returncode == 0, result.stderr
    assert "extract: done" in result.stdout and "refs" in result.stdout
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())["extract"]
    assert stats["files"]["input"] == 3 and stats["files"]["failed"] == 0 and stats["references"]["kept"] > 100
    assert len(list((tmp_path / "out" / "refs").glob("*.parquet"))) <= 2
    again = _curate("extract", "--input", pattern, "--output", str(tmp_path / "out"), "--shards", "2")
    assert "up to date, skipped" in again.stdout


@pytest.mark.slow
def test_ocr_command_prints_one_json_line_per_image(tmp_path: Path) -> None:
    from curate.sample import images as im

    doc, scene = tmp_path / "doc.png", tmp_path / "scene.jpg"
    document = im.document(3)
    document.image.save(doc)
    im.natural(2).image.save(scene)
    result = _curate("ocr", str(doc), str(scene), "--text-filter", "light", timeout=300)
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    fields = {"path", "light", "heavy", "verdict", "boxes", "area_fraction", "words", "chars", "mean_confidence",
              "lines", "text", "ms", "read", "page", "extent"}
    assert set(first) == fields and set(second) == fields
    assert first["path"] == str(doc) and first["light"] and first["heavy"] and first["verdict"] == "kept"
    assert first["boxes"] >= first["lines"] >= 4 and first["chars"] >= 30 and first["page"] > 0.55
    assert first["extent"] >= 10 and second["extent"] < 10
    assert first["read"] == min(8, first["boxes"]) and first["text"] and first["ms"] > 0
    assert second["path"] == str(scene) and not second["light"] and second["verdict"] == "no_text"
    assert second["chars"] == second["words"] == 0 and second["text"] == ""  # a texture may have boxes, unreadable
    assert 0 < first["area_fraction"] < 1 and second["ms"] > 0
    full = json.loads(_curate("ocr", str(doc), "--ocr-mode", "full", timeout=300).stdout)
    assert full["read"] == full["boxes"] >= 4 and full["light"] and full["heavy"]
    assert sum(w.lower() in full["text"].lower() for w in document.words) >= 0.6 * len(document.words)


def test_every_command_that_writes_names_its_output_o_or_output() -> None:
    """One vocabulary: `-o/--output` wherever a command writes a folder; `--out` (the old spelling of some
    commands) still parses, unlisted, for a release."""
    import argparse

    from curate.commands.cli import _build_parser

    parser = _build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    writers = {name for name, sub in commands.items() if any(a.dest == "output" for a in sub._actions)}
    assert {"sample-crawl", "extract", "download", "filter", "text", "run", "demo", "train"} <= writers
    for name in writers:
        sub = commands[name]
        shown = [a for a in sub._actions if a.dest == "output" and a.help != argparse.SUPPRESS]
        assert [a.option_strings for a in shown] == [["-o", "--output"]], name
        assert "--out " not in sub.format_help(), name
    assert parser.parse_args(["train", "--data", "d", "--out", "r"]).output == "r"  # the old spelling
    assert parser.parse_args(["train", "--data", "d", "-o", "r"]).output == "r"
    assert parser.parse_args(["demo"]).output == "build/demo"


def test_one_meaning_per_flag_and_old_spellings_still_parse() -> None:
    """A stage's flag means the same in its own command and in `run`; download's old names (--threads,
    --image-size, --samples-per-shard: URLs per fetch shard, which `run` spells --urls-per-shard) still parse
    there, unlisted."""
    from curate.commands.cli import _build_parser, _settings

    parser = _build_parser()
    alone = _settings(parser.parse_args(["download", "-o", "o", "--fetch-threads", "4", "--urls-per-shard", "50",
                                         "--resize-size", "128"]))
    old = _settings(parser.parse_args(["download", "-o", "o", "--threads", "4", "--samples-per-shard", "50",
                                       "--image-size", "128"]))
    assert alone == old and {k: v for k, v in alone.items() if v is not None} == {
        "download.threads": 4, "download.samples_per_shard": 50, "download.image_size": 128}
    in_run = parser.parse_args(["run", "--input", "x.warc.gz", "-o", "o", "--fetch-threads", "4", "--urls-per-shard",
                                "50", "--samples-per-shard", "7", "--min-side", "32", "--no-near"])
    given = {k: v for k, v in _settings(in_run).items() if v is not None}
    assert given == {"download.threads": 4, "download.samples_per_shard": 50, "image.min_side": 32,
                     "dedup.near": False}
    assert in_run.samples_per_shard == 7  # run's --samples-per-shard: samples per final shard, as ever
    filtered = parser.parse_args(["filter", "-o", "o", "--min-side", "32", "--hamming-radius", "4"])
    assert {k: v for k, v in _settings(filtered).items() if v is not None} == {"image.min_side": 32,
                                                                                "dedup.hamming_radius": 4}


def test_set_reaches_any_setting_and_bad_ones_are_one_line(tmp_path: Path, capsys) -> None:
    """`--set SECTION.KEY=VALUE` on every stage command: above the config file, below the command's own flags."""
    import yaml
    from PIL import Image

    from curate.commands.cli import _build_parser, _config, _settings, main

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, side in enumerate((90, 140, 300)):
        Image.new("RGB", (side, side), (40 * i, 90, 200)).save(photos / f"p{i}.png")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"image": {"min_side": 120, "max_aspect_ratio": 3.0}}))
    out = tmp_path / "out"
    assert main(["filter", "--input", str(photos), "-o", str(out), "--no-text", "--config", str(config),
                 "--set", "image.min_side=200", "--set", "dedup.hamming_radius=4"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["decode"]["images"]["rejected"] == {"too_small": 2}  # --set beat the file's 120
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["image"]["min_side"] == 200 and written["image"]["max_aspect_ratio"] == 3.0
    assert written["dedup"]["hamming_radius"] == 4
    parsed = _build_parser().parse_args(["filter", "-o", "o", "--set", "image.min_side=200", "--min-side", "100"])
    assert _config(parsed, _settings(parsed)).image.min_side == 100  # the command's own flag beats --set
    capsys.readouterr()
    for bad, message in ((["--set", "min_side=5"], "give SECTION.KEY=VALUE"),
                         (["--set", "image.min_sides=5"], "did you mean 'min_side'"),
                         (["--set", "image.min_side=small"], "must be an integer")):
        assert main(["filter", "--input", str(photos), "-o", str(tmp_path / "x"), *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_every_command_help_ends_with_an_example_that_parses(capsys) -> None:
    import argparse
    import shlex

    from curate.commands.cli import EXAMPLES, _build_parser

    parser = _build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(EXAMPLES) == set(commands)
    for name, example in EXAMPLES.items():
        assert f"example:\n  {example}" in commands[name].format_help()
        argv = shlex.split(example, comments=True)
        assert argv[:2] == ["curate", name]
        args, extra = parser.parse_known_args(argv[1:])  # (raises SystemExit on an unknown or bad flag)
        assert args.command == name and not extra, (name, extra)


def test_help_and_version_import_neither_torch_nor_beam() -> None:
    """`--help` of every command and `--version` in a fresh interpreter load nothing heavy: that is what keeps
    them fast (the time itself is a benchmark figure, BENCHMARKS.md, not a test)."""
    script = """
import contextlib, io, json, sys
from curate.commands.cli import EXAMPLES, main
heavy = {}
for argv in [["--version"], ["--help"], *([name, "--help"] for name in EXAMPLES)]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
    heavy[" ".join(argv)] = sorted(m for m in ("torch", "apache_beam", "easyocr", "cv2", "onnxruntime")
                                   if m in sys.modules)
print(json.dumps(heavy))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    heavy = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(heavy) >= 16 and all(found == [] for found in heavy.values()), heavy
