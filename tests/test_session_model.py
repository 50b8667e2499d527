"""The session status machine, enforced in one place."""
from __future__ import annotations

import itertools

import pytest
from django.db import IntegrityError, transaction

from voicesessions import rooms
from voicesessions.models import ALLOWED_TRANSITIONS, IllegalTransition, SessionStatus, VoiceSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def room(user):
    return rooms.get_or_create_room(user).room


def _session(user, room, status: str) -> VoiceSession:
    session = VoiceSession.objects.create(user=user, room=room, status=status)
    return VoiceSession.objects.get(pk=session.pk)


@pytest.mark.parametrize("current, target", list(itertools.product(SessionStatus.values, SessionStatus.values)))
def test_every_pair_of_statuses(user, room, current, target):
    session = _session(user, room, current)
    if target in ALLOWED_TRANSITIONS[current]:
        session.transition_to(target, reason="test")
        session.refresh_from_db()
        assert session.status == target
    else:
        with pytest.raises(IllegalTransition) as excinfo:
            session.transition_to(target)
        assert f"'{current}' to '{target}'" in str(excinfo.value)
        session.refresh_from_db()
        assert session.status == current


def test_plain_save_cannot_skip_the_rules(user, room):
    session = _session(user, room, SessionStatus.ENDED)
    session.status = SessionStatus.ACTIVE
    with pytest.raises(IllegalTransition):
        session.save()


def test_a_stale_copy_loses_the_race(user, room):
    first = _session(user, room, SessionStatus.ACTIVE)
    second = VoiceSession.objects.get(pk=first.pk)
    first.transition_to(SessionStatus.PAUSED)
    with pytest.raises(IllegalTransition):
        second.transition_to(SessionStatus.INACTIVE)  # it still believes the session is active... and loses
    assert VoiceSession.objects.get(pk=first.pk).status == SessionStatus.PAUSED


def test_timestamps_follow_the_status(user, room):
    session = _session(user, room, SessionStatus.CONNECTING)
    assert session.ends_at == session.created_at + __import__("datetime").timedelta(seconds=3600)
    session.transition_to(SessionStatus.ACTIVE)
    assert session.started_at is not None
    session.transition_to(SessionStatus.ENDED, reason="user_left")
    session.refresh_from_db()
    assert session.ended_at is not None and session.end_reason == "user_left"


def test_one_live_session_per_room_is_a_database_rule(user, room):
    _session(user, room, SessionStatus.ACTIVE)
    with pytest.raises(IntegrityError), transaction.atomic():
        VoiceSession.objects.create(user=user, room=room, status=SessionStatus.CONNECTING)
    VoiceSession.objects.create(user=user, room=room, status=SessionStatus.ENDED)  # history is fine


def test_room_name_is_derived_from_the_user(user, room):
    room.name = "voice-somebody-else"
    room.save()
    room.refresh_from_db()
    assert room.name == f"voice-{user.pk}"
