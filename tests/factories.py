"""Factories for users, rooms and messages."""

import itertools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from rooms.models import Message, Room
from rooms.services import message_create, room_create

PASSWORD = "correct-horse-battery-staple"
_numbers = itertools.count(1)


def user_create(username: str | None = None) -> AbstractBaseUser:
    """A user with the shared test password."""
    username = username or f"user{next(_numbers)}"
    return get_user_model().objects.create_user(username=username, password=PASSWORD)


def room_make(name: str | None = None, created_by: AbstractBaseUser | None = None) -> Room:
    """A room through the service, as the product makes them."""
    return room_create(name=name or f"Room {next(_numbers)}", created_by=created_by)


def messages_make(room: Room, author: AbstractBaseUser, count: int) -> list[Message]:
    """``count`` messages through the service."""
    return [message_create(room=room, author=author, body=f"message {i}") for i in range(count)]
