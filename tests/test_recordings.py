"""Recordings (issue 13, section 5): off by default, both sides of a call as one stereo WAV in
Django's storage, played from the session's admin page to staff only, deleted with the session
and by the retention command."""
from __future__ import annotations

import asyncio
import datetime as dt
import wave
from io import StringIO

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from voicebot.recording import SAMPLE_RATE, CallRecording
from voicesessions import rooms
from voicesessions.models import SessionStatus, VoiceSession


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path


@pytest.fixture
def session(user, assistant):
    room = rooms.get_or_create_room(user, assistant=assistant).room
    return VoiceSession.objects.create(user=user, room=room, assistant=assistant, status=SessionStatus.ENDED,
                                       ended_at=timezone.now())


def _stereo(left: float, right: float, seconds: float) -> bytes:
    n = int(SAMPLE_RATE * seconds)
    t = np.arange(n) / SAMPLE_RATE
    frames = np.stack([left * np.sin(2 * np.pi * 440 * t), right * np.sin(2 * np.pi * 660 * t)], axis=1)
    return (frames * 32767).astype("<i2").tobytes()


def _channels(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    with default_storage.open(name) as handle, wave.open(handle) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (2, 2)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        return data[:, 0], data[:, 1], w.getframerate()


@pytest.mark.django_db
def test_a_recording_is_both_sides_in_one_stereo_file_in_storage(session):
    recording = CallRecording(str(session.pk))
    recording.write(_stereo(0.5, 0.0, 1.0))  # the user speaks
    recording.write(_stereo(0.0, 0.5, 2.0))  # then the assistant
    name = recording.save()
    session.refresh_from_db()
    assert session.recording.name == name and name.startswith("recordings/")
    user, bot, rate = _channels(name)
    assert rate == SAMPLE_RATE and len(user) == 3 * SAMPLE_RATE
    assert np.abs(user[:SAMPLE_RATE]).max() > 10000 and np.abs(user[SAMPLE_RATE:]).max() == 0
    assert np.abs(bot[SAMPLE_RATE:]).max() > 10000 and np.abs(bot[:SAMPLE_RATE]).max() == 0
    assert not (recording._path).exists()  # the partial file is gone once kept


@pytest.mark.django_db
def test_nothing_recorded_keeps_nothing(session):
    assert CallRecording(str(session.pk)).save() == ""
    session.refresh_from_db()
    assert not session.recording


@pytest.mark.django_db
def test_recording_is_off_by_default_and_the_page_is_told(api, assistant):
    assert assistant.behaviour["recordCalls"] is False
    assistant.record_calls = True
    assistant.save()
    assert api.get("/api/voice/config", {"assistant": "pearl"}).json()["conversation"]["recordCalls"] is True


def _with_recording(session: VoiceSession) -> str:
    session.recording.save(f"{session.pk}.wav", ContentFile(b"RIFF....WAVEfmt "), save=True)
    return session.recording.name


@pytest.mark.django_db
def test_staff_play_it_from_the_sessions_admin_page_and_no_one_else_can(admin_client, client, user, session):
    change = f"/admin/voicesessions/voicesession/{session.pk}/change/"
    assert "<audio" not in admin_client.get(change).content.decode()
    url = f"/admin/voicesessions/voicesession/{session.pk}/recording/"
    assert admin_client.get(url).status_code == 404
    _with_recording(session)
    page = admin_client.get(change).content.decode()
    assert f'<audio controls preload="none" src="{url}">' in page
    response = admin_client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
    assert b"".join(response.streaming_content).startswith(b"RIFF")
    client.force_login(user)  # the session's own user, not staff
    assert client.get(url).status_code == 302  # to the admin's login


@pytest.mark.django_db(transaction=True)
def test_the_retention_command_and_deleting_the_session_remove_the_file(session, make_user, assistant):
    old = _with_recording(session)
    VoiceSession.objects.filter(pk=session.pk).update(ended_at=timezone.now() - dt.timedelta(days=100))
    other = make_user("carol")
    room = rooms.get_or_create_room(other, assistant=assistant).room
    recent = VoiceSession.objects.create(user=other, room=room, assistant=assistant, status=SessionStatus.ENDED,
                                         ended_at=timezone.now())
    kept = _with_recording(recent)
    out = StringIO()
    call_command("prunevoiceevents", "--days", "90", stdout=out)
    assert "and 1 recording(s)" in out.getvalue()
    assert not default_storage.exists(old) and default_storage.exists(kept)
    session.refresh_from_db()
    assert not session.recording
    recent.delete()
    assert not default_storage.exists(kept)


# --- end to end: a recorded call through a worker ---------------------------------------------------

@pytest.mark.server
@pytest.mark.timeout(240)
def test_a_recorded_call_keeps_what_the_user_said_and_what_the_assistant_said(tmp_path):
    from tests.botharness import active_session, hang_up, hosted_stack, is_final_transcript, speak_to_wav
    from tests.fakes.openai_api import FakeOpenAI
    from tests.waiting import wait_until

    key = "sk-test-recordings-6f2a"
    question = speak_to_wav("What notes do I have?", tmp_path / "question.wav")
    setup = ("a = A.objects.get(slug='pearl'); a.record_calls = True; "
             "a.first_message = 'Hello, this call is recorded.'; a.save()")
    with FakeOpenAI(api_key=key, max_speech_seconds=2.0) as api, \
            hosted_stack(tmp_path, api.url, key, setup=setup) as (server, _worker):
        async def call() -> str:
            client, peer, session_id = await active_session(server, persistence=0, expect_new=True)

            def played(after: dict | None = None):
                return lambda e: (e["type"] == "voice.bot.speaking" and not e["payload"]["speaking"]
                                  and (after is None or client.events.index(e) > client.events.index(after)))

            await client.wait_for(played(), 30, "the first message played")
            peer.say_wav(str(question))
            heard = await client.wait_for(is_final_transcript("user"), 30, "the question heard")
            await client.wait_for(played(heard), 40, "the answer played")
            await hang_up(client, peer)
            return session_id

        session_id = asyncio.run(call())

        def kept() -> str | None:
            out = server.manage("shell", "-c", "from voicesessions.models import VoiceSession as S; "
                                               f"print('name=' + S.objects.get(pk='{session_id}').recording.name)")
            return out.rsplit("name=", 1)[-1].strip() or None

        name = wait_until(kept, 30, "the recording kept")
    with wave.open(str(tmp_path / "media" / name)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, SAMPLE_RATE)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    user, bot = data[:, 0].astype(float), data[:, 1].astype(float)
    assert len(user) / SAMPLE_RATE > 2  # the first message, the question and the answer at least
    assert np.sqrt(np.mean(bot ** 2)) > 100  # the assistant's side: its speech
    assert np.sqrt(np.mean(user ** 2)) > 100  # the user's side: the question
