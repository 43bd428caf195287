"""Opt-outs from AI training that pages and images declare: `noai`, `noimageai` and friends.

Pages say it in `<meta name="robots" content="noai, noimageai">` or an `X-Robots-Tag` response header;
image responses in `X-Robots-Tag`. A directive may be scoped to one crawler (`X-Robots-Tag: otherbot:
noindex`): scoped directives count only when they name our user agent token. A page that opts out loses
all of its image references at extract (`page_optout`); the download stage applies the image-level rule
with its own, configurable list of directives (default noai, noimageai, noindex, noimageindex).
"""

from __future__ import annotations

from collections.abc import Iterable

PAGE_OPTOUT_DIRECTIVES = frozenset({"noai", "noimageai"})
_VALUED = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})


def directives(values: Iterable[str], agent: str) -> set[str]:
    """The directives that apply to `agent` in robots meta contents or X-Robots-Tag values.

    "noai, noimageai" -> {"noai", "noimageai"}; "otherbot: noindex" -> {} unless agent is "otherbot";
    "curate: noai" -> {"noai"} for agent "curate". Case-insensitive.
    """
    agent = agent.lower()
    found: set[str] = set()
    for value in values:
        scope = None
        for token in value.lower().replace(";", ",").split(","):
            token = token.strip()
            if ":" in token:
                head, _, rest = token.partition(":")
                head = head.strip()
                if head in _VALUED:  # "max-image-preview: large" is a directive with a value, not a scope
                    token = head
                else:
                    scope, token = head, rest.strip()
            if token and (scope is None or scope in (agent, "*")):
                found.update(token.split())
    return found


def page_opts_out(meta_robots: Iterable[str], x_robots_tag: Iterable[str], agent: str) -> bool:
    """True if the page forbids AI use of its images (meta robots or X-Robots-Tag, noai/noimageai)."""
    return bool(directives([*meta_robots, *x_robots_tag], agent) & PAGE_OPTOUT_DIRECTIVES)
