import pytest

from curate.filters.optout import directives, page_opts_out


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["noai, noimageai"], {"noai", "noimageai"}),
        (["NoIndex,NoFollow"], {"noindex", "nofollow"}),
        (["otherbot: noai"], set()),  # scoped to another crawler
        (["curate: noai, nofollow"], {"noai", "nofollow"}),  # scoped to us: the scope covers what follows
        (["googlebot: noindex", "noimageai"], {"noimageai"}),
        (["max-image-preview: large, noai"], {"max-image-preview", "noai"}),
        (["*: noai"], {"noai"}),
        ([""], set()),
    ],
)
def test_directives(values: list[str], expected: set[str]) -> None:
    assert directives(values, "curate") == expected


def test_page_opt_out_needs_an_ai_directive() -> None:
    assert page_opts_out(["noai"], [], "curate")
    assert page_opts_out([], ["noimageai"], "curate")
    assert not page_opts_out(["noindex, nofollow"], ["noarchive"], "curate")  # not about AI: images stay
    assert not page_opts_out([], ["otherbot: noai"], "curate")
