"""The percentage rollout: buckets, decide(), GET /api/voice/config, model validation."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

import assistants.rollout as rollout_module
from assistants.models import DEFAULT_VOICE_SESSION_CONFIG, AssistantRecord, RolloutOverride, VoiceRollout
from assistants.rollout import BUCKETS, bucket_for, decide, in_rollout

PROJECT_DIR = Path(__file__).resolve().parent.parent
URL = "/api/voice/config"

ids = st.one_of(st.integers(min_value=1, max_value=2**63 - 1),
                st.text(min_size=1, max_size=40))
percentages = st.integers(min_value=0, max_value=100)

# Mixed ids: strings are what a salted hash() would scramble between processes.
SAMPLE_IDS: list[int | str] = [*range(1, 400), *(f"assistant-{i}" for i in range(400)), "pearl", "otto", "ü-ß"]


# --- bucket_for / in_rollout -------------------------------------------------------

@settings(max_examples=300)
@given(ids, percentages)
def test_same_id_and_percentage_give_the_same_answer(assistant_id, pct):
    first = in_rollout(assistant_id, pct)
    assert all(in_rollout(assistant_id, pct) == first for _ in range(3))
    assert 0 <= bucket_for(assistant_id) < BUCKETS


def test_buckets_survive_a_fresh_import():
    spec = importlib.util.spec_from_file_location("assistants._rollout_fresh_copy", rollout_module.__file__)
    fresh = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fresh
    try:
        spec.loader.exec_module(fresh)
    finally:
        del sys.modules[spec.name]
    assert fresh is not rollout_module
    assert [fresh.bucket_for(i) for i in SAMPLE_IDS] == [bucket_for(i) for i in SAMPLE_IDS]


def _buckets_in_subprocess(hash_seed: str) -> list[int]:
    code = (
        "import json, sys, django\n"
        "django.setup()\n"
        "from assistants.rollout import bucket_for\n"
        "ids = json.loads(sys.stdin.read())\n"
        "print(json.dumps([bucket_for(i) for i in ids]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "DJANGO_SETTINGS_MODULE": "voiceproject.settings"}
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(SAMPLE_IDS), capture_output=True,
                          text=True, cwd=PROJECT_DIR, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_buckets_are_the_same_in_other_processes_with_other_hash_seeds():
    here = [bucket_for(i) for i in SAMPLE_IDS]
    assert _buckets_in_subprocess("1") == here, "bucket_for must not depend on Python's salted hash()"
    assert _buckets_in_subprocess("987654") == here, "bucket_for must not depend on Python's salted hash()"


@settings(max_examples=400)
@given(ids, percentages, percentages)
def test_raising_the_percentage_never_removes_anyone(assistant_id, a, b):
    low, high = sorted((a, b))
    if in_rollout(assistant_id, low):
        assert in_rollout(assistant_id, high), (assistant_id, low, high)


@settings(max_examples=300)
@given(ids)
def test_zero_percent_is_nobody_and_hundred_is_everybody(assistant_id):
    assert in_rollout(assistant_id, 0) is False
    assert in_rollout(assistant_id, 100) is True


@settings(max_examples=300)
@given(ids, percentages)
def test_in_rollout_matches_the_bucket_threshold(assistant_id, pct):
    # 10,000 buckets, so pct % means the first pct * 100 buckets.
    assert in_rollout(assistant_id, pct) == (bucket_for(assistant_id) < pct * 100)


def _first_id_with_bucket(bucket: int) -> int:
    return next(i for i in range(1, 1_000_000) if bucket_for(i) == bucket)


@pytest.mark.parametrize("pct", [0, 1, 25, 99])
def test_threshold_boundary_is_exclusive(pct):
    # The id whose bucket is exactly pct * 100 is the first one *outside* pct %, and inside pct + 1 %.
    edge = _first_id_with_bucket(pct * 100)
    assert in_rollout(edge, pct) is False, f"bucket {pct * 100} must not be in a {pct}% rollout"
    assert in_rollout(edge, pct + 1) is True
    if pct:
        below = _first_id_with_bucket(pct * 100 - 1)
        assert in_rollout(below, pct) is True


@pytest.mark.parametrize("pct", [10, 25, 50])
def test_share_is_close_to_the_percentage(pct):
    n = 20_000
    share = 100 * sum(in_rollout(i, pct) for i in range(1, n + 1)) / n
    assert abs(share - pct) <= 2, f"{share:.2f}% of {n} ids in a {pct}% rollout"


def test_model_defaults_are_the_seeds_voice_session_config():
    seed = {"enabled": True, "persistence": 300, "roomPrivacy": "private", "maxDuration": 3600, "autoStart": False}
    assert DEFAULT_VOICE_SESSION_CONFIG == seed
    assert AssistantRecord(name="N", slug="n").voice_session_config == seed


# --- decide() ---------------------------------------------------------------------

def _assistant(pk: int = 7, **fields) -> AssistantRecord:
    return AssistantRecord(pk=pk, name="A", slug=f"a-{pk}", **fields)


def _rollout(on: bool = True, pct: int = 100) -> VoiceRollout:
    return VoiceRollout(use_pipecat_voice=on, percentage=pct)


def test_master_switch_off_beats_force_on():
    d = decide(_assistant(rollout_override=RolloutOverride.FORCE_ON), _rollout(on=False, pct=100))
    assert (d.enabled, d.reason) == (False, "global_switch_off")


def test_master_switch_off_turns_everyone_off():
    for pk in range(1, 50):
        assert decide(_assistant(pk), _rollout(on=False, pct=100)).enabled is False


def test_assistant_disabled_is_off_even_when_forced_on():
    d = decide(_assistant(voice_enabled=False, rollout_override=RolloutOverride.FORCE_ON), _rollout(pct=100))
    assert (d.enabled, d.reason) == (False, "assistant_disabled")
    d = decide(_assistant(voice_enabled=False), _rollout(pct=100))
    assert (d.enabled, d.reason) == (False, "assistant_disabled")


def test_force_on_at_zero_percent():
    d = decide(_assistant(rollout_override=RolloutOverride.FORCE_ON), _rollout(pct=0))
    assert (d.enabled, d.reason) == (True, "forced_on")


def test_force_off_at_hundred_percent():
    d = decide(_assistant(rollout_override=RolloutOverride.FORCE_OFF), _rollout(pct=100))
    assert (d.enabled, d.reason) == (False, "forced_off")


@settings(max_examples=300)
@given(st.integers(min_value=1, max_value=2**62), percentages)
def test_inherit_follows_the_bucket(pk, pct):
    d = decide(_assistant(pk), _rollout(pct=pct))
    expected = bucket_for(pk) < pct * 100
    assert d.enabled is expected
    assert d.reason == ("in_rollout" if expected else "outside_rollout")
    assert (d.bucket, d.percentage) == (bucket_for(pk), pct)


# --- GET /api/voice/config ----------------------------------------------------------

def set_rollout(pct: int, on: bool = True) -> None:
    r = VoiceRollout.load()
    r.use_pipecat_voice = on
    r.percentage = pct
    r.save()


def get_config(client: APIClient, slug: str):
    return client.get(URL, {"assistant": slug})


@pytest.mark.django_db
def test_config_for_a_real_assistant(api, assistant):
    set_rollout(100)
    res = get_config(api, "pearl")
    assert res.status_code == 200, res.content
    body = res.json()
    assert body["assistant"] == "pearl"
    assert body["name"] == "Pearl"
    assert body["usePipecatVoice"] is True
    assert body["reason"] == "in_rollout"
    assert body["voiceSessionConfig"] == {"enabled": True, "persistence": 300, "roomPrivacy": "private",
                                          "maxDuration": 3600, "autoStart": False}
    assert body["personalityId"] == "pearl"
    assert body["rollout"] == {"percentage": 100, "bucket": bucket_for(assistant.pk), "override": "inherit"}
    assert not any("_" in key for key in body), f"response keys must be camelCase: {sorted(body)}"


@pytest.mark.django_db
def test_config_reflects_the_assistants_own_voice_settings(api, assistant):
    set_rollout(100)
    assistant.voice_persistence = 60
    assistant.voice_room_privacy = "public"
    assistant.voice_max_duration = 900
    assistant.voice_auto_start = True
    assistant.save()
    body = get_config(api, "pearl").json()
    assert body["voiceSessionConfig"] == {"enabled": True, "persistence": 60, "roomPrivacy": "public",
                                          "maxDuration": 900, "autoStart": True}
    assistant.voice_enabled = False
    assistant.save()
    body = get_config(api, "pearl").json()
    assert (body["usePipecatVoice"], body["reason"]) == (False, "assistant_disabled")


@pytest.mark.django_db
def test_raising_the_percentage_flips_false_to_true_and_never_back(api, assistant):
    bucket = bucket_for(assistant.pk)
    flip_at = bucket // 100 + 1  # the first percentage whose threshold passes the bucket
    seen = []
    for pct in range(0, 101):
        set_rollout(pct)
        res = get_config(api, "pearl")
        assert res.status_code == 200
        seen.append(res.json()["usePipecatVoice"])
    assert seen[0] is False and seen[-1] is True
    first_true = seen.index(True)
    assert all(seen[first_true:]), f"voice turned off again after {first_true}%: {seen}"
    assert first_true == flip_at, (bucket, first_true)


@pytest.mark.django_db
def test_zero_percent_is_the_rollback(api, assistant):
    set_rollout(100)
    assert get_config(api, "pearl").json()["usePipecatVoice"] is True
    set_rollout(0)
    body = get_config(api, "pearl").json()
    assert (body["usePipecatVoice"], body["reason"]) == (False, "outside_rollout")
    assert body["rollout"]["percentage"] == 0


@pytest.mark.django_db
def test_master_switch_off_through_the_api(api, assistant):
    set_rollout(100, on=False)
    body = get_config(api, "pearl").json()
    assert (body["usePipecatVoice"], body["reason"]) == (False, "global_switch_off")


@pytest.mark.django_db
def test_missing_assistant_parameter_is_400_naming_the_field(api, assistant):
    res = api.get(URL)
    assert res.status_code == 400
    assert "assistant" in res.json()["fields"]


@pytest.mark.django_db
def test_unknown_slug_is_400_naming_the_field(api, assistant):
    res = get_config(api, "nobody-here")
    assert res.status_code == 400
    body = res.json()
    assert "assistant" in body["fields"]
    assert "nobody-here" in body["fields"]["assistant"][0]


@pytest.mark.django_db
def test_anonymous_is_401(assistant):
    res = get_config(APIClient(), "pearl")
    assert res.status_code == 401
    assert "usePipecatVoice" not in res.json()


# --- model validation on save() -------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value"), [
    ("voice_persistence", 86401),
    ("voice_max_duration", 0),
    ("voice_max_duration", 86401),
    ("voice_room_privacy", "secret"),
    ("rollout_override", "maybe"),
])
def test_invalid_voice_config_is_rejected_on_save(field, value):
    record = AssistantRecord(name="Bad", slug="bad", **{field: value})
    with pytest.raises(ValidationError) as exc:
        record.save()
    assert field in exc.value.message_dict, exc.value.message_dict
    assert not AssistantRecord.objects.filter(slug="bad").exists()


@pytest.mark.django_db
def test_boundary_voice_config_values_are_accepted():
    AssistantRecord(name="Edge", slug="edge", voice_persistence=86400, voice_max_duration=1).save()
    AssistantRecord(name="Edge2", slug="edge2", voice_persistence=0, voice_max_duration=86400,
                    voice_room_privacy="public").save()
    assert AssistantRecord.objects.filter(slug__in=["edge", "edge2"]).count() == 2


@pytest.mark.django_db
def test_percentage_over_100_is_rejected_on_save():
    rollout = VoiceRollout.load()
    before = rollout.percentage
    rollout.percentage = 101
    with pytest.raises(ValidationError) as exc:
        rollout.save()
    assert "percentage" in exc.value.message_dict, exc.value.message_dict
    assert VoiceRollout.objects.get(pk=VoiceRollout.SINGLETON_PK).percentage == before
