"""Add the assistant's voiceSessionConfig as nullable columns.

Nullable first so existing rows read as "has no config" until 0003 fills it in.
"""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("assistants", "0001_initial")]

    operations = [
        migrations.AddField("assistantrecord", "voice_enabled", models.BooleanField(null=True)),
        migrations.AddField("assistantrecord", "voice_persistence", models.PositiveIntegerField(null=True)),
        migrations.AddField("assistantrecord", "voice_room_privacy", models.CharField(max_length=8, null=True)),
        migrations.AddField("assistantrecord", "voice_max_duration", models.PositiveIntegerField(null=True)),
        migrations.AddField("assistantrecord", "voice_auto_start", models.BooleanField(null=True)),
    ]
