"""``{% conversations_sidebar %}``: the user's conversations with their unread counts."""

from typing import Any

from django import template

from .. import selectors

register = template.Library()


@register.inclusion_tag("room/sidebar.html", takes_context=True)
def conversations_sidebar(context: template.Context) -> dict[str, Any]:
    """The sidebar of the logged-in user (nothing for anonymous visitors); two queries."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"show": False}
    match = getattr(request, "resolver_match", None)
    current = match.kwargs.get("slug") if match and match.view_name == "rooms:detail" else None
    return {"show": True, "rooms": selectors.conversations(user=user), "current": current}
