"""Assistants as they were before voice sessions: no voiceSessionConfig yet."""
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list = []

    operations = [
        migrations.CreateModel(
            name="AssistantRecord",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=120)),
                ("slug", models.SlugField(max_length=80, unique=True)),
                ("personality_id", models.CharField(blank=True, max_length=80, verbose_name="personalityId")),
                ("persona", models.CharField(blank=True, max_length=120)),
                ("voice", models.CharField(blank=True, max_length=120, verbose_name="voice id")),
                ("language", models.CharField(default="en", max_length=16)),
                ("tenant_id", models.CharField(blank=True, max_length=80, verbose_name="tenantId")),
                ("system_prompt", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={"ordering": ["name"]},
        ),
    ]
