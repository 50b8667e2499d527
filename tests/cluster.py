"""A simulated cluster (issue 16): servers, workers, data stores and clients on hosts of their own.

Each host is a Linux network namespace with one interface on a private /24, joined to
the others through a bridge that lives in a namespace of its own (the "switch"), so the
machine's own namespace is never touched and no packet can leave the cluster. Cutting a
host's link is taking its port on the switch down; healing it, bringing it back up.

    db      its own PostgreSQL (a throw-away cluster from initdb) and redis-server
    web1/2  Daphne in production mode
    bot1/2  `manage.py runbotworker`, advertising its own address for control and WebRTC,
            with the hosted models on a fake OpenAI API on its own loopback (a provider
            is outside the cluster; tests/fakes/openai_api.py stands in for it)
    client  the test's own websockets and WebRTC peer, run in a thread that entered
            the client's namespace (`Cluster.on_client`)

Every process and namespace is removed by `down()`, which the pytest fixture and the
script call on the way out (also after a failure or Ctrl-C), and again at exit.

    python -m tests.cluster      # bring it up, print the addresses, wait for Ctrl-C

Needs root (namespaces, veth, a bridge; PostgreSQL runs as the `postgres` user).
"""
from __future__ import annotations

import asyncio
import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
DAPHNE = str(Path(PYTHON).parent / "daphne")
HOSTS = {"db": 1, "web1": 11, "web2": 12, "bot1": 21, "bot2": 22, "client": 31}
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), Path("/usr/bin"))
FAKE_KEY = "sk-cluster-fake"
T = TypeVar("T")

FAKE_RUNNER = r"""
import signal, sys, time
sys.path.insert(0, sys.argv[1])
from tests.fakes.openai_api import FakeOpenAI
fake = FakeOpenAI(api_key=sys.argv[2], transcript=sys.argv[3])
fake.start()
print("FAKE_URL", fake.url, flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(3600)
"""


def _sh(*cmd: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True, timeout=60)


@dataclass
class Proc:
    host: str
    name: str
    popen: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    """The namespaces, their links and every process started in them."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="voice-cluster-")))
    procs: list[Proc] = field(default_factory=list)
    subnet: str = ""
    database_url: str = ""
    redis_url: str = ""

    def __post_init__(self) -> None:
        os.chmod(self.workdir, 0o755)  # the postgres user reads its data directory below it
        self.subnet = f"10.213.{20 + int(self.tag, 16) % 200}"
        self.up_ns: list[str] = []

    # --- topology ----------------------------------------------------------------------
    def ns(self, host: str) -> str:
        return f"vc{self.tag}-{host}"

    def ip(self, host: str) -> str:
        return f"{self.subnet}.{HOSTS[host]}"

    def _port(self, host: str) -> str:
        return f"vc{self.tag}s{HOSTS[host]}"  # the switch's end of the host's link (<= 15 characters)

    def up(self) -> "Cluster":
        atexit.register(self.down)
        switch = self.ns("switch")
        _sh("ip", "netns", "add", switch)
        self.up_ns.append(switch)
        _sh("ip", "link", "add", "br0", "type", "bridge", ns=switch)
        _sh("ip", "link", "set", "br0", "up", ns=switch)
        for host in HOSTS:
            ns, port, inner = self.ns(host), self._port(host), f"vc{self.tag}h{HOSTS[host]}"
            _sh("ip", "netns", "add", ns)
            self.up_ns.append(ns)
            _sh("ip", "link", "add", inner, "type", "veth", "peer", "name", port)
            _sh("ip", "link", "set", inner, "netns", ns)
            _sh("ip", "link", "set", port, "netns", switch)
            _sh("ip", "link", "set", port, "master", "br0", ns=switch)
            _sh("ip", "link", "set", port, "up", ns=switch)
            _sh("ip", "link", "set", "lo", "up", ns=ns)
            _sh("ip", "link", "set", inner, "name", "eth0", ns=ns)
            _sh("ip", "addr", "add", f"{self.ip(host)}/24", "dev", "eth0", ns=ns)
            _sh("ip", "link", "set", "eth0", "up", ns=ns)
        return self

    def cut(self, host: str) -> None:
        """Take the host's link down: nothing reaches it and nothing leaves it."""
        _sh("ip", "link", "set", self._port(host), "down", ns=self.ns("switch"))

    def heal(self, host: str) -> None:
        _sh("ip", "link", "set", self._port(host), "up", ns=self.ns("switch"))

    def cut_between(self, a: str, b: str) -> None:
        """Part two hosts while both keep every other link: each routes the other's address
        nowhere (an `unreachable` route, so a send fails at once instead of hanging)."""
        for host, other in ((a, b), (b, a)):
            _sh("ip", "route", "add", "unreachable", f"{self.ip(other)}/32", ns=self.ns(host))

    def heal_between(self, a: str, b: str) -> None:
        for host, other in ((a, b), (b, a)):
            _sh("ip", "route", "del", "unreachable", f"{self.ip(other)}/32", ns=self.ns(host), check=False)

    # --- processes -----------------------------------------------------------------------
    def start(self, host: str, name: str, cmd: list[str], env: dict[str, str] | None = None,
              user: str | None = None) -> Proc:
        log = self.workdir / f"{host}-{name}.log"
        prefix = ["ip", "netns", "exec", self.ns(host)] + (["runuser", "-u", user, "--"] if user else [])
        popen = subprocess.Popen([*prefix, *cmd], cwd=ROOT, env=env or dict(os.environ), stdout=open(log, "wb"),
                                 stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(host, name, popen, log)
        self.procs.append(proc)
        return proc

    def wait_log(self, proc: Proc, marker: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = proc.text()
            if marker in text:
                return text
            if proc.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{proc.host}/{proc.name} not ready ({marker!r}):\n{proc.text()[-3000:]}")

    def stop(self, proc: Proc, timeout: float = 20) -> None:
        if proc.popen.poll() is None:
            os.killpg(proc.popen.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=5)

    def down(self) -> None:
        """Every process, then every namespace (their links go with them); safe to call twice."""
        for proc in reversed(self.procs):
            try:
                self.stop(proc, timeout=10)
            except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
                pass
        self.procs.clear()
        for ns in reversed(self.up_ns):
            pids = _sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:  # anything a process left behind in the namespace
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _sh("ip", "netns", "del", ns, check=False)
        self.up_ns.clear()
        if os.environ.get("VOICE_CLUSTER_KEEP_LOGS"):  # to read every host's logs after a failure
            print(f"[cluster] logs kept in {self.workdir}", flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- services ------------------------------------------------------------------------
    def start_data_stores(self) -> None:
        """db: a fresh PostgreSQL cluster and a redis-server, both on db's address only."""
        data = self.workdir / "pgdata"
        data.mkdir()
        shutil.chown(data, "postgres", "postgres")
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        with open(data / "pg_hba.conf", "a") as hba:  # the cluster's hosts, and nothing else
            hba.write(f"host all all {self.subnet}.0/24 trust\n")
        host = self.ip("db")
        pg = self.start("db", "postgres", [str(PG_BIN / "postgres"), "-D", str(data), "-c", f"listen_addresses={host}",
                                           "-c", "port=5432", "-c", f"unix_socket_directories={data}",
                                           "-c", "fsync=off", "-c", "max_connections=200"], user="postgres")
        self.wait_log(pg, "ready to accept connections", 60)
        self.start_redis()
        _sh(str(PG_BIN / "createdb"), "-h", host, "-U", "postgres", "voice", ns=self.ns("db"))
        self.database_url = f"postgres://postgres@{host}:5432/voice"
        self.redis_url = f"redis://{host}:6379/0"

    def start_redis(self) -> Proc:
        """db's redis-server, keeping nothing on disk (as the machines' own Redis): a restart is empty."""
        host = self.ip("db")
        proc = self.start("db", "redis", ["redis-server", "--bind", host, "--port", "6379", "--save", "",
                                          "--appendonly", "no", "--protected-mode", "no"])
        for _ in range(100):
            if _sh("redis-cli", "-h", host, "ping", ns=self.ns("db"), check=False).stdout.strip() == "PONG":
                return proc
            time.sleep(0.1)
        raise RuntimeError(f"redis-server on db did not answer:\n{proc.text()[-2000:]}")

    def stop_redis(self) -> None:
        for proc in [p for p in self.procs if p.host == "db" and p.name == "redis"]:
            self.stop(proc)
            self.procs.remove(proc)

    def env(self, host: str, **extra: str) -> dict[str, str]:
        """A process's environment on `host`: production mode against db."""
        url = f"http://{self.ip(host)}:8000"
        env = {**os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
               "VOICE_VAR_DIR": str(self.workdir / host), "SECRET_KEY": "cluster-secret", "DEBUG": "false",
               "ALLOWED_HOSTS": "*", "PUBLIC_BASE_URL": url, "CSRF_TRUSTED_ORIGINS": url,
               "VOICE_PROVIDER": "local", "VOICE_EVENT_DELIVERY": "layer", "VOICE_WS_REFRESH_SECONDS": "1",
               "VOICE_WORKER_HEARTBEAT_SECONDS": "0.5", "VOICE_WORKER_DEAD_AFTER": "4",
               "VOICE_TEARDOWN_POLL_SECONDS": "0.5", "VOICE_METRICS_ALLOWED_IPS": f"{self.subnet}.0/24",
               **extra}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        (self.workdir / host).mkdir(exist_ok=True)
        return env

    def manage(self, host: str, *args: str) -> str:
        done = subprocess.run(["ip", "netns", "exec", self.ns(host), PYTHON, "manage.py", *args], cwd=ROOT,
                              env=self.env(host), capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} on {host}:\n{done.stderr[-3000:]}")
        return done.stdout

    def start_web(self, host: str, **extra: str) -> "ClusterServer":
        """Daphne on `host` (`extra`: settings of its own, DATABASE_URL through a slow link say)."""
        env = self.env(host, **extra)
        proc = self.start(host, "daphne", [DAPHNE, "-b", self.ip(host), "-p", "8000", "voiceproject.asgi:application"],
                          env=env)
        server = ClusterServer(self, host, f"http://{self.ip(host)}:8000", env, proc)
        # Ask from the server's own host: the answer proves it serves on its address.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _sh("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{server.url}/api/schema/",
                   ns=self.ns(host), check=False).stdout == "200":
                return server
            if proc.popen.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"{host} did not serve:\n{proc.text()[-3000:]}")

    def start_bot(self, host: str, transcript: str, *, pool: int = 2, **extra: str) -> Proc:
        """A worker on `host` with its hosted models on a fake API on the host's own loopback
        (`extra`: more settings, VOICE_WORKER_DEAD_AFTER say)."""
        fake = self.start(host, "fake-openai", [PYTHON, "-c", FAKE_RUNNER, str(ROOT), FAKE_KEY, transcript])
        url = next(line.split()[1] for line in self.wait_log(fake, "FAKE_URL", 30).splitlines()
                   if line.startswith("FAKE_URL"))
        url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/v1") else "/v1")
        hosted = {f"VOICE_{stage}_{key}": value for stage in ("STT", "LLM", "TTS")
                  for key, value in (("BASE_URL", url), ("API_KEY", FAKE_KEY))}
        env = self.env(host, VOICE_STT="openai", VOICE_LLM="openai", VOICE_TTS="openai",
                       VOICE_STT_MODEL="gpt-4o-transcribe", VOICE_LLM_MODEL="gpt-4.1-mini",
                       VOICE_TTS_MODEL="gpt-4o-mini-tts", VOICE_TTS_VOICE="alloy",
                       VOICE_WORKER_ADVERTISE_HOST=self.ip(host), VOICE_WEBRTC_HOSTS=self.ip(host), **hosted,
                       **extra)
        proc = self.start(host, "worker", [PYTHON, "manage.py", "runbotworker", "--host", self.ip(host),
                                           "--worker-id", host, "--pool-size", str(pool)], env=env)
        self.wait_log(proc, "listening on", 120)
        return proc

    def slow_link(self, port: int, to_port: int, delay_ms: float = 50) -> str:
        """A delay proxy on db (tests/delayproxy.py) from `port` to db's `to_port`; returns its address."""
        host = self.ip("db")
        proxy = self.start("db", f"delay-{to_port}", [PYTHON, "-m", "tests.delayproxy", "--listen", f"{host}:{port}",
                                                      "--to", f"{host}:{to_port}", "--delay-ms", str(delay_ms)])
        self.wait_log(proxy, "DELAY_PROXY", 30)
        return f"{host}:{port}"

    def stop_host(self, host: str) -> None:
        """Stop every process on `host` (a worker and its fake API, say)."""
        for proc in [p for p in self.procs if p.host == host]:
            self.stop(proc)
            self.procs.remove(proc)

    # --- the client host -----------------------------------------------------------------
    def on_client(self, scenario: Callable[[], Awaitable[T]], timeout: float = 240) -> T:
        """Run `scenario` in an event loop on a thread inside the client's namespace.

        A network namespace belongs to a thread, and the threads it starts inherit it, so
        every socket the scenario opens (HTTP, websockets, WebRTC) is the client host's.
        """
        box: dict[str, Any] = {}

        def run() -> None:
            fd = os.open(f"/run/netns/{self.ns('client')}", os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), "setns into the client's namespace failed")
            finally:
                os.close(fd)
            try:
                box["value"] = asyncio.run(scenario())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=run, name="client-host", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"the client's scenario did not finish in {timeout} s")
        if "error" in box:
            raise box["error"]
        return box["value"]


@dataclass
class ClusterServer:
    """A Daphne on a web host: what tests.botharness.Client needs of a LiveServer."""

    cluster: Cluster
    host: str
    url: str
    env: dict[str, str]
    proc: Proc

    def manage(self, *args: str) -> str:
        return self.cluster.manage(self.host, *args)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """A request from the client's host."""
        return self.cluster.on_client(lambda: _get(self.url + path, **kwargs), timeout=60)


async def _get(url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        return await client.get(url, **kwargs)


def main() -> int:
    cluster = Cluster().up()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        cluster.start_data_stores()
        cluster.manage("web1", "migrate", "-v0")
        cluster.manage("web1", "seed_demo")
        for host in ("web1", "web2"):
            cluster.start_web(host)
        for host in ("bot1", "bot2"):
            cluster.start_bot(host, "What is the capital of France?")
        for host in HOSTS:
            print(f"{host:7} {cluster.ip(host):15} netns {cluster.ns(host)}")
        print(f"logs in {cluster.workdir}; Ctrl-C tears the cluster down", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
