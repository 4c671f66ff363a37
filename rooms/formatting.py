"""Message formatting: a small, safe Markdown subset rendered to sanitised HTML.

Every path that shows a message (live frames, catch-up, the room page's history, mention
notifications, the admin) calls ``body_html`` (or ``body_text`` for plain-text places), so they
all show the same result. The stored body stays the text the user wrote.

Two layers, each enough on its own for the rules that matter most: markdown-it-py renders with
raw HTML off and only the rules of the subset switched on, and only http/https/mailto links;
nh3 (the Rust sanitiser ammonia) then keeps only the subset's tags, the ``href`` of links with
those schemes, and sets ``rel`` on every link. A bug or a new feature in one layer cannot let a
script or an event handler through the other.
"""

import html
import re
from functools import cache, lru_cache
from typing import TYPE_CHECKING

import nh3

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

LINK_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"

# The subset. Headings, rules, tables, images and raw HTML are left out: in a chat line,
# "# 1" or "---" is text, and an image would load a third party's URL in every reader's browser.
_BLOCK_RULES = ["code", "fence", "blockquote", "list", "paragraph"]
_INLINE_RULES = [
    "text",
    "linkify",
    "newline",
    "escape",
    "backticks",
    "strikethrough",
    "emphasis",
    "link",
    "autolink",
    "entity",
]
_TAGS = frozenset(
    {
        "p",
        "br",
        "strong",
        "em",
        "s",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "a",
    }
)
_ATTRIBUTES = {"a": {"href"}, "ol": {"start"}}
# Renders at most this many distinct bodies from memory (history pages and catch-up show the
# same recent messages again and again; a body is at most CHAT_MESSAGE_MAX_LENGTH characters).
CACHE_SIZE = 4096


def _link_allowed(url: str) -> bool:
    """Only absolute http, https and mailto URLs: never javascript:, data:, relative paths."""
    scheme, colon, _ = url.strip().partition(":")
    return bool(colon) and scheme.lower() in LINK_SCHEMES


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href" and not _link_allowed(value):
        return None
    return value


@cache
def _markdown() -> "MarkdownIt":
    """The parser, made on first use: importing markdown-it-py is 16-32 ms of a worker's start,
    all of it in the window in which a restart serves no one (bench S5, docs/performance.md),
    and most chat lines never reach it (``_PLAIN``)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "breaks": True})
    md.disable([rule for rules in md.get_all_rules().values() for rule in rules], True)
    md.enable(["normalize", "block", "inline", "linkify", "text_join"])  # the core chain
    md.enable(_BLOCK_RULES + _INLINE_RULES + ["balance_pairs", "fragments_join"])
    md.validateLink = _link_allowed
    # Bare e-mail addresses stay text: only links a person wrote as such, or http(s) URLs.
    md.linkify.set({"fuzzy_email": False})
    return md


_CLEANER = nh3.Cleaner(
    tags=set(_TAGS),
    attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
    attribute_filter=_attribute_filter,
    link_rel=LINK_REL,
    url_schemes=set(LINK_SCHEMES),
    url_relative="deny",
    strip_comments=True,
)
_TEXT_CLEANER = nh3.Cleaner(tags=set(), clean_content_tags=set(), attributes={})


# One line of plain words: ASCII letters, digits, spaces and ``.,?!'-``, starting and ending
# with no space, not starting as a numbered list does (``1.`` then a space or the end). No rule
# of the subset acts on these, and none is escaped; the linkifier acts only on a link it finds
# (``example.com``), so it is asked whenever the line has a dot. Such a line renders as itself
# in a paragraph: most chat lines are such, and skip the parser (bench S4, where rendering was a
# fifth of storing a message; tests/test_formatting.py compares both ways).
_PLAIN = re.compile(r"(?![0-9]+\.(?: |$))[A-Za-z0-9](?:[A-Za-z0-9 .,?!'-]*[A-Za-z0-9.,?!'])?")


@lru_cache(maxsize=CACHE_SIZE)
def body_html(body: str) -> str:
    """The sanitised HTML of a message body (markdown subset); safe to insert as markup."""
    if _PLAIN.fullmatch(body) and ("." not in body or not _markdown().linkify.test(body)):
        return f"<p>{body}</p>"
    return _rendered(body)


def _rendered(body: str) -> str:
    return _CLEANER.clean(_markdown().render(body)).strip()


def body_text(body: str) -> str:
    """What ``body_html`` shows, as plain text on one line (notifications, excerpts)."""
    return " ".join(html.unescape(_TEXT_CLEANER.clean(body_html(body))).split())
