"""Create the demo admin, demo user and demo assistant. Safe to run again.

Creates what is missing and leaves what exists alone: scripts/serve.sh runs
it on every start, and a restart must never undo what an admin changed (a
rollback to 0 %, an edited prompt, a new password).
"""
from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from assistants.models import AssistantRecord, VoiceRollout

# "The answer first in a few words": the voice starts at the answer's first whole sentence or
# clause, and a first sentence that restates the question is most of the user's wait. On
# bench/llm_eval_set.json's 96 items it cut the tokens before the first words spoken from 9 to 5
# (p50; 593 -> 355 ms of the local model's writing) at the same accuracy: docs/benchmarks.md.
DEMO_PROMPT = ("You are Pearl, a friendly voice assistant. Answer in one or two short spoken "
               "sentences, the answer first in a few words. You can keep notes for the user with your tools.")


class Command(BaseCommand):
    help = ("Create the demo admin, demo user and assistant 'pearl' if missing; the rollout starts from "
            "USE_PIPECAT_VOICE and VOICE_ROLLOUT_PERCENTAGE the first time and is never overwritten.")

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
        rollout = VoiceRollout.load()  # created from the settings if missing, else as the admin left it
        self.stdout.write(self.style.SUCCESS(
            f"Demo ready: admin/{'<DEMO_PASSWORD>' if 'DEMO_PASSWORD' in os.environ else password} "
            f"(staff), demo/{'<DEMO_PASSWORD>' if 'DEMO_PASSWORD' in os.environ else password}, "
            f"assistant '{assistant.slug}', rollout {rollout.percentage}%."))
