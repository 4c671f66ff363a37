"""The admin's user pages, with the sign-up form's username rules."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from .forms import AdminSignUpForm

User = get_user_model()


class ChatUserAdmin(UserAdmin):
    add_form = AdminSignUpForm


admin.site.unregister(User)
admin.site.register(User, ChatUserAdmin)
