"""The distributed dedup transform against a plain in-memory union-find on the same nodes."""

from __future__ import annotations

import random
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that, equal_to

from curate import reasons as R
from curate.filters.dedup import Decision, Node
from curate.hashing import hamming
from curate.pipelines.dedup import Deduplicate


def _flip(h: int, bits: list[int]) -> int:
    for b in bits:
        h ^= 1 << b
    return h


def _nodes(seed: int = 0) -> list[Node]:
    rng = random.Random(seed)
    nodes = []
    for i in range(60):  # unrelated images
        nodes.append(Node(f"u{i:03d}", f"s{i}", f"p{i}", rng.getrandbits(63), rng.randint(100, 10_000), "2021"))
    base = rng.getrandbits(63)
    for i in range(6):  # a chain: each 4 bits from the previous, ends 20 bits apart (one cluster via the chain)
        nodes.append(Node(f"c{i}", f"cs{i}", f"cp{i}", _flip(base, list(range(4 * i))), 1000 + i, "2022"))
    nodes.append(Node("x1", "same-bytes", "xp1", rng.getrandbits(63), 500, "2021-01-02"))
    nodes.append(Node("x2", "same-bytes", "xp2", rng.getrandbits(63), 500, "2021-01-01"))  # earlier: survives
    nodes.append(Node("y1", "ys1", "same-pixels", rng.getrandbits(63), 800, "2023"))
    nodes.append(Node("y2", "ys2", "same-pixels", rng.getrandbits(63), 900, "2023"))  # larger: survives
    return nodes


def _expected(nodes: list[Node], radius: int) -> list[Decision]:
    parent = {n.key: n.key for n in nodes}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a in nodes:
        for b in nodes:
            if a.key < b.key and (a.sha256 == b.sha256 or a.pixel_hash == b.pixel_hash
                                  or hamming(a.phash, b.phash) <= radius):
                parent[find(a.key)] = find(b.key)
    clusters: dict[str, list[Node]] = {}
    for n in nodes:
        clusters.setdefault(find(n.key), []).append(n)
    out = []
    for members in clusters.values():
        best = min(members, key=lambda n: n.rank)
        for n in members:
            if n is best:
                out.append(Decision(n.key, R.KEPT, best.key, len(members), None))
            else:
                exact = n.sha256 == best.sha256 or n.pixel_hash == best.pixel_hash
                out.append(Decision(n.key, R.DUPLICATE if exact else R.NEAR_DUPLICATE, best.key, len(members), best.key))
    return out


@pytest.mark.parametrize("spare", [0, 1])
def test_matches_union_find(spare: int) -> None:
    nodes = _nodes()
    expected = _expected(nodes, radius=6)
    assert sum(d.reason != R.KEPT for d in expected) == 7  # the chain (5), the bytes pair, the pixels pair
    with BeamPipeline() as p:
        decisions, unsettled = p | beam.Create(nodes) | Deduplicate(radius=6, rounds=8, spare=spare)
        assert_that(decisions, equal_to(expected), label="Decisions")
        assert_that(unsettled, equal_to([]), label="Settled")


def test_too_few_rounds_are_reported_not_guessed() -> None:
    nodes = _nodes()
    with BeamPipeline() as p:
        _, unsettled = p | beam.Create(nodes) | Deduplicate(radius=6, rounds=1)
        assert_that(unsettled, lambda keys: _nonempty(keys), label="Unsettled")


def _nonempty(keys: list[str]) -> None:
    assert keys and all(k.startswith("c") for k in keys)


def test_same_survivors_in_any_order_and_with_replayed_bundles() -> None:
    from apache_beam.options.pipeline_options import PipelineOptions

    nodes = _nodes(seed=3)
    expected = _expected(nodes, radius=6)
    shuffled = nodes[:]
    random.Random(7).shuffle(shuffled)
    options = PipelineOptions(["--direct_runner_bundle_repeat=2"])
    with BeamPipeline(options=options) as p:
        decisions, _ = p | beam.Create(shuffled) | Deduplicate(radius=6, rounds=8)
        assert_that(decisions, equal_to(expected))


def test_a_missing_or_malformed_hash_list_is_one_line(tmp_path: Path) -> None:
    from curate.errors import InputError
    from curate.filters.dedup import check_exclusions, load_exclusions

    cache = str(tmp_path / "cache")
    with pytest.raises(InputError, match="cannot read it"):
        load_exclusions([str(tmp_path / "missing.txt")], cache)
    hashes = tmp_path / "eval.txt"
    hashes.write_text("# eval set\n00ff00ff00ff00ff\n\nnot-a-hash\n")
    with pytest.raises(InputError, match=r"line 4: not a 64-bit hex hash: 'not-a-hash'"):
        load_exclusions([str(hashes)], cache)
    hashes.write_text("00ff00ff00ff00ff  # one\nABC\n")
    loaded = load_exclusions([str(hashes)], cache)
    assert loaded.hashes == [0xABC, 0x00FF00FF00FF00FF] and loaded.indexes == []
    assert loaded.record.startswith("0 pictures, 2 hashes:")
    with pytest.raises(InputError, match=r"dedup.exclude_near .*/nope: no such file or folder"):
        check_exclusions([str(hashes), str(tmp_path / "nope")])


def test_evaluation_pictures_are_read_on_their_own_terms(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 56x56 PNG, a TIFF, a BMP and a 600x40 strip (under the training data's 64-px minimum side, outside its
    formats and its aspect limit) are all hashed as Pillow decodes them and indexed with their keypoints; a
    broken file is named in one warning line; a set of nothing but broken files, an empty hash list and an empty
    folder are one-line errors."""
    import logging

    import numpy as np
    from PIL import Image

    from curate.errors import InputError
    from curate.filters.dedup import check_exclusions, load_exclusions
    from curate.hashing import phash64

    rng = np.random.default_rng(3)
    evalset = tmp_path / "eval"
    evalset.mkdir()
    pictures = {"small.png": (56, 56), "scan.tiff": (200, 150), "chart.bmp": (160, 120), "strip.png": (600, 40)}
    expected = set()
    for name, (w, h) in pictures.items():
        picture = Image.fromarray(rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)).resize((w, h))
        picture.save(evalset / name)
        with Image.open(evalset / name) as saved:
            expected.add(phash64(saved.convert("RGB")))
    (evalset / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cache = str(tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="curate.dedup"):
        loaded = load_exclusions([str(evalset)], cache)
    assert set(loaded.hashes) == expected and loaded.record.startswith("4 pictures, 4 hashes:")
    index = pq.read_table(loaded.indexes[0]).to_pylist()
    assert sorted(Path(r["source"]).name for r in index) == sorted(pictures)
    assert all(r["thumbnail"].startswith(b"P5 ") for r in index)
    assert sum(len(r["features"]) > 0 for r in index) >= 2  # the larger two have corners
    warned = [r.getMessage() for r in caplog.records if r.name == "curate.dedup"]
    assert len(warned) == 1 and "1 pictures cannot be read" in warned[0] and "broken.jpg" in warned[0], warned

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"GIF89a nothing")
    with pytest.raises(InputError, match=r"dedup.exclude_near .*/broken: no picture in it"):
        load_exclusions([str(broken)], cache)
    empty = tmp_path / "eval.txt"
    empty.write_text("# hashes to come\n\n")
    for call in (lambda paths: load_exclusions(paths, cache), check_exclusions):
        with pytest.raises(InputError, match=r"eval.txt: no hash in it"):
            call([str(empty)])
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    with pytest.raises(InputError, match=r"dedup.exclude_near .*/nothing: no images"):
        check_exclusions([str(nothing)])


def test_an_unchanged_evaluation_set_is_not_read_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The index of an image set (hashes, keypoints) is cached under its listing (names, sizes, mtimes): a picture
    overwritten in place with its size and mtime kept is not read again (the cached index stands); once its
    mtime moves, the set is read again and the broken picture is named. A touched but unchanged set records the
    same exclusion (dedup does not rerun for it)."""
    import logging
    import os

    import numpy as np
    from PIL import Image

    from curate.filters.dedup import load_exclusions

    rng = np.random.default_rng(5)
    evalset, cache = tmp_path / "eval", tmp_path / "cache"
    evalset.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((160, 120)).save(evalset / f"{i}.png")
    first = load_exclusions([str(evalset)], cache=str(cache))
    assert len(first.hashes) == 3 and len(list(cache.glob("*.parquet"))) == 1
    os.utime(evalset / "1.png", ns=(10**18, 10**18))  # touched, not changed: indexed again, recorded the same
    touched = load_exclusions([str(evalset)], cache=str(cache))
    assert touched.record == first.record and touched.indexes != first.indexes
    assert len(list(cache.glob("*.parquet"))) == 2
    target = evalset / "0.png"
    stat = target.stat()
    target.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (stat.st_size - 8))  # same size, no longer a picture
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with caplog.at_level(logging.WARNING, logger="curate.dedup"):
        assert load_exclusions([str(evalset)], cache=str(cache)) == touched  # not read: the cache answered
        assert not [r for r in caplog.records if r.name == "curate.dedup"]
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        again = load_exclusions([str(evalset)], cache=str(cache))
    assert len(again.hashes) == 2 and set(again.hashes) < set(first.hashes) and again.record != first.record
    assert any("0.png" in r.getMessage() for r in caplog.records if r.name == "curate.dedup")
    assert len(list(cache.glob("*.parquet"))) == 3


class _Copies:
    """A picture copied `n` times, as a runner hands a group to a step: an iterable that can be read again (Beam's
    grouped values are), never a list; the copy at `n // 2` is the largest, the survivor."""

    def __init__(self, n: int, labelled: bool = False):
        self.n, self.labelled = n, labelled

    def __iter__(self):
        from curate.filters.dedup import label

        best = Node(f"k{self.n // 2:07d}", "same-bytes", "same-pixels", 0xABC, 200, "2021")
        for i in range(self.n):
            node = best if i == self.n // 2 else Node(f"k{i:07d}", "same-bytes", "same-pixels", 0xABC, 100, "2021")
            yield (node.key, label(best), node) if self.labelled else node


def test_the_largest_groups_are_read_as_streams_in_constant_memory_and_decided_right() -> None:
    """The worst case of the hash steps: one picture with 10^4 and with 10^5 copies (a logo or a spacer copied
    across the web) is one group of the SHA-256, pixel-hash and band steps, one hub of the label steps and one
    cluster. Each step reads it as a stream: peak memory does not grow with the copies (tracemalloc), and the
    edges connect every copy with one edge each, the decisions keep the largest and name it for all others."""
    import tracemalloc
    from collections import Counter

    from curate.filters.dedup import bucket_pairs, decide, label, star
    from curate.pipelines.dedup import _to_neighbours

    peaks = {}
    for n in (10_000, 100_000):
        tracemalloc.start()
        edges = Counter(a for a, _ in star(_Copies(n)))
        pairs = Counter(a for a, _ in bucket_pairs(_Copies(n), radius=6))
        best = label(Node("k", "s", "p", 0, 1, ""))
        sent = sum(1 for _ in _to_neighbours(("hub", {"label": [best], "edges": (f"k{i}" for i in range(n))})))
        decided = Counter((d.reason, d.cluster, d.cluster_size) for d in decide(_Copies(n, labelled=True)))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert edges == pairs == {"k0000000": n - 1} and sent == n  # a star on the first copy: n - 1 edges
        survivor = f"k{n // 2:07d}"
        assert decided == {(R.KEPT, survivor, n): 1, (R.DUPLICATE, survivor, n): n - 1}
    assert peaks[100_000] < 1.2 * peaks[10_000] + 256 * 1024, peaks  # constant, not 10x


def test_copies_of_one_picture_are_one_cluster_through_the_stage() -> None:
    """2,000 copies of one picture among the unrelated and chained pictures: one cluster, one survivor, and the
    other decisions as without them."""
    copies = [Node(f"m{i:05d}", f"ms{i % 3}", "mp", 0x5555_0000_AAAA_1111 ^ (i % 2), 50 + (i == 1234), "2020")
              for i in range(2000)]
    nodes = _nodes() + copies
    expected = _expected(_nodes(), radius=6) + [
        Decision(n.key, R.KEPT if n.key == "m01234" else R.DUPLICATE, "m01234", 2000,
                 None if n.key == "m01234" else "m01234") for n in copies]
    with BeamPipeline() as p:
        decisions, unsettled = p | beam.Create(nodes) | Deduplicate(radius=6, rounds=8)
        assert_that(decisions, equal_to(expected), label="Decisions")
        assert_that(unsettled, equal_to([]), label="Settled")
