"""Checks on what a notification may carry."""

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

LINK_MAX_LENGTH = 500


def validate_link(value: str) -> None:
    """Allow only a relative URL (``/rooms/x/``, ``page?q=1``) or an absolute http(s) URL.

    ``javascript:``, ``data:`` and the like would run in the user's page when clicked, and a
    scheme-relative ``//host`` hides an off-site link behind a relative-looking one.
    """
    if not value:
        return
    if len(value) > LINK_MAX_LENGTH:
        raise ValidationError(f"A link is at most {LINK_MAX_LENGTH} characters.", code="length")
    # Browsers ignore tabs, newlines and leading spaces in URLs ("java\tscript:"), so any
    # whitespace or control character is refused rather than reasoned about.
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value) or "\\" in value:
        raise ValidationError("A link may not contain spaces, control characters or backslashes.")
    parts = urlsplit(value)
    if parts.scheme:
        if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
            raise ValidationError(
                "A link must be relative (/path) or start with http:// or https://.",
                code="scheme",
            )
    elif parts.netloc or value.startswith("//"):
        raise ValidationError("A relative link must not name a host (//host).", code="netloc")
