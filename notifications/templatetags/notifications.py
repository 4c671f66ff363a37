"""``{% notifications_bell %}``: the header's bell with the user's unread count."""

from typing import Any

from django import template

from .. import selectors

register = template.Library()


@register.inclusion_tag("notifications/bell.html", takes_context=True)
def notifications_bell(context: template.Context) -> dict[str, Any]:
    """The bell for the logged-in user (nothing for anonymous visitors)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"show": False}
    return {"show": True, "unread": selectors.unread_count(user=user)}
