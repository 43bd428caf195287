"""curate.sample.distinct: the scale benchmark's pictures are reproducible, photo-like and distinct."""

from __future__ import annotations

import numpy as np

from curate import keypoints
from curate.sample.distinct import SIZE, distinct


def test_a_seed_makes_one_picture_and_no_two_seeds_are_copies() -> None:
    pictures = [distinct(seed) for seed in range(40)]
    assert all(p.size == SIZE and p.mode == "RGB" for p in pictures)
    assert np.array_equal(np.asarray(distinct(7)), np.asarray(pictures[7]))  # the same on every call
    described = [keypoints.describe(p) for p in pictures]
    assert min(len(d.features) // keypoints.ROW for d in described) >= 100  # textured: many keypoints
    same, _ = keypoints.match_all([d.features for d in described], [d.thumbnail for d in described], 1)
    assert same == set()  # the matcher finds no two of them to be one picture
    spread = [float(np.asarray(p.convert("L"), dtype=np.float32).std()) for p in pictures]
    assert min(spread) > 5  # not flat
