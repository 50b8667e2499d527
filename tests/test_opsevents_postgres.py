"""Recording an ops fact never breaks its caller's transaction, on PostgreSQL too.

On PostgreSQL a failed INSERT aborts the whole transaction around it; a
caught error inside a caller's atomic() without a savepoint would make the
caller's next query fail ("current transaction is aborted").
"""
from __future__ import annotations

import subprocess
import sys
import uuid

import psycopg
import pytest

from tests.livesrv import ROOT

PG = "postgres://postgres@127.0.0.1:5432"
SCRIPT = """
from django.contrib.auth import get_user_model
from django.db import transaction
from voicesessions import opsevents
with transaction.atomic():
    user = get_user_model().objects.create_user("inside")
    opsevents.record("not-a-kind", "x")  # violates opsevent_kind_valid: caught and logged
    get_user_model().objects.create_user("after")  # the transaction must still be usable
print(sorted(get_user_model().objects.values_list("username", flat=True)))
"""


@pytest.mark.timeout(120)
def test_a_failed_record_keeps_the_callers_transaction_usable(tmp_path):
    name = f"voice_ops_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"{PG}/{name}", "SECRET_KEY": "x" * 50,
           "VOICE_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "voiceproject.settings"}
    try:
        for args in (["migrate", "-v0"], ["shell", "-c", SCRIPT]):
            done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=100)
            assert done.returncode == 0, done.stderr[-2000:]
        assert "['after', 'inside']" in done.stdout
        assert "could not record not-a-kind" in done.stderr
    finally:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
