"""Project URLs: each app owns its own."""

from django.contrib import admin
from django.urls import include, path

from rooms.urls import direct_urlpatterns

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("ops.urls")),
    path("rooms/", include("rooms.urls")),
    path("dm/", include((direct_urlpatterns, "dm"), namespace="dm")),
    path("notifications/", include("notifications.urls")),
    path("search/", include("search.urls")),
    path("", include("chatapp.urls")),
]
