"""Back-fill voiceSessionConfig defaults (enabled, 300 s persistence, private, 3600 s maxDuration, no autoStart).

Idempotent: it only fills fields that are still empty, so running it twice,
or after an admin changed a value, changes nothing that is already set.
"""
from django.db import migrations

DEFAULTS = {
    "voice_enabled": True,
    "voice_persistence": 300,
    "voice_room_privacy": "private",
    "voice_max_duration": 3600,
    "voice_auto_start": False,
}


def backfill(apps, schema_editor):
    AssistantRecord = apps.get_model("assistants", "AssistantRecord")
    for field, value in DEFAULTS.items():
        AssistantRecord.objects.filter(**{f"{field}__isnull": True}).update(**{field: value})


class Migration(migrations.Migration):
    dependencies = [("assistants", "0002_voice_session_config_fields")]

    # Backwards there is nothing to undo: 0002's reverse drops the columns.
    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
