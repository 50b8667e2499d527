"""Start the real app under Daphne in a subprocess, on a fresh database, for end-to-end tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DAPHNE = str(Path(sys.executable).with_name("daphne"))


def users_with_tokens(manage, users: list[str]) -> dict[str, str]:
    """Create `users` (if new) and their API tokens in one `manage.py shell`: one Django start, not
    one per user (a `drf_create_token` each cost ~1.5 s, 25 of them most of a test's time)."""
    out = manage("shell", "-c", (
        "from django.contrib.auth.models import User\n"
        "from rest_framework.authtoken.models import Token\n"
        f"for name in {users!r}:\n"
        "    user, _ = User.objects.get_or_create(username=name)\n"
        "    print(name, Token.objects.get_or_create(user=user)[0].key)\n"))
    keys = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    assert set(keys) == set(users), out
    return keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    process: subprocess.Popen

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return done.stdout

    @property
    def log_path(self) -> Path:
        """Daphne's stdout and stderr: its access log and every log record of the server."""
        return Path(self.env["VOICE_VAR_DIR"]) / "daphne.log"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(var_dir: Path, extra_env: dict[str, str] | None = None,
                 daphne_args: tuple[str, ...] = ()) -> LiveServer:
    """Migrate, seed the demo data and serve on a free port; wait until it answers."""
    port = free_port()
    env = {**os.environ, "VOICE_VAR_DIR": str(var_dir), "SECRET_KEY": "e2e-secret",
           "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
           "CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{port}", **(extra_env or {})}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for args in (["migrate", "-v0"], ["seed_demo"]):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=180)
    log = open(var_dir / "daphne.log", "w")
    process = subprocess.Popen([DAPHNE, *daphne_args, "-b", "127.0.0.1", "-p", str(port),
                                "voiceproject.asgi:application"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/api/schema/", timeout=1)
            return LiveServer(url=url, env=env, process=process)
        except httpx.TransportError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    process.kill()
    raise RuntimeError((var_dir / "daphne.log").read_text())


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text as {(name, sorted labels): value}, one entry per sample."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(server: LiveServer) -> dict[tuple[str, tuple], float]:
    """Every sample of the server's /metrics."""
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return parse_metrics(response.text)


def metric(samples: dict, name: str, **labels: str) -> float:
    """One sample's value (0 when the series has no such sample)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
