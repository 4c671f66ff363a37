"""The search benchmark's data: a vocabulary with real English frequencies, messages, queries.

The vocabulary is every word of the comments in the installed Django's source, with how often
each occurs: English prose about software, as a team chat is, with its natural long tail
(~5,000 words, "the" most frequent). Messages draw 3 to 30 words from it by frequency.
"""

import random
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path

COMMENT_RE = re.compile(r"^\s*# ?(.*)$", re.M)
WORD_RE = re.compile(r"[A-Za-z]{2,}")


def vocabulary() -> tuple[list[str], list[int]]:
    """``(words, cumulative weights)`` from the comments of Django's own source."""
    import django

    counts: Counter[str] = Counter()
    for path in sorted(Path(django.__file__).parent.rglob("*.py")):
        for comment in COMMENT_RE.findall(path.read_text(errors="ignore")):
            counts.update(word.lower() for word in WORD_RE.findall(comment))
    words = sorted(counts, key=lambda w: (-counts[w], w))
    return words, list(accumulate(counts[w] for w in words))


def message_bodies(count: int, seed: int = 1) -> Iterator[str]:
    """``count`` message texts of 3 to 30 words (mostly short), by word frequency."""
    words, cumulative = vocabulary()
    rng = random.Random(seed)
    lengths = [min(30, max(3, int(rng.expovariate(1 / 10)))) for _ in range(count)]
    drawn = iter(rng.choices(words, cum_weights=cumulative, k=sum(lengths)))
    for length in lengths:
        yield " ".join(next(drawn) for _ in range(length)).capitalize()


def message_rows(
    count: int, room_ids: list[int], author_ids: list[int], seed: int = 1
) -> Iterator[tuple]:
    """Rows of ``rooms_message``: (room_id, author_id, seq, changed_seq, body, created), one
    message a few seconds after the other over about a year, seqs gapless per room."""
    rng = random.Random(seed)
    seqs = dict.fromkeys(room_ids, 0)
    created = datetime(2025, 1, 1, tzinfo=UTC)
    for body in message_bodies(count, seed):
        room = rng.choice(room_ids)
        seqs[room] += 1
        created += timedelta(seconds=rng.randint(1, 60))
        yield room, rng.choice(author_ids), seqs[room], seqs[room], body, created


def queries(count: int, seed: int = 2) -> list[str]:
    """``count`` searches as people type them: a word, two words, a word being typed (its
    first letters), a word and a prefix. Words are drawn by frequency among those that are
    not stop-words, so common words (tens of thousands of matches) are well represented."""
    from search.stopwords import ENGLISH

    words, cumulative = vocabulary()
    rng = random.Random(seed)

    def word() -> str:
        while True:
            picked = rng.choices(words, cum_weights=cumulative)[0]
            if picked not in ENGLISH and len(picked) > 2:
                return picked

    shapes = [
        lambda: word(),
        lambda: f"{word()} {word()}",
        lambda: word()[: rng.randint(3, 5)],
        lambda: f"{word()} {word()[: rng.randint(3, 5)]}",
    ]
    return [shapes[i % len(shapes)]() for i in range(count)]
