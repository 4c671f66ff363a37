"""``{{ message.body|markdown }}``: a message body as the room shows it (rooms.formatting);
``{{ message.body|plaintext }}``: the same as plain text on one line (reply quotes)."""

from django import template
from django.utils.safestring import SafeString, mark_safe

from rooms.formatting import body_html, body_text

register = template.Library()


@register.filter
def markdown(body: str) -> SafeString:
    """The sanitised HTML of ``body``; nh3 has removed anything unsafe, so it is marked safe."""
    return mark_safe(body_html(body))


@register.filter
def plaintext(body: str) -> str:
    """What ``markdown`` shows, as text (escaped by the template like any other text)."""
    return body_text(body)
