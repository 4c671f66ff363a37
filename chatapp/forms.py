"""Account forms: sign-up with usernames that cannot pass for someone else's."""

from django.contrib.auth.forms import AdminUserCreationForm, UserCreationForm

from .usernames import username_distinct_validate, username_visible_validate


class UsernameRulesMixin:
    """Refuses invisible characters and look-alikes of existing usernames.

    The field has already normalised the username to NFKC (Django's ``UsernameField``).
    """

    def clean_username(self) -> str:
        username = super().clean_username()
        if not username:  # already refused (taken, differing only in case)
            return username
        username_visible_validate(username)
        username_distinct_validate(username)
        return username


class SignUpForm(UsernameRulesMixin, UserCreationForm):
    """The public sign-up form."""


class AdminSignUpForm(UsernameRulesMixin, AdminUserCreationForm):
    """The admin's "add user" form, with the same username rules."""
