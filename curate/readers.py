"""Images in, whatever their container: a folder of files, img2dataset's tar shards, or curate's fetched/.

The filter stages accept datasets users already have, so every source becomes the same record, a
`FetchedImage` whose `ref` carries the provenance there is: for curate's own fetched shards the ref's
fields (the json sidecars hold them), for other img2dataset output its url and caption, for a folder the
file's `file://` URL (so every reject row names its file). Keys are stable and distinct across sources: the
ref's key for the fetched shards of the output being written (unique in the run that fetched them), else the key of where the picture
was read: its file, or its tar and key stem (the same URL in two tars is two pictures, which dedup then
judges as duplicates by their bytes).
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import fsspec

from curate import reasons as R
from curate.errors import InputError
from curate.io import join
from curate.mime import SNIFF_BYTES, sniff
from curate.records import Failed, FetchedImage, ImageRef
from curate.shards import picture, tar_samples
from curate.urls import url_key

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic")
SOURCE_SUFFIXES = (".tar", *IMAGE_SUFFIXES)  # what a source is by name: a tar shard or an image file


def _fs_glob(pattern: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(pattern)
    return [fs.unstrip_protocol(p) for p in sorted(fs.glob(path))]


def fetched_by(out: str, source: str) -> bool:
    """Whether a source is one of OUT/fetched's shards (curate's own: ref keys unique within that output)."""
    folder = fsspec.core.url_to_fs(join(out, "fetched"))[1].rstrip("/") + "/"
    return fsspec.core.url_to_fs(source)[1].startswith(folder)


def list_sources(inputs: list[str], allow_empty: bool = False, skipped: Counter[str] | None = None) -> list[str]:
    """Tar shards and image files named by paths, folders (searched recursively) or globs; InputError if none
    (unless `allow_empty`: a glob over a finished stage's folder that holds no shard). The files of a folder
    that are neither, by name, are counted in `skipped` by suffix (a glob chose its files: nothing to count)."""
    found: list[str] = []
    seen: set[str] = set()
    for given in inputs:
        fs, path = fsspec.core.url_to_fs(given)
        folder = False
        if any(c in path for c in "*?["):
            matches = _fs_glob(given)
        elif fs.isdir(path):
            matches, folder = [fs.unstrip_protocol(p) for p in sorted(fs.find(path))], True
        elif fs.exists(path):
            matches = [fs.unstrip_protocol(path)]
        else:
            raise InputError(f"no such file or folder: {given}")
        accepted = [m for m in matches if m.lower().endswith(SOURCE_SUFFIXES)]
        if folder and skipped is not None:
            skipped.update(PurePosixPath(m).suffix.lower() or "(none)" for m in set(matches) - set(accepted))
        if not accepted and not allow_empty:
            raise InputError(f"no images or .tar shards in {given}")
        for m in accepted:
            if m not in seen:
                seen.add(m)
                found.append(m)
    return found


def _ref_from_meta(meta: dict[str, Any], caption: str, where: str, ours: bool) -> ImageRef:
    url = meta.get("url") or where
    key = (ours and meta.get("ref_key")) or url_key(where)
    # Provenance: what the sample's json says (curate's own shards name the crawl record); else the tar and
    # its sample key, as `source_file`, and `source` "tar".
    return ImageRef(key, url, meta.get("caption") or caption or "", "", meta.get("page_url") or "",
                    meta.get("snapshot") or "", meta.get("source_file") or where, int(meta.get("record_offset") or 0),
                    meta.get("crawl_date") or "", meta.get("source") or "tar")


def read_tar(url: str, ours: bool = False) -> Iterator[FetchedImage | Failed]:
    """The pictures of a webdataset/img2dataset tar, streamed (curate.shards.tar_samples: a cut-short tar gives
    its samples so far, then a tarfile.ReadError); a sample without a picture gives nothing. A sample whose json
    cannot be read is a `Failed` (the samples around it still come out). A sample is keyed by its `ref_key` when
    the tar is `ours` (the fetched shards of the output being written: keys unique in the run that fetched them),
    else by `url_key("<tar URL>#<stem>")` (two runs' fetched shards may share a URL, and so a ref key); a key the tar has already given (a repeated key stem, a repeated
    ref_key) is made distinct, with `#n` for the n-th repeat, so no picture hides behind another's key:
    identical repeats then meet in dedup as duplicates, with a reject row."""
    seen: dict[str, int] = {}
    for stem, members in tar_samples(url):
        found = picture(members)
        if found is None:
            continue
        data, where = found[1], f"{url}#{stem}"
        try:
            meta = json.loads(members["json"]) if "json" in members else {}
            if not isinstance(meta, dict):
                raise ValueError(f"the json member is a {type(meta).__name__}, not an object")
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            yield Failed(url_key(where), where, R.DECODE, f"{type(e).__name__}: {e}", "the sample's json member")
            continue
        caption = members.get("txt", b"").decode("utf-8", "replace")
        ref = _ref_from_meta(meta, caption, where, ours)
        repeat = seen.get(ref.key, 0)
        seen[ref.key] = repeat + 1
        if repeat:
            ref = ref._replace(key=url_key(f"{where}#{repeat + 1}"))
        yield FetchedImage(ref, data, sniff(data[:32]) or "", int(meta.get("http_status") or 0))


HEAD_BYTES = 4096  # what is read of a file that is no raster image we know: enough for its refusal's reason


def read_file(url: str) -> FetchedImage:
    """One image file; its `file://` (or remote) URL is its identity. A local path must be a regular file (a
    FIFO would block, /dev/zero never ends: OSError, a dead letter); a file whose first bytes are no raster
    image we know is read no further than HEAD_BYTES (a 1.5 GB non-image costs 4 KiB)."""
    fs, path = fsspec.core.url_to_fs(url)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocols and not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path} is not a regular file (a FIFO, device or socket): not read")
    with fs.open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        data = head + fh.read() if sniff(head[:SNIFF_BYTES]) else head
    name = url if "://" in url else "file://" + url
    return FetchedImage(ImageRef(url_key(name), name, "", "", "", "", name, 0, "", "file"), data,
                        sniff(data[:32]) or "", 0)


def read_source(url: str, ours: bool = False) -> Iterator[FetchedImage | Failed]:
    """The pictures of one source: a tar (`ours`: see read_tar) or an image file."""
    if url.lower().endswith(".tar"):
        yield from read_tar(url, ours)
    else:
        yield read_file(url)
