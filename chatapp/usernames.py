"""Usernames that cannot pass for someone else's: no invisible characters, no look-alikes.

A username is NFKC-normalised (Django's ``UsernameField`` does it) before these checks run.
"""

import unicodedata
from functools import cache

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models.functions import Length

# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt): characters that
# render as nothing. Most are format characters (Cf), caught by category too, but the Hangul
# fillers are letters (Lo), so Django's \w username pattern lets them through.
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Controls (C0, C1), format (zero-width, bidi overrides), surrogates, private use, unassigned,
# and separators (spaces, line and paragraph separators).
INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}

# ASCII characters that look alike, mapped to one of them as in Unicode's confusables.txt
# (0 → O, 1 and I → l); case is folded afterwards, so O and o meet too.
ASCII_PROTOTYPES = {"0": "O", "1": "l", "I": "l", "|": "l"}


def is_invisible(char: str) -> bool:
    """Whether ``char`` is a control, format, separator or default-ignorable character."""
    if unicodedata.category(char) in INVISIBLE_CATEGORIES:
        return True
    point = ord(char)
    return any(low <= point <= high for low, high in DEFAULT_IGNORABLE)


@cache
def prototype(char: str) -> str:
    """The ASCII character ``char`` is confusable with, or ``char`` itself.

    confusable_homoglyphs keeps Unicode's confusables.txt as pairs in both directions, so a
    non-ASCII character's ASCII partner is its prototype there (Cyrillic U+043E → o).
    """
    if char.isascii():
        return ASCII_PROTOTYPES.get(char, char)
    # Imported here: the table takes a twentieth of a second to load, at every process start
    # otherwise, and only sign-up and the admin check usernames.
    from confusable_homoglyphs.confusables import confusables_data

    partners = [h["c"].strip("\u200e\u200f") for h in confusables_data.get(char, ())]
    ascii_partners = sorted(ASCII_PROTOTYPES.get(p, p) for p in partners if p.isascii() and p)
    return ascii_partners[0] if ascii_partners else char


def skeletons(username: str) -> tuple[str, str]:
    """What ``username`` looks like, ignoring case: look-alikes mapped to one prototype.

    Two readings, as case folding and look-alikes interfere: mapped before folding, capital I
    meets l (biII, bill); folded before mapping, a capital look-alike meets its small ASCII
    letter (Cyrillic U+0410 DMIN folds to a Cyrillic small a, whose prototype is a: admin).
    Two usernames are confusable when either reading is equal.
    """
    text = unicodedata.normalize("NFKC", username)
    mapped_first = "".join(prototype(c) for c in text).casefold()
    folded_first = "".join(prototype(c) for c in text.casefold()).casefold()
    return mapped_first, folded_first


def confusable(first: str, second: str) -> bool:
    """Whether two usernames look alike (ignoring case)."""
    return any(a == b for a, b in zip(skeletons(first), skeletons(second), strict=True))


def username_visible_validate(username: str) -> None:
    """Refuse a username with an invisible or control character."""
    if any(is_invisible(c) for c in username):
        raise ValidationError(
            "Usernames cannot contain invisible, spacing or control characters.",
            code="invisible",
        )


def username_distinct_validate(username: str) -> None:
    """Refuse a username that looks like an existing one (ignoring case)."""
    # Look-alikes map one character to one, so only names of the same length can match.
    same_length = (
        get_user_model()
        .objects.annotate(length=Length("username"))
        .filter(length=len(username))
        .values_list("username", flat=True)
    )
    for existing in same_length.iterator():
        if existing != username and confusable(existing, username):
            raise ValidationError(
                "This username is too similar to an existing one (%(existing)s).",
                code="confusable",
                params={"existing": existing},
            )
