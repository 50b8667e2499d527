"""Teardown after the persistence window, maxDuration, and survival across a restart."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from voicesessions import rooms, sessions, teardown
from voicesessions.models import RoomState, SessionStatus, VoiceRoom, VoiceSession

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def _joined(user, persistence: int = 300) -> VoiceSession:
    room = rooms.get_or_create_room(user).room
    session = sessions.join_bot(user, room, assistant=None, params={"sessionPersistence": persistence}).session
    sessions.change_status(session, SessionStatus.ACTIVE, reason="bot_joined")
    return session


def test_nothing_happens_before_the_deadline(user):
    session = _joined(user)
    rooms.leave_room(user, teardown_delay=60)
    assert teardown.sweep_due(timezone.now() + dt.timedelta(seconds=59)) == {"rooms": 0, "sessions": 0}
    session.refresh_from_db()
    assert session.status == SessionStatus.INACTIVE


def test_room_and_session_torn_down_after_the_window(user):
    session = _joined(user)
    rooms.leave_room(user, teardown_delay=60)
    assert teardown.sweep_due(timezone.now() + dt.timedelta(seconds=61))["rooms"] == 1
    session.refresh_from_db()
    room = VoiceRoom.objects.get(user=user)
    assert session.status == SessionStatus.ENDED and session.end_reason == "persistence_elapsed"
    assert room.state == RoomState.DELETED and room.teardown_at is None and room.torn_down_at
    assert session.events.last().type == "voice.session.end"
    # a second sweep (another process) finds nothing left to do
    assert teardown.sweep_due(timezone.now() + dt.timedelta(seconds=120))["rooms"] == 0


def test_coming_back_inside_the_window_keeps_room_and_session(user):
    session = _joined(user)
    rooms.leave_room(user, teardown_delay=60)
    grant = rooms.get_or_create_room(user)
    assert grant.reused is True
    again = sessions.join_bot(user, grant.room, assistant=None, params={})
    assert again.session.pk == session.pk and again.session.status == SessionStatus.CONNECTING
    assert teardown.sweep_due(timezone.now() + dt.timedelta(hours=1))["rooms"] == 0


def test_session_ends_at_max_duration(user):
    room = rooms.get_or_create_room(user).room
    session = sessions.join_bot(user, room, assistant=None, params={}).session
    VoiceSession.objects.filter(pk=session.pk).update(max_duration=10,
                                                      ends_at=session.created_at + dt.timedelta(seconds=10))
    assert teardown.sweep_due(session.created_at + dt.timedelta(seconds=9))["sessions"] == 0
    assert teardown.sweep_due(session.created_at + dt.timedelta(seconds=11))["sessions"] == 1
    session.refresh_from_db()
    assert session.status == SessionStatus.ENDED and session.end_reason == "max_duration"
    assert VoiceRoom.objects.get(user=user).state == RoomState.LIVE  # the room outlives the session


def test_expired_room_is_torn_down(user):
    _joined(user)
    VoiceRoom.objects.filter(user=user).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert teardown.sweep_due()["rooms"] == 1
    assert VoiceRoom.objects.get(user=user).state == RoomState.DELETED


def test_runteardown_command_once(user):
    _joined(user)
    rooms.leave_room(user, teardown_delay=0)  # already torn down synchronously
    VoiceRoom.objects.filter(user=user).update(state=RoomState.LIVE, teardown_at=timezone.now())
    call_command("runteardown", "--once")
    assert VoiceRoom.objects.get(user=user).state == RoomState.DELETED


@pytest.mark.django_db(transaction=False)
def test_deadline_survives_a_restart(tmp_path):
    """Leave in one process, which then exits; a fresh process tears the room down on time."""
    env = {**os.environ, "VOICE_VAR_DIR": str(tmp_path), "SECRET_KEY": "restart-test",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def manage(*args: str, code: str | None = None) -> str:
        cmd = [sys.executable, "manage.py", *args] + (["-c", code] if code else [])
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "-v0")
    manage("shell", code=(
        "from django.contrib.auth.models import User; from voicesessions import rooms, sessions\n"
        "u = User.objects.create_user('carol')\n"
        "room = rooms.get_or_create_room(u).room\n"
        "sessions.join_bot(u, room, assistant=None, params={})\n"
        "rooms.leave_room(u, teardown_delay=1)\n"))
    # The process that scheduled the teardown is gone; nothing sleeps on its behalf. A later
    # sweep tears the room down once the deadline has passed.
    from tests.waiting import wait_until

    def swept() -> str:
        out = manage("runteardown", "--once")
        return out if "1 room(s) torn down" in out else ""
    wait_until(swept, 30, "the sweeper to tear the room down", interval=0.3)
    state = manage("shell", code=(
        "from voicesessions.models import VoiceRoom, VoiceSession\n"
        "print(VoiceRoom.objects.get().state, VoiceSession.objects.get().status)"))
    assert state.split()[-2:] == ["deleted", "ended"]
