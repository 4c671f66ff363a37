"""``{{ message.body|markdown }}``: a message body as the room shows it (rooms.formatting)."""

from django import template
from django.utils.safestring import SafeString, mark_safe

from rooms.formatting import body_html

register = template.Library()


@register.filter
def markdown(body: str) -> SafeString:
    """The sanitised HTML of ``body``; nh3 has removed anything unsafe, so it is marked safe."""
    return mark_safe(body_html(body))
