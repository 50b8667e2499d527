"""Create the demo admin, demo user and demo assistant. Safe to run again."""
from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from assistants.models import AssistantRecord, VoiceRollout

DEMO_PROMPT = ("You are Pearl, a friendly voice assistant. Answer in one or two short spoken "
               "sentences. You can keep notes for the user with your tools.")


class Command(BaseCommand):
    help = "Create a demo admin, a demo user, the demo assistant 'pearl' and turn the rollout on."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        password = os.environ.get("DEMO_PASSWORD", "voice-demo")
        admin, created = User.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"})
        if created:
            admin.set_password(password)
            admin.save()
        demo, created = User.objects.get_or_create(username="demo", defaults={"email": "demo@example.com"})
        if created:
            demo.set_password(password)
            demo.save()
        token, _ = Token.objects.get_or_create(user=demo)
        assistant, _ = AssistantRecord.objects.get_or_create(slug="pearl", defaults={
            "name": "Pearl", "personality_id": "pearl", "persona": "Pearl", "voice": "default",
            "language": "en", "system_prompt": DEMO_PROMPT})
        rollout = VoiceRollout.load()
        rollout.use_pipecat_voice = True
        rollout.percentage = 100
        rollout.save()
        self.stdout.write(self.style.SUCCESS(
            f"Demo ready: admin/{'<DEMO_PASSWORD>' if 'DEMO_PASSWORD' in os.environ else password} "
            f"(staff), demo/{'<DEMO_PASSWORD>' if 'DEMO_PASSWORD' in os.environ else password}, "
            f"assistant '{assistant.slug}', rollout {rollout.percentage}%."))
