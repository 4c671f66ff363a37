"""Safe highlighted excerpts: the text is escaped first, then the sentinels become ``<mark>``."""

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from rooms.formatting import body_text

from .backends import MARK_CLOSE, MARK_OPEN


def snippet_html(text: str) -> SafeString:
    """``text`` as the message reads (``body_text``: ``**bold**`` reads "bold", as on every
    other path that quotes a message), escaped, with its highlighted words in ``<mark>``.

    The sentinels are plain characters to the Markdown renderer and the sanitiser, so they
    come through rendering where the words are.

    Everything a user wrote is escaped before any tag is added, so a ``<script>`` in a message
    stays text. A sentinel typed in the message itself can at worst move a highlight: tags are
    only ever opened when closed and closed when open, so the markup stays balanced.
    """
    out: list[str] = []
    open_ = False
    for char in escape(body_text(text)):
        if char == MARK_OPEN:
            if not open_:
                out.append("<mark>")
                open_ = True
        elif char == MARK_CLOSE:
            if open_:
                out.append("</mark>")
                open_ = False
        else:
            out.append(char)
    if open_:
        out.append("</mark>")
    return mark_safe("".join(out))
