"""Webhooks (issue 13, section 4): signed JSON events from a durable outbox, delivered at least once
with backoff, an end-of-call report with a summary, a delivery log with resend in admin."""
from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx
import pytest
from django.db import transaction
from django.utils import timezone

from assistants.signing import verify
from tests.fakes.receiver import SignedReceiver
from tests.waiting import wait_until
from voicesessions import rooms, sessions
from voicesessions.events import record_event
from voicesessions.models import SessionStatus, VoiceEventType, VoiceSession
from webhooks import delivery
from webhooks.models import DeliveryStatus, WebhookDelivery

SECRET = "whsec_test_webhook_9b2f"


@pytest.fixture
def session(user, assistant):
    assistant.server_url, assistant.server_secret = "http://127.0.0.1:9/hooks", SECRET
    assistant.save()
    room = rooms.get_or_create_room(user, assistant=assistant).room
    return VoiceSession.objects.create(user=user, room=room, assistant=assistant, status=SessionStatus.CONNECTING)


def _talk(session: VoiceSession) -> None:
    """A short call: connected, a question, a tool call, an answer, the end."""
    sessions.change_status(session, SessionStatus.ACTIVE, reason="bot_joined", connected_at=timezone.now())
    record_event(session, VoiceEventType.TRANSCRIPT, {"role": "user", "text": "What notes", "final": False})
    record_event(session, VoiceEventType.TRANSCRIPT, {"role": "user", "text": "What notes do I have?", "final": True})
    record_event(session, VoiceEventType.TOOL_CALL, {"name": "list_notes", "toolCallId": "call_1", "arguments": {}})
    record_event(session, VoiceEventType.TOOL_RESULT, {"name": "list_notes", "toolCallId": "call_1",
                                                       "result": {"ok": True, "notes": []}})
    record_event(session, VoiceEventType.AUDIO_LEVEL, {"source": "user", "level": 0.3})
    record_event(session, VoiceEventType.TRANSCRIPT, {"role": "assistant", "text": "You have no notes.",
                                                      "final": True})
    sessions.change_status(session, SessionStatus.ENDED, reason="user_left")


@pytest.mark.django_db
def test_each_event_a_server_should_hear_of_is_in_the_outbox_with_it(session):
    _talk(session)
    kinds = list(WebhookDelivery.objects.order_by("created_at").values_list("kind", flat=True))
    assert kinds == ["session.status", "transcript", "tool.call", "tool.result", "transcript", "session.end",
                     "end-of-call-report"]  # no interim transcript, no audio level
    row = WebhookDelivery.objects.get(kind="transcript", payload__data__role="user")
    assert row.url == "http://127.0.0.1:9/hooks" and row.assistant_id == session.assistant_id
    assert row.payload["type"] == "transcript" and row.payload["id"] == str(row.pk)
    assert row.payload["sessionId"] == str(session.pk) and row.payload["assistant"] == "pearl"
    assert row.payload["data"]["text"] == "What notes do I have?"
    assert not WebhookDelivery.objects.get(kind="end-of-call-report").prepared


@pytest.mark.django_db
def test_an_event_rolled_back_leaves_no_webhook_and_no_url_means_none(session, settings):
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event(session, VoiceEventType.TRANSCRIPT, {"role": "user", "text": "Hi", "final": True})
        raise RuntimeError("the request failed")
    assert not WebhookDelivery.objects.exists()
    session.assistant.server_url = ""
    session.assistant.save()
    record_event(session, VoiceEventType.TRANSCRIPT, {"role": "user", "text": "Hi", "final": True})
    assert not WebhookDelivery.objects.exists()
    settings.VOICE_WEBHOOK_URL = "https://hooks.example.com/voice"  # the global one
    record_event(session, VoiceEventType.TRANSCRIPT, {"role": "user", "text": "Hi", "final": True})
    row = WebhookDelivery.objects.get()
    assert row.url == "https://hooks.example.com/voice" and row.assistant_id is None


def _deliver(summarise=None) -> int:
    async def run() -> int:
        async with httpx.AsyncClient() as http:
            return await delivery.deliver_due(http, summarise=summarise)
    return asyncio.run(run())


def _point_at(receiver: SignedReceiver) -> None:
    WebhookDelivery.objects.update(url=receiver.url + "/hooks")


@pytest.mark.django_db(transaction=True)
def test_deliveries_are_signed_and_a_failure_is_retried_after_a_backoff_until_it_gives_up(session, settings):
    settings.VOICE_WEBHOOK_RETRY_BASE, settings.VOICE_WEBHOOK_MAX_ATTEMPTS = 30, 3
    record_event(session, VoiceEventType.TRANSCRIPT, {"role": "user", "text": "Hello?", "final": True})
    with SignedReceiver(SECRET) as receiver:
        _point_at(receiver)
        receiver.down_with = 503
        assert _deliver() == 1
        row = WebhookDelivery.objects.get()
        assert (row.status, row.attempts, row.last_status_code, row.lease_until) == ("pending", 1, 503, None)
        wait = (row.next_attempt_at - timezone.now()).total_seconds()
        assert 25 < wait <= 30  # not before its backoff
        assert _deliver() == 0
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
        _deliver()
        row.refresh_from_db()
        assert row.attempts == 2 and 55 < (row.next_attempt_at - timezone.now()).total_seconds() <= 60  # doubled
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
        _deliver()
        row.refresh_from_db()
        assert (row.status, row.attempts) == ("failed", 3)  # gave up: a resend from admin is next

        receiver.down_with = None
        assert delivery.resend(WebhookDelivery.objects.all()) == 1
        _deliver()
        row.refresh_from_db()
        assert (row.status, row.last_status_code) == ("delivered", 200) and row.delivered_at is not None
        sent = receiver.received[-1]
        assert sent.signed and verify(SECRET, sent.body, sent.headers["x-voice-signature"])
        assert sent.headers["x-voice-event"] == "transcript" and sent.headers["x-voice-delivery"] == str(row.pk)
        assert sent.json["data"]["text"] == "Hello?"
        assert len(receiver.received) == 4


@pytest.mark.django_db(transaction=True)
def test_the_end_of_call_report_is_written_once_with_its_summary(session):
    _talk(session)
    asked: list[str] = []

    async def summarise(assistant_id, transcript: str) -> str:
        asked.append(transcript)
        return "The user asked for their notes; they have none."

    with SignedReceiver(SECRET) as receiver:
        _point_at(receiver)
        receiver.down_with = 500
        _deliver(summarise)  # every row tried once, the report written first
        receiver.down_with = None
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
        _deliver(summarise)
        assert not WebhookDelivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists()
        [report] = [r.json for r in receiver.received if r.json["type"] == "end-of-call-report" and r.status == 200]
    assert asked == ["User: What notes do I have?\nAssistant: You have no notes."]  # summarised once
    data = report["data"]
    assert data["summary"] == "The user asked for their notes; they have none."
    assert data["endedReason"] == "user_left" and data["durationSeconds"] >= 0
    assert [(line["role"], line["text"]) for line in data["transcript"]] == [
        ("user", "What notes do I have?"), ("assistant", "You have no notes.")]
    assert data["toolCalls"] == [{"name": "list_notes", "arguments": {}, "calledAt": data["toolCalls"][0]["calledAt"],
                                  "result": {"ok": True, "notes": []}}]
    assert data["usage"] == {"durationSeconds": data["durationSeconds"], "userTurns": 1, "assistantTurns": 1,
                             "toolCalls": 1}


@pytest.mark.django_db(transaction=True)
def test_a_report_whose_summary_fails_is_still_sent(session):
    _talk(session)

    async def broken(assistant_id, transcript: str) -> str:
        raise ConnectionError("the model is away")

    with SignedReceiver(SECRET) as receiver:
        _point_at(receiver)
        _deliver(broken)
        [report] = [r.json for r in receiver.received if r.json["type"] == "end-of-call-report"]
    assert report["data"]["summary"] == "" and "summaryError" in report["data"]
    assert len(report["data"]["transcript"]) == 2


@pytest.mark.django_db(transaction=True)
def test_a_leased_row_is_not_sent_twice_and_a_dead_deliverers_lease_runs_out(session, settings):
    record_event(session, VoiceEventType.TRANSCRIPT, {"role": "user", "text": "Hi", "final": True})
    assert len(delivery.claim_due()) == 1
    assert delivery.claim_due() == []  # held by the first
    WebhookDelivery.objects.update(lease_until=timezone.now() - dt.timedelta(seconds=1))  # that worker died
    assert len(delivery.claim_due()) == 1


@pytest.mark.django_db
def test_the_admin_delivery_log_shows_the_answers_and_resends(admin_client, session):
    record_event(session, VoiceEventType.TRANSCRIPT, {"role": "user", "text": "Hi", "final": True})
    row = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=row.pk).update(status="failed", attempts=12, last_status_code=502)
    page = admin_client.get("/admin/webhooks/webhookdelivery/").content.decode()
    assert "502" in page and "Failed" in page and "transcript" in page
    detail = admin_client.get(f"/admin/webhooks/webhookdelivery/{row.pk}/change/").content.decode()
    assert "&quot;text&quot;: &quot;Hi&quot;" in detail
    res = admin_client.post("/admin/webhooks/webhookdelivery/", {"action": "resend_deliveries",
                                                                  "_selected_action": [str(row.pk)]})
    assert res.status_code == 302
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 0)


# --- end to end: the report survives a restart between the end of the call and its delivery -------

@pytest.mark.server
@pytest.mark.timeout(300)
def test_the_end_of_call_report_arrives_after_a_restart_between_the_end_and_its_delivery(tmp_path):
    from tests.botharness import active_session, hang_up, hosted_stack, is_final_transcript
    from tests.fakes.openai_api import FakeOpenAI

    key = "sk-test-webhooks-31d5"
    # Quick retries, and never given up on: a row that ran out of attempts before the restart would
    # (rightly) wait for a resend from admin instead.
    fast = {"VOICE_WEBHOOK_RETRY_BASE": "0.2", "VOICE_WEBHOOK_RETRY_MAX": "0.5", "VOICE_WEBHOOK_POLL_SECONDS": "0.2",
            "VOICE_WEBHOOK_MAX_ATTEMPTS": "100000"}
    with FakeOpenAI(api_key=key, max_speech_seconds=1.0) as api, SignedReceiver(SECRET) as receiver:
        receiver.down_with = 503  # the customer's server is down when the call ends
        setup = (f"a = A.objects.get(slug='pearl'); a.server_url = '{receiver.url}/hooks'; "
                 f"a.server_secret = '{SECRET}'; a.save()")
        with hosted_stack(tmp_path, api.url, key, setup=setup, env=fast) as (server, _worker):
            async def call() -> str:
                client, peer, session_id = await active_session(server, persistence=0, expect_new=True)
                await client.ws.send(json.dumps({"type": "user-message", "content": "Book a table for two."}))
                await client.wait_for(is_final_transcript("assistant"), 30, "the answer")
                await hang_up(client, peer)
                return session_id

            session_id = asyncio.run(call())
            wait_until(lambda: any(r.json["type"] == "end-of-call-report" for r in receiver.received), 60,
                       "an attempt at the report (refused)")
        assert receiver.received and all(r.status == 503 for r in receiver.received)

        receiver.down_with = None  # the customer's server is back; ours restarts on the same database
        with hosted_stack(tmp_path, api.url, key, env=fast):
            # Each row is retried on its own schedule, so the report may arrive before the
            # events it sums up: wait for all of them, not only the report.
            wanted = {"session.status", "transcript", "session.end", "end-of-call-report"}
            wait_until(lambda: wanted <= {r.json["type"] for r in receiver.received if r.status == 200}, 60,
                       "the report and the events delivered after the restart")
    delivered = [r for r in receiver.received if r.status == 200]
    assert all(r.signed for r in receiver.received)
    [report] = [r.json for r in delivered if r.json["type"] == "end-of-call-report"]
    assert report["sessionId"] == session_id and report["assistant"] == "pearl"
    said = [(line["role"], line["text"]) for line in report["data"]["transcript"]]
    assert ("user", "Book a table for two.") in said and any(role == "assistant" for role, _ in said)
    assert report["data"]["summary"]  # written by the assistant's LLM (the fake's echo of the transcript)
    assert report["data"]["endedReason"] and report["data"]["durationSeconds"] >= 0
    kinds = {r.json["type"] for r in delivered}
    assert {"session.status", "transcript", "session.end", "end-of-call-report"} <= kinds
    ids = [r.json["id"] for r in delivered]
    assert len(ids) == len(set(ids))  # each event delivered once once it was accepted
    summaries = [r for r in api.requests_to("/v1/chat/completions", ok=True)
                 if r.json["messages"][0]["content"].startswith("Summarise this phone call")]
    assert len(summaries) == 1  # written once, before the restart, and kept


@pytest.mark.django_db(transaction=True)
def test_a_stopping_deliverer_gives_its_leases_back(session):
    """A worker stopped mid-delivery: the rows it held go out from the next worker at once,
    not after the lease (VOICE_WEBHOOK_LEASE_SECONDS) runs out."""
    record_event(session, VoiceEventType.TRANSCRIPT, {"role": "user", "text": "Hi", "final": True})
    with SignedReceiver(SECRET) as receiver:
        _point_at(receiver)
        receiver.answer_next(200, {}, delay=5)  # the server is slow to answer

        async def stop_mid_delivery() -> None:
            from channels.db import database_sync_to_async

            leased = database_sync_to_async(lambda: WebhookDelivery.objects.filter(lease_until__isnull=False).exists())
            async with httpx.AsyncClient() as http:
                task = asyncio.ensure_future(delivery.deliver_due(http))
                for _ in range(500):  # bounded: the row is leased as soon as the pass starts
                    if await leased() and receiver.received == [] and not task.done():
                        break
                    await asyncio.sleep(0.01)
                assert await leased()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

        asyncio.run(stop_mid_delivery())
    row = WebhookDelivery.objects.get()
    assert row.lease_until is None and row.status == "pending"
    assert delivery.claim_due() == [row]  # free for the next worker now


@pytest.mark.django_db(transaction=True)  # the summariser reads the assistant's models in a thread
@pytest.mark.parametrize("model", ["gpt-4.1-mini", "o3-mini"])
def test_the_summary_is_written_by_a_hosted_model_whether_or_not_it_reasons(model):
    """A reasoning model refuses a temperature and reasons inside the cap: without room its summary
    came back empty (the fake, as OpenAI's reasoning guide describes it) or refused."""
    from tests.fakes.openai_api import FakeOpenAI
    from voicebot.services import ModelBundle
    from voicebot.summary import SUMMARY_TOKENS, summariser

    with FakeOpenAI(api_key="sk-test-summary") as api:
        api.reply_with("The user asked for their notes; they have none.")
        bundle = ModelBundle(local_llm=False, llm_base_url=api.url, llm_api_key="sk-test-summary", llm_model=model)

        async def summarise() -> str:
            try:
                return await summariser(bundle)(None, "User: What notes do I have?\nAssistant: You have none.")
            finally:
                await bundle.aclose()

        assert asyncio.run(summarise()) == "The user asked for their notes; they have none."
        [sent] = api.requests_to("/v1/chat/completions")
    if model == "o3-mini":
        assert "temperature" not in sent.json and sent.json["reasoning_effort"] == "low"
        assert sent.json["max_completion_tokens"] == SUMMARY_TOKENS + 1024
    else:
        assert sent.json["temperature"] == 0.2 and sent.json["max_completion_tokens"] == SUMMARY_TOKENS
