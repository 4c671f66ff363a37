from django.urls import path

from . import views

app_name = "rooms"
urlpatterns = [
    path("", views.room_list, name="list"),
    path("<str:slug>/", views.room_detail, name="detail"),
    path("<str:slug>/members/", views.room_members, name="members"),
]

# Direct conversations live under /dm/ (included by chatproject/urls.py).
direct_urlpatterns = [
    path("", views.direct_start, name="direct_start"),
    path("<str:username>/", views.direct_open, name="direct"),
]
