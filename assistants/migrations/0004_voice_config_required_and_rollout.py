"""Make voiceSessionConfig required and validated; add the rollout switch."""
import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("assistants", "0003_backfill_voice_session_config"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            "assistantrecord", "voice_enabled",
            models.BooleanField(default=True, help_text="Use Pipecat voice sessions for this assistant.", verbose_name="enabled")),
        migrations.AlterField(
            "assistantrecord", "voice_persistence",
            models.PositiveIntegerField(default=300, help_text="Seconds the room and bot stay after the user leaves; 0 tears down at once.", validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(86400)], verbose_name="persistence (s)")),
        migrations.AlterField(
            "assistantrecord", "voice_room_privacy",
            models.CharField(choices=[("private", "Private (token required)"), ("public", "Public")], default="private", max_length=8, verbose_name="room privacy")),
        migrations.AlterField(
            "assistantrecord", "voice_max_duration",
            models.PositiveIntegerField(default=3600, help_text="A voice session ends after this many seconds.", validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(86400)], verbose_name="max duration (s)")),
        migrations.AlterField(
            "assistantrecord", "voice_auto_start",
            models.BooleanField(default=False, help_text="Start voice when the assistant page loads.", verbose_name="auto start")),
        migrations.AddField(
            "assistantrecord", "rollout_override",
            models.CharField(choices=[("inherit", "Inherit the global rollout"), ("on", "Force on"), ("off", "Force off")], default="inherit", help_text="Take part in the percentage rollout, or force voice on or off.", max_length=8)),
        migrations.AddConstraint(
            "assistantrecord",
            models.CheckConstraint(condition=models.Q(("voice_persistence__lte", 86400)), name="assistant_persistence_range")),
        migrations.AddConstraint(
            "assistantrecord",
            models.CheckConstraint(condition=models.Q(("voice_max_duration__gte", 1), ("voice_max_duration__lte", 86400)), name="assistant_max_duration_range")),
        migrations.AddConstraint(
            "assistantrecord",
            models.CheckConstraint(condition=models.Q(("voice_room_privacy__in", ["private", "public"])), name="assistant_room_privacy_valid")),
        migrations.AddConstraint(
            "assistantrecord",
            models.CheckConstraint(condition=models.Q(("rollout_override__in", ["inherit", "on", "off"])), name="assistant_rollout_override_valid")),
        migrations.CreateModel(
            name="VoiceRollout",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("use_pipecat_voice", models.BooleanField(default=True, help_text="Master switch. Off turns voice sessions off for every assistant.", verbose_name="USE_PIPECAT_VOICE")),
                ("percentage", models.PositiveSmallIntegerField(default=100, help_text="Share of assistants (0-100) that use voice sessions. 0 is the rollback.", validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(100)])),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("updated_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={"verbose_name": "voice rollout", "verbose_name_plural": "voice rollout",
                     "constraints": [models.CheckConstraint(condition=models.Q(("percentage__lte", 100)), name="rollout_percentage_range")]},
        ),
    ]
