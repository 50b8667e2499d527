"""The assistants migrations: old rows get the voiceSessionConfig defaults.

Each test walks the real test database back to an older migration, writes rows
through the historical models, and walks forward again. The `executor` fixture
always migrates every app back to the latest state afterwards, so the rest of
the suite sees the current schema.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

APP = "assistants"
M0001 = (APP, "0001_initial")
M0002 = (APP, "0002_voice_session_config_fields")
M0003 = (APP, "0003_backfill_voice_session_config")

SEED_DEFAULTS = {
    "voice_enabled": True,
    "voice_persistence": 300,
    "voice_room_privacy": "private",
    "voice_max_duration": 3600,
    "voice_auto_start": False,
}
VOICE_FIELDS = tuple(SEED_DEFAULTS)

backfill_module = importlib.import_module("assistants.migrations.0003_backfill_voice_session_config")

pytestmark = pytest.mark.django_db(transaction=True)


def _fresh_executor() -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    return executor


def migrate_to(*targets: tuple[str, str]) -> MigrationExecutor:
    """Migrate to the given nodes and return an executor whose graph reflects the new state."""
    executor = _fresh_executor()
    executor.migrate(list(targets))
    return _fresh_executor()


def migrate_to_latest() -> MigrationExecutor:
    executor = _fresh_executor()
    executor.migrate(executor.loader.graph.leaf_nodes())
    return _fresh_executor()


def historical_model(executor: MigrationExecutor, node: tuple[str, str]):
    return executor.loader.project_state(node).apps.get_model(APP, "AssistantRecord")


def latest_model(executor: MigrationExecutor):
    leaf = [n for n in executor.loader.graph.leaf_nodes() if n[0] == APP]
    assert len(leaf) == 1, f"assistants has more than one leaf migration: {leaf}"
    return historical_model(executor, leaf[0])


def table_columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {col.name for col in connection.introspection.get_table_description(cursor, table)}


def voice_values(model, slug: str) -> dict:
    return model.objects.filter(slug=slug).values(*VOICE_FIELDS).get()


@pytest.fixture
def executor() -> Iterator[MigrationExecutor]:
    """Start at assistants 0001 (old shape); always end at the latest state."""
    try:
        yield migrate_to(M0001)
    finally:
        migrate_to_latest()


def test_start_state_is_the_old_shape(executor):
    columns = table_columns("assistants_assistantrecord")
    assert {"name", "slug"} <= columns
    assert not columns & set(VOICE_FIELDS), "0001 must not have any voice_* column"


def test_old_rows_get_the_seed_defaults(executor):
    Old = historical_model(executor, M0001)
    Old.objects.create(name="Pearl", slug="pearl", persona="Pearl", voice="default")
    Old.objects.create(name="Otto", slug="otto", language="de", tenant_id="t-9")
    Old.objects.create(name="Mia", slug="mia")

    executor = migrate_to_latest()
    New = latest_model(executor)

    rows = list(New.objects.order_by("slug").values("slug", "name", "language", "tenant_id", *VOICE_FIELDS))
    assert [r["slug"] for r in rows] == ["mia", "otto", "pearl"]
    for row in rows:
        assert {f: row[f] for f in VOICE_FIELDS} == SEED_DEFAULTS, row
    otto = next(r for r in rows if r["slug"] == "otto")
    assert (otto["name"], otto["language"], otto["tenant_id"]) == ("Otto", "de", "t-9")
    # 0004 also added the rollout override with its default.
    assert set(New.objects.values_list("rollout_override", flat=True)) == {"inherit"}


def test_backfill_keeps_values_already_set_at_0002(executor):
    Old = historical_model(executor, M0001)
    Old.objects.create(name="Legacy", slug="legacy")

    executor = migrate_to(M0002)
    At0002 = historical_model(executor, M0002)
    # Some fields set, others still NULL: only the NULL ones may be filled.
    At0002.objects.create(name="Custom", slug="custom", voice_persistence=60, voice_room_privacy="public")
    At0002.objects.create(name="Off", slug="off", voice_enabled=False, voice_auto_start=True,
                          voice_max_duration=120)
    assert voice_values(At0002, "legacy") == dict.fromkeys(VOICE_FIELDS), "0002 columns should start NULL"

    executor = migrate_to_latest()
    New = latest_model(executor)

    assert voice_values(New, "custom") == {**SEED_DEFAULTS, "voice_persistence": 60,
                                           "voice_room_privacy": "public"}
    assert voice_values(New, "off") == {**SEED_DEFAULTS, "voice_enabled": False, "voice_auto_start": True,
                                        "voice_max_duration": 120}
    assert voice_values(New, "legacy") == SEED_DEFAULTS


def test_backfill_is_idempotent(executor):
    Old = historical_model(executor, M0001)
    Old.objects.create(name="Legacy", slug="legacy")
    executor = migrate_to(M0002)
    At0002 = historical_model(executor, M0002)
    At0002.objects.create(name="Custom", slug="custom", voice_persistence=60, voice_room_privacy="public")

    executor = migrate_to(M0003)  # the back-fill has run once
    state_apps = executor.loader.project_state(M0003).apps
    At0003 = state_apps.get_model(APP, "AssistantRecord")
    # An admin changes a back-filled value before the back-fill runs again.
    At0003.objects.filter(slug="legacy").update(voice_persistence=45, voice_auto_start=True)
    before = {r["slug"]: r for r in At0003.objects.values("slug", "updated_at", *VOICE_FIELDS)}
    assert before["custom"]["voice_persistence"] == 60

    with connection.schema_editor() as schema_editor:
        backfill_module.backfill(state_apps, schema_editor)
        backfill_module.backfill(state_apps, schema_editor)

    after = {r["slug"]: r for r in At0003.objects.values("slug", "updated_at", *VOICE_FIELDS)}
    assert after == before, "running the back-fill again must not change values that are already set"

    # Only NULLs are touched: a row that still has NULLs gets exactly the defaults and nothing else changes.
    At0003.objects.create(name="Late", slug="late", voice_persistence=7)
    with connection.schema_editor() as schema_editor:
        backfill_module.backfill(state_apps, schema_editor)
    assert voice_values(At0003, "late") == {**SEED_DEFAULTS, "voice_persistence": 7}
    assert {r["slug"]: r for r in At0003.objects.exclude(slug="late").values(
        "slug", "updated_at", *VOICE_FIELDS)} == before


def test_backward_to_0001_keeps_rows_and_forward_restores_defaults(executor):
    Old = historical_model(executor, M0001)
    Old.objects.create(name="Pearl", slug="pearl", persona="Pearl")
    Old.objects.create(name="Otto", slug="otto")

    executor = migrate_to_latest()
    New = latest_model(executor)
    New.objects.filter(slug="pearl").update(voice_persistence=60, voice_room_privacy="public")

    executor = migrate_to(M0001)
    columns = table_columns("assistants_assistantrecord")
    assert not columns & set(VOICE_FIELDS), f"voice columns should be dropped, got {sorted(columns)}"
    assert "rollout_override" not in columns
    Old = historical_model(executor, M0001)
    assert sorted(Old.objects.values_list("slug", "name", "persona")) == [
        ("otto", "Otto", ""), ("pearl", "Pearl", "Pearl")]

    executor = migrate_to_latest()
    New = latest_model(executor)
    assert sorted(New.objects.values_list("slug", "name")) == [("otto", "Otto"), ("pearl", "Pearl")]
    for slug in ("otto", "pearl"):
        # The columns were dropped on the way back, so the old custom values are gone too.
        assert voice_values(New, slug) == SEED_DEFAULTS


@pytest.mark.django_db
def test_no_missing_migrations():
    # --check exits with SystemExit(1) when a model change has no migration.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
