from django.contrib import admin, messages
from django.utils.safestring import SafeString, mark_safe

from . import services
from .formatting import body_html
from .models import Membership, Message, Reaction, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    raw_id_fields = ["user"]
    extra = 0


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "slug", "last_seq", "last_activity", "created_by"]
    list_filter = ["kind"]
    search_fields = ["name", "slug"]
    readonly_fields = ["last_seq", "last_activity", "direct_key"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["room", "seq", "author", "created", "edited", "deleted", "formatted"]
    readonly_fields = ["formatted"]
    list_filter = ["room__kind"]
    search_fields = ["body", "author__username"]
    raw_id_fields = ["author", "reply_to"]
    list_select_related = ["room", "author"]
    actions = ["delete_for_everyone"]

    # Every change of a message goes through rooms.services, which numbers it with the room's
    # seq and tells every client; a plain admin edit or row deletion would do neither.
    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="message")
    def formatted(self, message: Message) -> SafeString:
        """The body as the room shows it (sanitised by rooms.formatting, so safe as markup)."""
        return mark_safe(body_html(message.body))

    @admin.action(description="Delete the selected messages for everyone")
    def delete_for_everyone(self, request, queryset) -> None:
        done = 0
        for message in queryset.filter(deleted__isnull=True):
            services.message_delete(message=message, user=request.user)
            done += 1
        self.message_user(request, f"{done} messages deleted.", messages.SUCCESS)


@admin.register(Reaction)
class ReactionAdmin(admin.ModelAdmin):
    list_display = ["message", "user", "emoji", "created"]
    raw_id_fields = ["message", "user"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False
