"""Django admin for assistants (voiceSessionConfig) and the voice rollout singleton."""
from __future__ import annotations

import pytest
from django.test import Client

from assistants.models import AssistantRecord, VoiceRollout

ASSISTANTS = "/admin/assistants/assistantrecord/"
ADD_ASSISTANT = ASSISTANTS + "add/"
ROLLOUT = "/admin/assistants/voicerollout/"

pytestmark = pytest.mark.django_db


# admin_client and admin_user: pytest-django's (a signed-in superuser).


@pytest.fixture
def assistants(assistant):
    """Pearl (enabled, from conftest) plus Otto (enabled) and Zed (voice disabled)."""
    otto = AssistantRecord.objects.create(name="Otto", slug="otto", persona="Butler", tenant_id="acme")
    zed = AssistantRecord.objects.create(name="Zed", slug="zed", persona="Quiet", voice_enabled=False)
    return {"pearl": assistant, "otto": otto, "zed": zed}


def listed_names(response) -> list[str]:
    return sorted(obj.name for obj in response.context["cl"].result_list)


def add_form_data(**overrides) -> dict:
    data = {
        "name": "Nova", "slug": "nova", "personality_id": "nova", "persona": "Navigator", "voice": "aria",
        "language": "en", "tenant_id": "acme", "system_prompt": "Be kind.",
        "voice_enabled": "on", "voice_persistence": "120", "voice_room_privacy": "public",
        "voice_max_duration": "1800", "voice_auto_start": "on",
        # The conversation fields as the add form renders them (their defaults).
        "first_message": "", "first_message_mode": "assistant-speaks-first", "silence_timeout": "0",
        "silence_prompt": "Are you still there?", "end_call_phrases": "[]", "end_call_message": "",
        "stt_keywords": "[]", "duration_warning_seconds": "0", "duration_warning": "We are nearly out of time for this call.",
        "interruption_min_words": "0", "interruption_min_seconds": "0", "notes_tools": "on",
        "rollout_override": "inherit",
        # The custom tools' inline: none.
        "tools-TOTAL_FORMS": "0", "tools-INITIAL_FORMS": "0", "tools-MIN_NUM_FORMS": "0", "tools-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# --- assistants ----------------------------------------------------------------------

def test_changelist_lists_every_assistant(admin_client, assistants):
    res = admin_client.get(ASSISTANTS)
    assert res.status_code == 200
    assert listed_names(res) == ["Otto", "Pearl", "Zed"]
    assert b"Voice session config" not in res.content  # a list, not the form


def test_changelist_search(admin_client, assistants):
    res = admin_client.get(ASSISTANTS, {"q": "otto"})
    assert res.status_code == 200
    assert listed_names(res) == ["Otto"]
    assert b"Otto" in res.content
    # search also covers persona and tenant_id
    assert listed_names(admin_client.get(ASSISTANTS, {"q": "Quiet"})) == ["Zed"]
    assert listed_names(admin_client.get(ASSISTANTS, {"q": "acme"})) == ["Otto"]
    assert listed_names(admin_client.get(ASSISTANTS, {"q": "no-such-thing"})) == []


def test_changelist_filter_on_voice_enabled(admin_client, assistants):
    res = admin_client.get(ASSISTANTS, {"voice_enabled__exact": "1"})
    assert res.status_code == 200
    assert listed_names(res) == ["Otto", "Pearl"]
    # the filter is offered in the sidebar, not only accepted in the URL
    cl = res.context["cl"]
    assert "voice_enabled" in {spec.field_path for spec in cl.filter_specs if hasattr(spec, "field_path")}
    assert b'id="changelist-filter"' in res.content
    res = admin_client.get(ASSISTANTS, {"voice_enabled__exact": "0"})
    assert res.status_code == 200
    assert listed_names(res) == ["Zed"]
    assert b"Zed" in res.content and b">Pearl<" not in res.content


def test_add_form_creates_an_assistant(admin_client):
    res = admin_client.post(ADD_ASSISTANT, add_form_data())
    assert res.status_code == 302, res.context["adminform"].form.errors if res.context else res
    nova = AssistantRecord.objects.get(slug="nova")
    assert (nova.name, nova.persona, nova.voice, nova.tenant_id, nova.personality_id) == (
        "Nova", "Navigator", "aria", "acme", "nova")
    assert nova.voice_session_config == {"enabled": True, "persistence": 120, "roomPrivacy": "public",
                                         "maxDuration": 1800, "autoStart": True}
    assert nova.rollout_override == "inherit"


def test_the_conversation_settings_are_edited_and_validated_in_the_admin(admin_client):
    res = admin_client.post(ADD_ASSISTANT, add_form_data(
        first_message="Hello, front desk here.", silence_timeout="20", end_call_phrases='["goodbye", "talk soon"]',
        end_call_message="Thanks for calling.", end_call_tool="on", duration_warning_seconds="60"))
    assert res.status_code == 302, res.context["adminform"].form.errors if res.context else res
    nova = AssistantRecord.objects.get(slug="nova")
    assert nova.behaviour["firstMessage"] == "Hello, front desk here." and nova.behaviour["endCallTool"] is True
    assert nova.end_call_phrases == ["goodbye", "talk soon"]
    for field, value in [("end_call_phrases", '"goodbye"'), ("silence_timeout", "1"),
                         ("duration_warning_seconds", "1800")]:
        res = admin_client.post(ADD_ASSISTANT, add_form_data(slug=f"bad-{field}".replace("_", "-"), **{field: value}))
        assert res.status_code == 200 and field in res.context["adminform"].form.errors, (field, value)


def test_add_form_shows_every_voice_field(admin_client):
    res = admin_client.get(ADD_ASSISTANT)
    assert res.status_code == 200
    for name in ("voice_enabled", "voice_persistence", "voice_room_privacy", "voice_max_duration",
                 "voice_auto_start", "rollout_override"):
        assert f'name="{name}"'.encode() in res.content, name


def test_add_form_rejects_persistence_over_a_day(admin_client):
    res = admin_client.post(ADD_ASSISTANT, add_form_data(voice_persistence="90000"))
    assert res.status_code == 200
    errors = res.context["adminform"].form.errors
    assert list(errors) == ["voice_persistence"], errors
    assert b"less than or equal to 86400" in res.content
    assert not AssistantRecord.objects.exists()


def test_add_form_rejects_unknown_room_privacy(admin_client):
    res = admin_client.post(ADD_ASSISTANT, add_form_data(voice_room_privacy="secret"))
    assert res.status_code == 200
    assert "voice_room_privacy" in res.context["adminform"].form.errors
    assert not AssistantRecord.objects.exists()


# --- the rollout singleton ----------------------------------------------------------------

def test_rollout_list_redirects_to_the_single_row(admin_client):
    res = admin_client.get(ROLLOUT)
    assert res.status_code == 302
    assert res["Location"] == f"{ROLLOUT}{VoiceRollout.SINGLETON_PK}/change/"
    assert VoiceRollout.objects.count() == 1
    assert admin_client.get(res["Location"]).status_code == 200


def test_changing_the_percentage_to_zero_saves_it(admin_client, admin_user):
    rollout = VoiceRollout.load()
    rollout.percentage = 100
    rollout.save()
    assert rollout.updated_by is None

    res = admin_client.post(f"{ROLLOUT}{rollout.pk}/change/",
                            {"use_pipecat_voice": "on", "percentage": "0", "_save": "Save"})
    assert res.status_code == 302, res.context["adminform"].form.errors if res.context else res
    saved = VoiceRollout.load()
    assert saved.percentage == 0
    assert saved.use_pipecat_voice is True
    assert saved.updated_by == admin_user
    assert VoiceRollout.objects.count() == 1


def test_rollout_percentage_over_100_is_rejected(admin_client):
    rollout = VoiceRollout.load()
    before = rollout.percentage
    res = admin_client.post(f"{ROLLOUT}{rollout.pk}/change/",
                            {"use_pipecat_voice": "on", "percentage": "101", "_save": "Save"})
    assert res.status_code == 200
    assert "percentage" in res.context["adminform"].form.errors
    assert VoiceRollout.load().percentage == before


def test_rollout_cannot_be_added_or_deleted(admin_client):
    rollout = VoiceRollout.load()
    assert admin_client.get(f"{ROLLOUT}add/").status_code == 403
    assert admin_client.post(f"{ROLLOUT}add/", {"use_pipecat_voice": "on", "percentage": "5"}).status_code == 403
    assert admin_client.get(f"{ROLLOUT}{rollout.pk}/delete/").status_code == 403
    assert admin_client.post(f"{ROLLOUT}{rollout.pk}/delete/", {"post": "yes"}).status_code == 403
    assert VoiceRollout.objects.count() == 1


# --- access ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", [ASSISTANTS, ADD_ASSISTANT, ROLLOUT])
def test_non_staff_user_is_sent_to_the_admin_login(user, url):
    client = Client()
    client.force_login(user)
    res = client.get(url)
    assert res.status_code == 302
    assert res["Location"].startswith("/admin/login/")
    assert f"next={url}" in res["Location"]


def test_anonymous_is_sent_to_the_admin_login(db):
    res = Client().get(ASSISTANTS)
    assert res.status_code == 302
    assert res["Location"].startswith("/admin/login/")
