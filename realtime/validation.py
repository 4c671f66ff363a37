"""Checks on client frames that run before anything reaches the database.

PostgreSQL refuses a NUL in text and both databases refuse integers past 64 bits; the driver's
exception would otherwise surface from deep inside a handler. Checking here answers the client
with a clear error and keeps the stored text the same on SQLite and PostgreSQL.
"""

import re
from typing import Any

INT64_MAX = 2**63 - 1

# C0 and C1 control characters (and DEL) except tab and newline, and lone surrogates (which no
# UTF-8 encoder accepts). Carriage returns are turned into newlines before this check.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# Characters that draw nothing: Unicode whitespace, the Default_Ignorable_Code_Point set
# (zero-width space and joiners, soft hyphen, bidirectional marks, variation selectors, tags,
# Hangul fillers; DerivedCoreProperties.txt) and the blank braille pattern, which renders as
# a space. A body made only of these looks empty and gets ``empty_body``.
_INVISIBLE = re.compile(
    r"[\s\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]*"
)


class ClientError(Exception):
    """A field of a client frame that the server refuses (code and human text)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def int64_or_none(value: Any, *, minimum: int = 0) -> int | None:
    """``value`` if it is a JSON integer the database can store (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if not minimum <= value <= INT64_MAX:
        return None
    return value


def text_clean(text: str, *, max_length: int) -> str:
    """A message body as stored: newlines normalised, trimmed, checked.

    Control characters are refused rather than stripped, so what is stored is exactly what the
    user sees in their composer, and a client that sends them learns why.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _CONTROL.search(text):
        raise ClientError(
            "control_character",
            "Messages may not contain control characters other than newline and tab.",
        )
    text = text.strip()
    if _INVISIBLE.fullmatch(text):
        raise ClientError("empty_body", "The message is empty.")
    if len(text) > max_length:
        raise ClientError("body_too_long", f"Messages are limited to {max_length} characters.")
    return text
