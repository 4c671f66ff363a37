from django.contrib import admin

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
    list_display = ["room", "seq", "author", "created", "edited", "deleted", "body"]
    list_filter = ["room__kind"]
    search_fields = ["body", "author__username"]
    raw_id_fields = ["author", "reply_to"]
    readonly_fields = ["seq", "changed_seq", "client_id"]
    list_select_related = ["room", "author"]


@admin.register(Reaction)
class ReactionAdmin(admin.ModelAdmin):
    list_display = ["message", "user", "emoji", "created"]
    raw_id_fields = ["message", "user"]
