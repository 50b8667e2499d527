"""DailyRoomProvider against a local fake of Daily's REST API (tests/fakes/daily_api.py).

No database and no network: every request goes to 127.0.0.1, and the fake
refuses anything Daily's docs would refuse.
"""
from __future__ import annotations

import datetime as dt
import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.daily_api import FakeDailyAPI
from voicesessions.providers.base import ProviderRoom, RoomProviderError
from voicesessions.providers.daily import (
    DailyRoomProvider,
    backoff_delay,
    parse_retry_after,
)

KEY = "sk-test-7f3a9c-daily-secret"
ROOM = "voice-12"
SEED_PROPERTIES = {
    "enable_knocking": False,
    "enable_prejoin_ui": False,
    "enable_network_ui": False,
    "enable_screenshare": False,
    "enable_chat": False,
    "start_video_off": True,
}


def in_one_hour() -> dt.datetime:
    """A whole-second UTC time an hour ahead (Daily's exp has second precision)."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(hours=1)


@pytest.fixture
def fake() -> Iterator[FakeDailyAPI]:
    with FakeDailyAPI(api_key=KEY) as api:
        yield api


@pytest.fixture
def sleeps() -> list[float]:
    """Every delay the provider asked to sleep, instead of sleeping."""
    return []


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not intercept 127.0.0.1.
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        yield client


@pytest.fixture
def make_provider(fake: FakeDailyAPI, sleeps: list[float], http: httpx.Client):
    def build(**overrides: Any) -> DailyRoomProvider:
        options: dict[str, Any] = {"api_key": KEY, "api_url": fake.url, "client": http,
                                   "max_retries": 3, "sleep": sleeps.append}
        options.update(overrides)
        return DailyRoomProvider(**options)
    return build


@pytest.fixture
def provider(make_provider) -> DailyRoomProvider:
    return make_provider()


def daily(http: httpx.Client, fake: FakeDailyAPI, method: str, path: str,
          body: Any = None, key: str | None = KEY, **headers: str) -> httpx.Response:
    """Call the fake directly, as a client of Daily's API would."""
    if key is not None:
        headers.setdefault("Authorization", f"Bearer {key}")
    return http.request(method, f"{fake.url}{path}", json=body, headers=headers)


def seed_room(http: httpx.Client, fake: FakeDailyAPI, name: str = ROOM) -> dict[str, Any]:
    exp = int(in_one_hour().timestamp())
    answer = daily(http, fake, "POST", "/rooms", {
        "name": name, "privacy": "private",
        "properties": {"exp": exp, "max_participants": 2, **SEED_PROPERTIES}})
    assert answer.status_code == 200, answer.text
    return answer.json()


# -- happy paths -----------------------------------------------------------------


def test_create_room_sends_exactly_the_seed_properties(provider, fake):
    expires = in_one_hour()

    room = provider.create_room(ROOM, privacy="private", expires_at=expires, max_participants=2)

    [sent] = fake.requests_to("POST", "/v1/rooms")
    assert sent.json == {
        "name": ROOM,
        "privacy": "private",
        "properties": {"exp": int(expires.timestamp()), "max_participants": 2, **SEED_PROPERTIES},
    }
    assert "enable_recording" not in sent.json["properties"]  # recording off = absent
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert room == ProviderRoom(name=ROOM, url=f"https://fake-domain.daily.co/{ROOM}",
                                privacy="private", expires_at=expires, max_participants=2)
    assert room.expires_at.tzinfo is not None
    assert room.raw["api_created"] is True and room.raw["id"]


def test_get_existing_room(provider, fake, http):
    seeded = seed_room(http, fake)

    room = provider.get_room(ROOM)

    assert room is not None
    assert (room.name, room.url, room.privacy) == (ROOM, seeded["url"], "private")
    assert room.expires_at == dt.datetime.fromtimestamp(seeded["config"]["exp"], dt.timezone.utc)
    assert room.max_participants == 2
    assert room.raw["id"] == seeded["id"]
    assert [(r.method, r.path) for r in fake.requests][-1] == ("GET", f"/v1/rooms/{ROOM}")


def test_get_missing_room_is_none(provider, fake):
    assert provider.get_room("voice-404") is None
    assert fake.requests[-1].path == "/v1/rooms/voice-404"


def test_room_without_max_participants_has_dailys_default(provider, fake, http):
    daily(http, fake, "POST", "/rooms", {"name": "plain"})

    room = provider.get_room("plain")

    assert room is not None and room.privacy == "public"  # Daily's documented defaults
    assert room.max_participants == 200 and room.expires_at is None


def test_duplicate_create_falls_back_to_the_existing_room(provider, fake, http):
    seeded = seed_room(http, fake)

    room = provider.create_room(ROOM, privacy="private", expires_at=in_one_hour())

    assert room.raw["id"] == seeded["id"]
    assert [(r.method, r.path) for r in fake.requests[1:]] == [
        ("POST", "/v1/rooms"), ("GET", f"/v1/rooms/{ROOM}")]


def test_delete_room_then_delete_again(provider, fake, http):
    seed_room(http, fake)

    provider.delete_room(ROOM)
    assert ROOM not in fake.rooms
    provider.delete_room(ROOM)  # already gone: not an error

    assert [r.method for r in fake.requests_to("DELETE", f"/v1/rooms/{ROOM}")] == ["DELETE"] * 2


def test_delete_expired_room_is_not_an_error(provider, fake, http):
    seed_room(http, fake)
    fake.clock = lambda: in_one_hour().timestamp() + 60  # the room's exp has passed

    provider.delete_room(ROOM)

    assert ROOM not in fake.rooms


def test_token_is_scoped_to_room_user_and_expiry(provider, fake):
    expires = in_one_hour()

    token = provider.issue_token(ROOM, user_id="42", user_name="Ada", expires_at=expires)

    [sent] = fake.requests_to("POST", "/v1/meeting-tokens")
    assert sent.json == {"properties": {
        "room_name": ROOM, "user_id": "42", "user_name": "Ada",
        "exp": int(expires.timestamp()), "is_owner": False, "start_video_off": True,
        "eject_at_token_exp": True}}
    claims = fake.decode_token(token)  # also checks the signature
    assert (claims["r"], claims["ud"], claims["u"]) == (ROOM, "42", "Ada")
    assert claims["exp"] == int(expires.timestamp())
    assert claims["o"] is False and claims["vo"] is True and claims["ejt"] is True


def test_eject_by_user_id_follows_dailys_api(provider, fake, http):
    provider.create_room(ROOM, privacy="private", expires_at=in_one_hour(), max_participants=2)
    assert provider.eject(ROOM, user_ids=["42"]) == []  # nobody in the meeting: not an error
    [sent] = fake.requests_to("POST", f"/v1/rooms/{ROOM}/eject")
    assert sent.json == {"user_ids": ["42"]}
    assert provider.eject("no-such-room", user_ids=["42"]) == []
    refused = http.post(f"{fake.url}/rooms/{ROOM}/eject", json={"user_ids": "42"},
                        headers={"Authorization": f"Bearer {KEY}"})
    assert refused.status_code == 400 and "user_ids" in refused.json()["info"]


# -- errors --------------------------------------------------------------------------


def test_wrong_key_is_auth_and_the_key_never_leaks(make_provider, fake, caplog):
    caplog.set_level(logging.DEBUG)  # include httpx/httpcore debug output too
    secret = "sk-live-THIS-MUST-NOT-LEAK-91c2"
    provider = make_provider(api_key=secret)

    with pytest.raises(RoomProviderError) as caught:
        provider.create_room(ROOM, privacy="private", expires_at=in_one_hour())

    assert (caught.value.kind, caught.value.status) == ("auth", 401)
    assert "authentication-error" in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(caught.value.args)
    assert secret not in caplog.text
    assert len(fake.requests) == 1  # a bad key is not retried
    ours = [r.getMessage() for r in caplog.records if r.name == "voicesessions.daily"]
    assert ours and all(m.startswith("[DailyRoom]") for m in ours)
    assert any("POST /rooms -> 401 in" in m for m in ours)


def test_wrong_base_url_is_not_found(make_provider, fake):
    provider = make_provider(api_url=fake.url + "x")  # every path is unknown

    with pytest.raises(RoomProviderError) as caught:
        provider.issue_token(ROOM, user_id="1", user_name="A", expires_at=in_one_hour())

    assert (caught.value.kind, caught.value.status) == ("not_found", 404)


def test_refused_request_is_invalid_with_dailys_info(provider, fake):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)

    with pytest.raises(RoomProviderError) as caught:
        provider.create_room(ROOM, privacy="private", expires_at=past)

    assert (caught.value.kind, caught.value.status) == ("invalid", 400)
    assert "'exp' must be in the future" in str(caught.value)
    assert len(fake.requests) == 1  # a 400 is not retried


def test_bad_room_name_is_invalid(provider):
    with pytest.raises(RoomProviderError) as caught:
        provider.create_room("voice 12", privacy="private", expires_at=in_one_hour())

    assert caught.value.kind == "invalid"
    assert "invalid characters" in str(caught.value)


def test_429_then_success_honours_retry_after(provider, fake, sleeps):
    fake.fail_next(2, 429, retry_after="0")

    room = provider.create_room(ROOM, privacy="private", expires_at=in_one_hour())

    assert room.name == ROOM
    assert len(fake.requests_to("POST", "/v1/rooms")) == 3
    assert sleeps == [0.0, 0.0]  # Retry-After: 0 was read, not the 0.5 s backoff


def test_429_without_retry_after_backs_off_exponentially(provider, fake, sleeps):
    fake.fail_next(2, 429)

    assert provider.get_room("voice-none") is None

    assert sleeps == [0.5, 1.0]


def test_429_forever_is_rate_limited_with_retry_after(provider, fake, sleeps):
    fake.fail_next(10, 429, retry_after="3")

    with pytest.raises(RoomProviderError) as caught:
        provider.create_room(ROOM, privacy="private", expires_at=in_one_hour())

    assert (caught.value.kind, caught.value.status, caught.value.retry_after) == \
        ("rate_limited", 429, 3.0)
    assert len(fake.requests) == 4 and sleeps == [3.0, 3.0, 3.0]


def test_long_retry_after_gives_up_at_once(provider, fake, sleeps):
    fake.fail_next(1, 429, retry_after="120")

    with pytest.raises(RoomProviderError) as caught:
        provider.get_room(ROOM)

    assert (caught.value.kind, caught.value.retry_after) == ("rate_limited", 120.0)
    assert len(fake.requests) == 1 and sleeps == []


def test_500_then_success(provider, fake, http, sleeps):
    seed_room(http, fake)
    fake.fail_next(1, 500)

    assert provider.get_room(ROOM) is not None
    assert sleeps == [0.5]


def test_5xx_forever_is_unavailable(provider, fake, sleeps):
    fake.fail_next(10, 503)

    with pytest.raises(RoomProviderError) as caught:
        provider.delete_room(ROOM)

    assert (caught.value.kind, caught.value.status) == ("unavailable", 503)
    assert sleeps == [0.5, 1.0, 2.0]


def test_connection_refused_is_unavailable(make_provider, sleeps):
    with socket.socket() as sock:  # a port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = make_provider(api_url=f"http://127.0.0.1:{port}/v1", max_retries=2)

    with pytest.raises(RoomProviderError) as caught:
        provider.get_room(ROOM)

    assert caught.value.kind == "unavailable" and caught.value.status is None
    assert sleeps == [0.5, 1.0]


def test_missing_api_key_is_config_and_sends_nothing(make_provider, fake):
    provider = make_provider(api_key="")

    with pytest.raises(RoomProviderError) as caught:
        provider.get_room(ROOM)

    assert caught.value.kind == "config"
    assert fake.requests == []


def test_reads_django_settings(request, fake, http):
    from django.conf import settings as django_settings

    if not django_settings.configured:
        pytest.skip("Django settings are not configured in this run")
    settings = request.getfixturevalue("settings")
    settings.DAILY_API_KEY = KEY
    settings.DAILY_API_URL = fake.url
    settings.DAILY_MAX_RETRIES = 0

    provider = DailyRoomProvider(client=http)
    fake.fail_next(1, 500)

    with pytest.raises(RoomProviderError):  # max_retries 0: the one 500 is final
        provider.get_room(ROOM)
    assert provider.get_room(ROOM) is None
    settings.DAILY_API_KEY = ""
    with pytest.raises(RoomProviderError) as caught:
        DailyRoomProvider(client=http).get_room(ROOM)
    assert caught.value.kind == "config"


def test_backoff_and_retry_after_parsing():
    assert [backoff_delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert parse_retry_after("2") == 2.0 and parse_retry_after("junk") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


# -- the fake itself must refuse what Daily refuses --------------------------------------


@pytest.mark.parametrize("properties, complaint", [
    ({"enable_recording": False}, "'enable_recording' must be one of"),
    ({"enable_recording": "yes"}, "'enable_recording' must be one of"),
    ({"no_such_property": True}, "unknown property 'no_such_property'"),
    ({"max_participants": "2"}, "'max_participants' must be an integer"),
    ({"exp": 1.5e12}, "'exp' must be an integer"),
    ({"enable_chat": 0}, "'enable_chat' must be a boolean"),
])
def test_fake_rejects_undocumented_or_mistyped_properties(fake, http, properties, complaint):
    answer = daily(http, fake, "POST", "/rooms", {"name": "r1", "properties": properties})

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid-request-error"
    assert complaint in answer.json()["info"]
    assert fake.rooms == {}


def test_fake_accepts_documented_recording_values(fake, http):
    answer = daily(http, fake, "POST", "/rooms",
                   {"name": "r1", "properties": {"enable_recording": "cloud"}})

    assert answer.status_code == 200
    assert answer.json()["config"] == {"enable_recording": "cloud"}


def test_fake_rejects_unknown_top_level_field_and_bad_privacy(fake, http):
    extra = daily(http, fake, "POST", "/rooms", {"name": "r1", "owner": "me"})
    privacy = daily(http, fake, "POST", "/rooms", {"name": "r1", "privacy": "secret"})
    token = daily(http, fake, "POST", "/meeting-tokens", {"properties": {"user_id": "x" * 37}})

    assert [a.status_code for a in (extra, privacy, token)] == [400, 400, 400]
    assert "unknown parameter 'owner'" in extra.json()["info"]


def test_fake_without_authorization_is_authorization_header_error(fake, http):
    answer = daily(http, fake, "GET", f"/rooms/{ROOM}", key=None)

    assert answer.status_code == 400  # Daily documents 400 for a missing header
    assert answer.json()["error"] == "authorization-header-error"


def test_fake_with_wrong_key_is_authentication_error(fake, http):
    answer = daily(http, fake, "GET", f"/rooms/{ROOM}", key="nope")

    assert answer.status_code == 401
    assert answer.json()["error"] == "authentication-error"


def test_fake_rejects_wrong_method(fake, http):
    answer = daily(http, fake, "PUT", "/rooms", {"name": "r1"})

    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    assert fake.rooms == {}


def test_fake_rejects_non_json_body(fake, http):
    answer = http.post(f"{fake.url}/rooms", content=b"name=r1",
                       headers={"Authorization": f"Bearer {KEY}",
                                "Content-Type": "application/x-www-form-urlencoded"})

    assert answer.status_code == 400
    assert "application/json" in answer.json()["info"]
