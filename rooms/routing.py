"""WebSocket URLs of the rooms app, the way urls.py lists its pages."""

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/rooms/<str:slug>/", consumers.RoomConsumer.as_asgi()),
]
