"""The full-text index of messages: FTS5 on SQLite, a tsvector column and GIN index on
PostgreSQL (search/schema.py)."""

from django.db import migrations

from search import schema


def forwards(apps, schema_editor):
    schema.index_create(schema_editor.connection)


def backwards(apps, schema_editor):
    schema.index_drop(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("rooms", "0003_change_contract_and_private_rooms")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
