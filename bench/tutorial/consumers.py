"""The Channels tutorial's ChatConsumer, speaking the product's frame shapes."""

import itertools
import json
from datetime import UTC, datetime

from channels.generic.websocket import AsyncWebsocketConsumer

_ids = itertools.count(1)
_users = itertools.count(1)


class ChatConsumer(AsyncWebsocketConsumer):
    """Joins the room's group on connect and group_sends every message it receives."""

    async def connect(self) -> None:
        """Called when the socket opens: join the room's group and accept."""
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        self.user = f"anon{next(_users)}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code: int) -> None:
        """Called when the socket closes: leave the room's group."""
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame: send it to the whole group, as the tutorial does."""
        text_data_json = json.loads(text_data or "{}")
        message_id = next(_ids)
        await self.channel_layer.group_send(
            self.room_group_name,
            {
                "type": "chat.message",
                "id": message_id,
                "user": self.user,
                "body": text_data_json["body"],
                "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            },
        )

    async def chat_message(self, event: dict) -> None:
        """Called once per socket for each group message: serialise and send it."""
        await self.send(
            text_data=json.dumps(
                {
                    "type": "message",
                    "id": event["id"],
                    "seq": event["id"],
                    "room": self.room_name,
                    "user": event["user"],
                    "body": event["body"],
                    "created": event["created"],
                }
            )
        )
