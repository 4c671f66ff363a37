"""Staff compose and send notifications from the admin; a sent notification is read-only."""

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from rooms.models import Room

from .models import Notification
from .selectors import active_user_ids
from .services import notification_clean, notify

AUDIENCES = [
    ("everyone", "Every active user"),
    ("users", "Chosen users"),
    ("room", "The members of a room"),
]


class NotificationSendForm(forms.ModelForm):
    """What to say and to whom; saving it sends the notification."""

    audience = forms.ChoiceField(choices=AUDIENCES, initial="everyone", widget=forms.RadioSelect)
    usernames = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="For chosen users: usernames separated by spaces or commas.",
    )
    target_room = forms.ModelChoiceField(
        queryset=Room.objects.order_by("name"),
        required=False,
        label="Room",
        help_text="For a room: its members are the users who posted there or joined it.",
    )

    class Meta:
        model = Notification
        fields = ["text", "level", "link"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        try:
            notification_clean(
                text=data.get("text", ""), level=data.get("level", ""), link=data.get("link", "")
            )
        except ValidationError as error:
            self.add_error(None, error)
        audience = data.get("audience")
        data["user_ids"] = None
        if audience == "users":
            names = [n for n in re.split(r"[\s,]+", data.get("usernames", "")) if n]
            if not names:
                self.add_error("usernames", "Name at least one user.")
            else:
                user_ids, unknown = active_user_ids(usernames=names)
                if unknown:
                    self.add_error(
                        "usernames", f"Unknown or inactive user(s): {', '.join(unknown)}."
                    )
                data["user_ids"] = user_ids
        elif audience == "room" and data.get("target_room") is None:
            self.add_error("target_room", "Choose a room.")
        return data


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created", "text", "level", "audience", "recipients", "sender"]
    list_filter = ["level", "audience"]
    search_fields = ["text"]
    list_select_related = ["sender"]
    add_fields = ["text", "level", "link", "audience", "usernames", "target_room"]
    shown_fields = ["text", "level", "link", "audience", "room", "recipients", "sender", "created"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        if obj is None:
            kwargs["form"] = NotificationSendForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.add_fields if obj is None else self.shown_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else self.shown_fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A sent notification is history: editing it would not re-send it.
        return False

    def save_model(self, request: HttpRequest, obj: Notification, form: Any, change: bool) -> None:
        """Send through the service (which stores it) instead of saving the bare row."""
        data = form.cleaned_data
        audience = data["audience"]
        result = notify(
            text=data["text"],
            level=data["level"],
            link=data["link"],
            sender=request.user,
            users=data["user_ids"] if audience == "users" else None,
            room=data["target_room"] if audience == "room" else None,
        )
        sent = result.notification
        # The admin logs and redirects to ``obj``: make it the row that notify stored.
        for field in ("id", "created", "audience", "room_id", "sender_id", "recipients"):
            setattr(obj, field, getattr(sent, field))
        self.message_user(
            request, f"Notification sent to {result.recipients} users.", messages.SUCCESS
        )
