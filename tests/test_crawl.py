"""curate.crawl: snapshot specs, listings on local, file://, memory:// and real HTTP, inputs, streaming opens."""

from __future__ import annotations

import gzip
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from curate.crawl import (
    DEFAULT_BASE_URL,
    KNOWN_SNAPSHOTS,
    PRESETS,
    CrawlFile,
    input_files,
    join_url,
    open_binary,
    resolve_snapshots,
    snapshot_files,
    snapshot_month,
    snapshot_of,
)
from curate.errors import InputError
from curate.sample.serve import SampleServer, free_port_block

WEB_SSL = (
    "CC-MAIN-2021-04 CC-MAIN-2021-10 CC-MAIN-2021-17 CC-MAIN-2021-21 CC-MAIN-2021-25 CC-MAIN-2021-31 "
    "CC-MAIN-2021-39 CC-MAIN-2021-43 CC-MAIN-2021-49 CC-MAIN-2022-05 CC-MAIN-2022-21 CC-MAIN-2022-27 "
    "CC-MAIN-2022-33 CC-MAIN-2022-40 CC-MAIN-2022-49 CC-MAIN-2023-06"
).split()
SEG_A, SEG_B = "1610703495901.0", "1674764494826.88"
WARC_A = [
    f"crawl-data/CC-MAIN-2021-04/segments/{SEG_A}/warc/CC-MAIN-20210115134101-20210115164101-0000{i}.warc.gz"
    for i in range(3)
]
WAT_A = [
    f"crawl-data/CC-MAIN-2021-04/segments/{SEG_A}/wat/CC-MAIN-20210115134101-20210115164101-0000{i}.warc.wat.gz"
    for i in range(2)
]
WARC_B = [f"crawl-data/CC-MAIN-2023-06/segments/{SEG_B}/warc/CC-MAIN-20230126134101-20230126164101-00000.warc.gz"]
STREAMED = bytes(range(256)) * 256  # 64 KiB, trickled by the server in 4 KiB steps
FILE_BYTES = gzip.compress(b"WARC/1.0\r\n", mtime=0)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No name but 127.0.0.1 resolves: the default CommonCrawl host must never be contacted."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", b"127.0.0.1"):
            raise AssertionError(f"test tried to reach {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


def listing(lines: list[str], extra: str = "") -> bytes:
    return gzip.compress(("\n".join(lines) + "\n" + extra).encode(), mtime=0)


def crawl_files() -> dict[str, bytes]:
    """A tiny CommonCrawl: two snapshots, listings (one with a blank line), WARC and WAT files."""
    files = {path: FILE_BYTES for path in WARC_A + WAT_A + WARC_B}
    files["crawl-data/CC-MAIN-2021-04/warc.paths.gz"] = listing(WARC_A, extra="\n\n")
    files["crawl-data/CC-MAIN-2021-04/wat.paths.gz"] = listing(WAT_A)
    files["crawl-data/CC-MAIN-2023-06/warc.paths.gz"] = listing(WARC_B)
    files["big/streamed.bin"] = STREAMED
    files["notes/readme.warc.gz"] = FILE_BYTES  # no crawl-data/<ID>/ in its path
    return files


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crawl")
    for rel, data in crawl_files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    port = free_port_block(1, start=20000, end=32000)
    hosts = {
        "bind": "127.0.0.1",
        "base_port": port,
        "hosts": {"crawl": {"port": port, "root": "."}},
        "routes": {
            "crawl": {
                "/big/trickled.bin": {"file": "big/streamed.bin", "trickle": {"interval": 0.05, "bytes": 4096}},
                "/gone.bin": {"status": 410},
                "/boom.bin": {"status": 500},
            }
        },
    }
    (root / "hosts.json").write_text(json.dumps(hosts))
    return root


@pytest.fixture(scope="module")
def server(crawl: Path) -> Iterator[SampleServer]:
    with SampleServer(crawl) as running:
        yield running


@pytest.fixture
def memory_crawl() -> Iterator[str]:
    base = f"memory://crawl-{uuid.uuid4().hex}/"
    fs = fsspec.filesystem("memory")
    for rel, data in crawl_files().items():
        fs.pipe(join_url(base, rel), data)
    yield base
    fs.rm(base, recursive=True)


def relative(files: list[CrawlFile], base: str) -> list[tuple[str, str, str]]:
    prefix = base.rstrip("/") + "/"
    assert all(f.url.startswith(prefix) for f in files), files
    return [(f.url[len(prefix) :], f.snapshot, f.kind) for f in files]


def one_line_error(excinfo: pytest.ExceptionInfo[InputError], *parts: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    for part in parts:
        assert part in message, message
    return message


# ------------------------------------------------------------------------------------------- snapshots


def test_preset_is_the_sixteen_web_ssl_crawls() -> None:
    assert PRESETS["web-ssl"] == tuple(WEB_SSL)
    assert resolve_snapshots("web-ssl") == WEB_SSL


def test_snapshot_month_is_the_month_of_the_iso_weeks_monday() -> None:
    assert snapshot_month("CC-MAIN-2021-04") == "2021-01"  # Monday 2021-01-25
    assert snapshot_month("CC-MAIN-2021-10") == "2021-03"  # Monday 2021-03-08
    assert snapshot_month("CC-MAIN-2021-17") == "2021-04"  # Monday 2021-04-26
    assert snapshot_month("CC-MAIN-2023-06") == "2023-02"  # Monday 2023-02-06
    assert snapshot_month("CC-MAIN-2020-01") == "2019-12"  # ISO week 1 of 2020 starts 2019-12-30
    with pytest.raises(InputError):
        snapshot_month("CC-MAIN-2021-53")  # 2021 has 52 ISO weeks


def test_month_ranges_select_catalog_snapshots() -> None:
    assert resolve_snapshots("2021-01..2021-03") == ["CC-MAIN-2021-04", "CC-MAIN-2021-10"]
    assert resolve_snapshots("2021-04") == ["CC-MAIN-2021-17"]
    assert resolve_snapshots(" 2022-12..2023-02 ") == ["CC-MAIN-2022-49", "CC-MAIN-2023-06"]
    # The Web-SSL preset spans the crawls through January 2023; CC-MAIN-2023-06's Monday falls in February.
    assert resolve_snapshots("2021-01..2023-02") == WEB_SSL
    assert resolve_snapshots("2021-01..2023-01") == WEB_SSL[:-1]


def test_items_combine_dedup_and_keep_first_appearance() -> None:
    assert resolve_snapshots("CC-MAIN-2022-05,web-ssl") == ["CC-MAIN-2022-05"] + [
        s for s in WEB_SSL if s != "CC-MAIN-2022-05"
    ]
    assert resolve_snapshots("2021-03..2021-04, CC-MAIN-2030-10,CC-MAIN-2021-10") == [
        "CC-MAIN-2021-10",
        "CC-MAIN-2021-17",
        "CC-MAIN-2030-10",  # a well-formed ID need not be in the catalog
    ]


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("CC-MAIN-21-4", "CC-MAIN-21-4"),
        ("foo", "foo"),
        ("web-ssl,foo", "foo"),
        ("2021-13..2021-14", "2021-13..2021-14"),
        ("2022-05..2021-01", "2022-05..2021-01"),
        ("2035-01..2035-12", "2035-01..2035-12"),  # a valid range with no known crawl in it
        ("CC-MAIN-2021-00", "CC-MAIN-2021-00"),
        ("", ""),
    ],
)
def test_bad_items_are_one_line_input_errors(spec: str, bad: str) -> None:
    with pytest.raises(InputError) as excinfo:
        resolve_snapshots(spec)
    one_line_error(excinfo, repr(bad))
    if bad in ("CC-MAIN-21-4", "foo"):
        one_line_error(excinfo, "CC-MAIN-YYYY-WW", "web-ssl", "YYYY-MM..YYYY-MM")


def test_catalog_is_sorted_unique_and_covers_2020_to_2024() -> None:
    assert list(KNOWN_SNAPSHOTS) == sorted(set(KNOWN_SNAPSHOTS))
    years = {s[8:12] for s in KNOWN_SNAPSHOTS}
    assert {"2020", "2021", "2022", "2023", "2024"} <= years
    assert set(WEB_SSL) <= set(KNOWN_SNAPSHOTS)
    assert {snapshot_month(s) for s in KNOWN_SNAPSHOTS}  # every entry is a valid ID


# ------------------------------------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    ("base", "joined"),
    [
        ("https://data.commoncrawl.org/", "https://data.commoncrawl.org/crawl-data/x"),
        ("https://data.commoncrawl.org", "https://data.commoncrawl.org/crawl-data/x"),
        ("s3://commoncrawl/", "s3://commoncrawl/crawl-data/x"),
        ("http://127.0.0.1:8000//", "http://127.0.0.1:8000/crawl-data/x"),
        ("file:///data/cc/", "file:///data/cc/crawl-data/x"),
        ("file:///", "file:///crawl-data/x"),
        ("/data/cc", "/data/cc/crawl-data/x"),
        ("/", "/crawl-data/x"),
        ("build/sample", "build/sample/crawl-data/x"),
        ("memory://", "memory://crawl-data/x"),
        ("memory://cc/", "memory://cc/crawl-data/x"),
    ],
)
def test_join_url_puts_exactly_one_slash(base: str, joined: str) -> None:
    assert join_url(base, "crawl-data/x") == joined
    assert join_url(base, "/crawl-data/x") == joined


def test_join_url_keeps_a_full_url() -> None:
    assert join_url("/data", "s3://bucket/x.warc.gz") == "s3://bucket/x.warc.gz"


def test_snapshot_of() -> None:
    assert snapshot_of(WARC_A[0]) == "CC-MAIN-2021-04"
    assert snapshot_of("s3://commoncrawl/" + WARC_B[0]) == "CC-MAIN-2023-06"
    assert snapshot_of("CC-MAIN-20210115134101-20210115164101-00000.warc.gz") == ""
    assert snapshot_of("x/crawl-data/CC-MAIN-2021-04x/y") == ""


# ---------------------------------------------------------------------------------------------- listings


EXPECTED = [(p, "CC-MAIN-2021-04", "warc") for p in WARC_A] + [(WARC_B[0], "CC-MAIN-2023-06", "warc")]


def test_snapshot_files_same_on_every_filesystem(crawl: Path, server: SampleServer, memory_crawl: str) -> None:
    ids = ["CC-MAIN-2021-04", "CC-MAIN-2023-06"]
    bases = [str(crawl), crawl.as_uri() + "/", memory_crawl, server.url("crawl", "/")]
    for base in bases:
        assert relative(snapshot_files(ids, base_url=base), base) == EXPECTED, base
    local = snapshot_files(ids, base_url=str(crawl))
    assert [Path(f.url).read_bytes() for f in local] == [FILE_BYTES] * 4


def test_snapshot_files_over_http_reads_each_listing_once(server: SampleServer) -> None:
    before = len(server.requests)
    snapshot_files(["CC-MAIN-2023-06", "CC-MAIN-2023-06"], base_url=server.url("crawl", "/"))
    log = [r for r in server.wait_for_requests(before + 1)[before:] if r["path"].startswith("/crawl-data/")]
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("GET", "/crawl-data/CC-MAIN-2023-06/warc.paths.gz", 200)
    ]


def test_snapshot_files_max_files_and_wat(crawl: Path, memory_crawl: str) -> None:
    files = snapshot_files(["CC-MAIN-2021-04", "CC-MAIN-2023-06"], base_url=str(crawl), max_files=2)
    assert relative(files, str(crawl)) == EXPECTED[:2] + EXPECTED[3:]
    wat = snapshot_files(["CC-MAIN-2021-04"], base_url=memory_crawl, source="wat", max_files=1)
    assert relative(wat, memory_crawl) == [(WAT_A[0], "CC-MAIN-2021-04", "wat")]


def test_snapshot_files_errors(crawl: Path, server: SampleServer) -> None:
    for base in (str(crawl), server.url("crawl", "/")):
        with pytest.raises(InputError) as excinfo:
            snapshot_files(["CC-MAIN-2021-04", "CC-MAIN-2022-05"], base_url=base)
        url = join_url(base, "crawl-data/CC-MAIN-2022-05/warc.paths.gz")
        one_line_error(excinfo, f"no listing for CC-MAIN-2022-05 at {url}: ")
    with pytest.raises(InputError) as excinfo:
        snapshot_files(["CC-MAIN-2021-04"], base_url=str(crawl), source="wet")
    one_line_error(excinfo, "'wet'", "warc", "wat")
    with pytest.raises(InputError):
        snapshot_files(["CC-MAIN-21-4"], base_url=str(crawl))
    (crawl / "crawl-data" / "CC-MAIN-2020-05").mkdir()
    (crawl / "crawl-data" / "CC-MAIN-2020-05" / "warc.paths.gz").write_bytes(b"not gzip\n")
    with pytest.raises(InputError) as excinfo:
        snapshot_files(["CC-MAIN-2020-05"], base_url=str(crawl))
    one_line_error(excinfo, "unreadable listing")


# ------------------------------------------------------------------------------------------------ inputs


def test_input_files_globs_are_sorted_absolute_and_parsed(crawl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(crawl)
    files = input_files(["crawl-data/*/segments/*/warc/*.warc.gz"])
    assert files == [CrawlFile(str(crawl / p), snapshot_of(p), "warc") for p in sorted(WARC_A + WARC_B)]
    every = input_files([f"{crawl}/crawl-data/CC-MAIN-2021-04/segments/**/*.gz"])
    assert [(f.url, f.kind) for f in every] == sorted(
        [(str(crawl / p), "warc") for p in WARC_A] + [(str(crawl / p), "wat") for p in WAT_A]
    )
    assert all(f.snapshot == "CC-MAIN-2021-04" for f in every)


def test_input_files_file_url_and_memory_globs(crawl: Path, memory_crawl: str) -> None:
    files = input_files([crawl.as_uri() + "/crawl-data/*/segments/*/wat/*.gz"])
    assert [(f.url, f.snapshot, f.kind) for f in files] == [
        (crawl.as_uri() + "/" + p, "CC-MAIN-2021-04", "wat") for p in WAT_A
    ]
    mem = input_files([memory_crawl + "crawl-data/CC-MAIN-2023-06/segments/*/warc/*"])
    assert len(mem) == 1 and mem[0].url.endswith(WARC_B[0]) and mem[0].snapshot == "CC-MAIN-2023-06"
    with fsspec.open(mem[0].url, "rb") as f:
        assert f.read() == FILE_BYTES


def test_input_files_listing_resolves_against_base(crawl: Path, memory_crawl: str) -> None:
    paths = str(crawl / "crawl-data/CC-MAIN-2021-04/warc.paths.gz")
    assert relative(input_files([paths], base_url=str(crawl)), str(crawl)) == EXPECTED[:3]
    # Only names are made: the default base is never contacted (the loopback_only fixture would fail).
    remote = input_files([paths])
    assert [f.url for f in remote] == [DEFAULT_BASE_URL + p for p in WARC_A]
    listed_in_memory = input_files([memory_crawl + "crawl-data/*/warc.paths.gz"], base_url=memory_crawl)
    assert relative(listed_in_memory, memory_crawl) == EXPECTED


def test_input_files_direct_dedup_and_input_order(crawl: Path, server: SampleServer) -> None:
    last = str(crawl / WARC_A[2])
    files = input_files([last, last, f"{crawl}/crawl-data/CC-MAIN-2021-04/segments/*/warc/*"])
    assert [f.url for f in files] == [last] + [str(crawl / p) for p in WARC_A[:2]]
    plain = input_files([str(crawl / "notes/readme.warc.gz")])
    assert plain == [CrawlFile(str(crawl / "notes/readme.warc.gz"), "", "warc")]
    url = server.url("crawl", "/" + WAT_A[1])
    assert input_files([url]) == [CrawlFile(url, "CC-MAIN-2021-04", "wat")]


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("crawl-data/CC-MAIN-2021-04/segments/nope.warc.gz", "no such file"),
        ("crawl-data/*/segments/*/wet/*.gz", "no file matches"),
        ("crawl-data/CC-MAIN-2021-04", "is a directory"),
        ("crawl-data/CC-MAIN-2019-04/warc.paths.gz", "no such file"),
    ],
)
def test_input_files_missing_is_one_line(crawl: Path, given: str, words: str) -> None:
    with pytest.raises(InputError) as excinfo:
        input_files([str(crawl / WARC_A[0]), str(crawl / given)])
    one_line_error(excinfo, words, str(crawl / given))


def test_input_files_missing_over_http(server: SampleServer) -> None:
    with pytest.raises(InputError) as excinfo:
        input_files([server.url("crawl", "/crawl-data/nope.warc.gz")])
    one_line_error(excinfo, "no such file")


# -------------------------------------------------------------------------------------------------- open


def test_open_binary_streams_over_http_in_one_request(server: SampleServer) -> None:
    before = len(server.requests)
    began = time.monotonic()
    chunks = []
    with open_binary(server.url("crawl", "/big/trickled.bin")) as stream:
        chunks.append(stream.read(1000))
        first = time.monotonic() - began
        while chunk := stream.read(10_000):
            chunks.append(chunk)
    total = time.monotonic() - began
    assert b"".join(chunks) == STREAMED
    # 16 trickles of 4 KiB, 50 ms apart: the first bytes arrive long before the last.
    assert first < 0.5 < total, (first, total)
    # Other tests' requests may be logged late (a record is written when its response ends): look at ours.
    log = [r for r in server.wait_for_requests(before + 1)[before:] if r["path"] == "/big/trickled.bin"]
    assert [(r["method"], r["path"], r["status"], r["complete"]) for r in log] == [
        ("GET", "/big/trickled.bin", 200, True)
    ]


def test_open_binary_http_errors(server: SampleServer) -> None:
    for path in ("/missing.bin", "/gone.bin"):
        with pytest.raises(FileNotFoundError):
            with open_binary(server.url("crawl", path)):
                pass
    with pytest.raises(OSError) as excinfo:
        with open_binary(server.url("crawl", "/boom.bin")):
            pass
    assert not isinstance(excinfo.value, FileNotFoundError) and "500" in str(excinfo.value)


def test_open_binary_local_and_memory(crawl: Path, memory_crawl: str) -> None:
    with open_binary(str(crawl / "big/streamed.bin")) as f:
        assert f.read(3) == STREAMED[:3] and f.read() == STREAMED[3:]
    with open_binary(join_url(memory_crawl, "big/streamed.bin")) as f:
        assert f.read() == STREAMED
    for missing in (str(crawl / "nope"), crawl.as_uri() + "/nope", join_url(memory_crawl, "nope")):
        with pytest.raises(FileNotFoundError):
            with open_binary(missing):
                pass
