"""What a typed search means: its words, which are searched, and which one is a prefix."""

import re
from dataclasses import dataclass

from .stopwords import ENGLISH

# Letters and digits of any script: both backends split words on everything else
# (punctuation, underscores, spaces), so "it's" is "it" and "s" on both.
WORD_RE = re.compile(r"[^\W_]+")
QUERY_MAX_LENGTH = 200
WORDS_MAX = 12
# A one-letter prefix would match a large share of all words: the last word is a prefix from
# this length on.
PREFIX_MIN_LENGTH = 2


class QueryRefused(Exception):
    """A query that cannot be searched; the message says why, to show the user."""


@dataclass(frozen=True)
class ParsedQuery:
    """The words to search, all required; the last one matches as a prefix when ``prefix``."""

    words: tuple[str, ...]
    prefix: bool
    ignored: tuple[str, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """The words as the engines get them: the prefix without a final "y".

        Porter's stemmer (FTS5) turns a final "y" into "i" in "deploy" and "deployed"
        ("deploi") but not in "deployment" ("deploy"): "deploy"* would miss "deployment".
        "deplo"* finds both, on both engines alike.
        """
        last = self.words[-1]
        if self.prefix and last.endswith("y") and len(last) > PREFIX_MIN_LENGTH + 1:
            return (*self.words[:-1], last[:-1])
        return self.words


def query_parse(text: str) -> ParsedQuery:
    """Split ``text`` into the words to search, without stop-words.

    Raises ``QueryRefused`` for a query with no word, one too long, or one made only of
    stop-words (which match nothing: they are not indexed), so the user is told instead of
    seeing an empty page.
    """
    if len(text) > QUERY_MAX_LENGTH:
        raise QueryRefused(f"A search can be at most {QUERY_MAX_LENGTH} characters long.")
    typed = [word.lower() for word in WORD_RE.findall(text)]
    if not typed:
        raise QueryRefused("Type a word to search for.")
    if len(typed) > WORDS_MAX:
        raise QueryRefused(f"A search can have at most {WORDS_MAX} words.")
    # Each word once, at its last place: the word typed last stays last (the prefix).
    words = tuple(reversed(dict.fromkeys(w for w in reversed(typed) if w not in ENGLISH)))
    ignored = tuple(dict.fromkeys(w for w in typed if w in ENGLISH))
    if not words:
        shown = ", ".join(f"“{w}”" for w in ignored)
        raise QueryRefused(
            f"Only common words ({shown}) were typed, and common words are not searched: "
            "add a more specific word."
        )
    last = typed[-1]
    prefix = last == words[-1] and len(last) >= PREFIX_MIN_LENGTH
    return ParsedQuery(words=words, prefix=prefix, ignored=ignored)
