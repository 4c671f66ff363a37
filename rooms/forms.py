import re

from django import forms
from django.contrib.auth import get_user_model

from .models import Room
from .services import DIRECT_MAX_USERS


class RoomForm(forms.Form):
    """The form that creates a room: a name, and whether it is private."""

    name = forms.CharField(max_length=80, strip=True)
    private = forms.BooleanField(
        required=False, help_text="Only members you add can see a private room."
    )

    def clean(self):
        cleaned = super().clean()
        name = cleaned.get("name")
        # Only public names must be unique: a private room's name is nobody else's business.
        if name and not cleaned.get("private"):
            if Room.objects.filter(kind=Room.Kind.PUBLIC, name__iexact=name).exists():
                self.add_error("name", "A room with this name already exists.")
        return cleaned


def _active_users(names: list[str]) -> tuple[list, list[str]]:
    found = {
        user.get_username(): user
        for user in get_user_model().objects.filter(username__in=names, is_active=True)
    }
    return [found[n] for n in names if n in found], [n for n in names if n not in found]


class DirectForm(forms.Form):
    """Start a direct conversation with up to seven other people, by username."""

    usernames = forms.CharField(
        max_length=1200,
        label="Direct message",
        help_text="Usernames, separated by commas or spaces.",
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_usernames(self) -> list:
        text = self.cleaned_data["usernames"]
        names = list(dict.fromkeys(n for n in re.split(r"[\s,]+", text) if n))
        if self.user is not None:
            names = [n for n in names if n != self.user.get_username()]
        if not names:
            raise forms.ValidationError("Name at least one other person.")
        if len(names) > DIRECT_MAX_USERS - 1:
            raise forms.ValidationError(
                f"A conversation has at most {DIRECT_MAX_USERS} people, you included."
            )
        users, unknown = _active_users(names)
        if unknown:
            raise forms.ValidationError(f"No such user: {', '.join(unknown)}.")
        return users


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, label="Add a member")

    def clean_username(self):
        users, unknown = _active_users([self.cleaned_data["username"].strip()])
        if unknown:
            raise forms.ValidationError(f"No such user: {unknown[0]}.")
        return users[0]
