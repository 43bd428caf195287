import math

import pytest

from curate import reasons as R
from curate.config import TextConfig
from curate.filters.text import describe_rules, is_heavy, is_light, verdict
from curate.records import TextScore


def _score(chars: int, lines: int, page: float = 0.9, extent: float = 0.0) -> TextScore:
    return TextScore(boxes=lines, area_fraction=0.1, words=chars // 5, chars=chars, mean_confidence=0.9, lines=lines,
                     text="x" * chars, ms=1.0, page=page, extent=extent)


@pytest.mark.parametrize(
    ("chars", "lines", "light", "heavy"),
    [(0, 0, False, False), (3, 1, False, False), (4, 1, True, False), (59, 6, True, False), (60, 1, True, True),
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


def test_heavy_needs_a_page_below_a_pages_worth_of_text() -> None:
    chars = TextConfig().heavy_dense_chars - 1
    assert is_heavy(_score(chars, 12, page=0.56), TextConfig())
    assert not is_heavy(_score(chars, 12, page=0.3), TextConfig())  # text on a scene: light, not heavy
    assert is_light(_score(chars, 12, page=0.3), TextConfig())
    assert is_heavy(_score(chars, 12, page=0.3), TextConfig(heavy_min_page=0.2))


def test_lines_seen_but_not_read_are_text() -> None:
    """A script the recognizer cannot read: nothing read, but text-shaped lines found. Light by extent; heavy by
    extent only where the heavy rule counts extent."""
    config = TextConfig()
    unread = _score(0, 3, extent=config.light_min_extent)
    assert is_light(unread, config) and not is_light(unread._replace(extent=config.light_min_extent - 0.1), config)
    assert verdict(unread, TextConfig(filter="notext")) == R.HAS_TEXT
    page = _score(0, 20, page=0.9, extent=300.0)
    assert is_heavy(page, TextConfig(heavy_min_extent=200.0)) and not is_heavy(page, TextConfig(heavy_min_extent=400.0))
    assert not is_heavy(page._replace(page=0.2), TextConfig(heavy_min_extent=200.0))  # extent still needs a page
    assert not is_light(page, TextConfig(light_min_extent=math.inf))


def test_a_pages_worth_of_text_is_heavy_on_any_background() -> None:
    """An old book scan: its yellowed, foxed paper is not flat, but hundreds of characters in many lines are a
    document; as many characters in a few lines (a sign-covered street) are not."""
    config = TextConfig()
    foxed = _score(config.heavy_dense_chars, config.heavy_dense_lines, page=0.3)
    assert is_heavy(foxed, config)
    assert not is_heavy(foxed._replace(lines=config.heavy_dense_lines - 1), config)
    assert not is_heavy(foxed._replace(chars=config.heavy_dense_chars - 1), config)
    assert "heavy keeps" in describe_rules(config) and f">= {config.heavy_dense_chars} characters" in describe_rules(
        config)


def test_thresholds_are_config() -> None:
    strict = TextConfig(light_min_chars=50)
    assert not is_light(_score(20, 2), strict) and is_light(_score(20, 2), TextConfig())
    assert not is_heavy(_score(400, 3), TextConfig(heavy_min_lines=4)) and is_heavy(_score(400, 3), TextConfig())
