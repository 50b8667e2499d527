"""Take over the BotWorker model from voicebot, keeping its table and rows.

State only: the table `voicebot_botworker` was made by voicebot.0001 and is
not touched (voicebot.0002 drops the model from voicebot's state).
"""
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("voicesessions", "0005_room_generation_connect_by"),
        ("voicebot", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="BotWorker",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("worker_id", models.CharField(max_length=120, unique=True)),
                        ("hostname", models.CharField(max_length=200)),
                        ("pid", models.PositiveIntegerField()),
                        ("control_url", models.CharField(
                            help_text="Where servers reach this worker (signalling, control).", max_length=300)),
                        ("capacity", models.PositiveSmallIntegerField(default=2)),
                        ("active_sessions", models.PositiveSmallIntegerField(default=0)),
                        ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("heartbeat_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ("stopped_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={"ordering": ["-heartbeat_at"], "db_table": "voicebot_botworker"},
                ),
            ],
            database_operations=[],
        ),
    ]
