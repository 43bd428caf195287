"""What `curate run --input` names, sorted by where each thing enters the pipeline.

- Crawl files (WARC, WAT, `*.paths.gz` listings) and URL lists (curate.urllists) enter at extract, whose
  references download then fetches.
- Pictures enter at decode: image files, and webdataset / img2dataset tar shards (local or any fsspec URL).
A folder is searched recursively and each file sorted by its name: an img2dataset output folder gives its
tars (their `.parquet` and `_stats.json` siblings are its metadata, not URL lists to fetch again), a `.txt`
beside a picture of the same name is its caption, not a URL list, and what is neither kind is counted by
suffix, never silently dropped. A file named on its own, or a glob, that is no picture by name is read as a
crawl file (a file that is no WARC either is then a dead letter).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import fsspec

from curate.crawl import DEFAULT_BASE_URL, CrawlFile, input_files
from curate.errors import InputError
from curate.readers import IMAGE_SUFFIXES, SOURCE_SUFFIXES, list_sources
from curate.urllists import is_url_list

CRAWL_SUFFIXES = (".warc", ".warc.gz", ".wat", ".wat.gz", ".arc", ".arc.gz", ".paths.gz")


@dataclass
class RunInputs:
    crawl: list[CrawlFile] = field(default_factory=list)  # WARC/WAT files and URL lists: extract, download
    pictures: list[str] = field(default_factory=list)  # image files and tar shards: decode
    skipped: Counter[str] = field(default_factory=Counter)  # files of a folder that are neither, by suffix


def classify(given: list[str], base_url: str = DEFAULT_BASE_URL) -> RunInputs:
    """Sort the inputs; InputError (one line) for a path that does not exist or a folder with nothing to read."""
    found = RunInputs()
    crawl: list[str] = []
    for item in given:
        fs, path = fsspec.core.url_to_fs(item)
        if not any(c in path for c in "*?[") and fs.isdir(path):
            _folder(item, [fs.unstrip_protocol(p) for p in sorted(fs.find(path))], found, crawl)
        elif item.lower().endswith(SOURCE_SUFFIXES):  # a picture or tar, or a glob of them
            found.pictures.extend(list_sources([item]))
        else:  # a crawl file, a URL list, a listing, or a glob of them (read as crawl files: curate.crawl)
            crawl.append(item)
    found.crawl = input_files(crawl, base_url) if crawl else []
    found.pictures = list(dict.fromkeys(found.pictures))
    return found


def _folder(item: str, files: list[str], found: RunInputs, crawl: list[str]) -> None:
    tars = {f.lower()[: -len(".tar")] for f in files if f.lower().endswith(".tar")}
    pictures = {f.lower().rsplit(".", 1)[0] for f in files if f.lower().endswith(IMAGE_SUFFIXES)}
    before = len(found.pictures) + len(crawl)
    for f in files:
        lower = f.lower()
        if lower.endswith(SOURCE_SUFFIXES):
            found.pictures.append(f)
        elif lower.endswith((".parquet", "_stats.json")) and lower.rsplit(".", 1)[0].removesuffix("_stats") in tars:
            found.skipped["img2dataset metadata"] += 1
        elif lower.endswith(".txt") and lower[: -len(".txt")] in pictures:  # photo.jpg + photo.txt: a caption
            found.skipped["caption sidecar .txt"] += 1
        elif lower.endswith(CRAWL_SUFFIXES) or is_url_list(lower):
            crawl.append(f)
        else:
            found.skipped[PurePosixPath(f).suffix.lower() or "(none)"] += 1
    if len(found.pictures) + len(crawl) == before:
        raise InputError(f"nothing to read in {item}: no crawl files, URL lists, images or .tar shards")
