import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def existing_members_read_all(apps, schema_editor):
    """Members from before read markers start with everything read: the first-visit rule."""
    Membership = apps.get_model("rooms", "Membership")
    Room = apps.get_model("rooms", "Room")
    Membership.objects.update(
        last_read_seq=Subquery(Room.objects.filter(pk=OuterRef("room_id")).values("last_seq")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("rooms", "0003_change_contract_and_private_rooms"),
    ]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="last_read_seq",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.RunPython(existing_members_read_all, migrations.RunPython.noop),
        # The (room, seq) and (room, changed_seq) indexes serve lookups by room; a lone room
        # index made PostgreSQL scan whole rooms to count unread messages (models.Message.room).
        migrations.AlterField(
            model_name="message",
            name="room",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="rooms.room",
            ),
        ),
    ]
