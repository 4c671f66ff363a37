from django.contrib import admin

from .models import Message, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "last_seq", "last_activity", "created_by"]
    search_fields = ["name", "slug"]
    readonly_fields = ["last_seq", "last_activity"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["room", "seq", "author", "created", "body"]
    list_filter = ["room"]
    search_fields = ["body", "author__username"]
    raw_id_fields = ["author"]
    list_select_related = ["room", "author"]
