import pytest

from curate import reasons as R
from curate.config import TextConfig
from curate.filters.text import is_heavy, is_light, verdict
from curate.records import TextScore


def _score(chars: int, lines: int, page: float = 0.9) -> TextScore:
    return TextScore(boxes=lines, area_fraction=0.1, words=chars // 5, chars=chars, mean_confidence=0.9, lines=lines,
                     text="x" * chars, ms=1.0, page=page)


@pytest.mark.parametrize(
    ("chars", "lines", "light", "heavy"),
    [(0, 0, False, False), (2, 1, False, False), (3, 1, True, False), (59, 6, True, False), (60, 1, True, True),
     (400, 12, True, True)],
)
def test_thresholds(chars: int, lines: int, light: bool, heavy: bool) -> None:
    config = TextConfig()
    assert is_light(_score(chars, lines), config) is light
    assert is_heavy(_score(chars, lines), config) is heavy


def test_verdicts_and_notext_is_lights_complement() -> None:
    for chars, lines in ((0, 0), (10, 1), (300, 10)):
        score = _score(chars, lines)
        light = verdict(score, TextConfig(filter="light"))
        notext = verdict(score, TextConfig(filter="notext"))
        assert (light == R.KEPT) != (notext == R.KEPT)
        assert verdict(score, TextConfig(filter="none")) == R.KEPT
    assert verdict(_score(10, 1), TextConfig(filter="heavy")) == R.NOT_TEXT_DENSE
    assert verdict(_score(0, 0), TextConfig(filter="light")) == R.NO_TEXT
    assert verdict(_score(10, 1), TextConfig(filter="notext")) == R.HAS_TEXT


def test_heavy_needs_a_page() -> None:
    assert is_heavy(_score(400, 12, page=0.56), TextConfig())
    assert not is_heavy(_score(400, 12, page=0.3), TextConfig())  # a dark UI full of text: light, not heavy
    assert is_light(_score(400, 12, page=0.3), TextConfig())
    assert is_heavy(_score(400, 12, page=0.3), TextConfig(heavy_min_page=0.2))


def test_thresholds_are_config() -> None:
    strict = TextConfig(light_min_chars=50)
    assert not is_light(_score(20, 2), strict) and is_light(_score(20, 2), TextConfig())
    assert not is_heavy(_score(400, 3), TextConfig(heavy_min_lines=4)) and is_heavy(_score(400, 3), TextConfig())
