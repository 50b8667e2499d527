"""Shared fixtures: users, API clients, an assistant."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from assistants.models import AssistantRecord, VoiceRollout


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Rate-limit counters live in the process's cache: start every test with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def make_user(db):
    def make(username: str = "alice", **extra):
        return get_user_model().objects.create_user(username=username, password="pw-" + username, **extra)
    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("bob")


@pytest.fixture
def api(user) -> APIClient:
    """An API client signed in as `user` (session auth, like the browser)."""
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def other_api(other_user) -> APIClient:
    client = APIClient()
    client.force_login(other_user)
    return client


@pytest.fixture
def assistant(db) -> AssistantRecord:
    VoiceRollout.load()
    return AssistantRecord.objects.create(name="Pearl", slug="pearl", personality_id="pearl", persona="Pearl",
                                          voice="default", system_prompt="Be brief.")
