"""Joining a Ray cluster as users run one: a real head (``ray start --head``) with token
authentication, every listener on 127.0.0.1, rendered through by each address form and compared
byte for byte with a local run; and every way joining fails: exit 2, within a bounded time, with
what to set, and the output folder exactly as it was.

The head is started once for the module, in a session of its own, with HOME in a temporary folder
(its token never touches the user's ~/.ray), and is stopped by the PIDs of that session: never
``ray stop``, which ends every Ray process on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import pytest

from render_farm import ray_connection
from render_farm.cli import main
from render_farm.ray_connection import FarmTarget, parse_farm
from tests.support.tiny_templates import TINY
from test_farm_faults import _assert_same_as_reference, _view_files

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
HEAD_PORTS = ("port", "ray-client-server-port", "dashboard-port", "dashboard-agent-listen-port",
              "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port", "node-manager-port",
              "object-manager-port")


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Ray setting of the engineer's (address, token, mode)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class LoopbackCluster:
    base: Path
    home: Path  # HOME of the head, whose ~/.ray/auth_token holds the token
    token: str
    ports: dict[str, int]
    leader: subprocess.Popen

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.ports['port']}"

    @property
    def client(self) -> str:
        return f"ray://127.0.0.1:{self.ports['ray-client-server-port']}"

    def pids(self) -> list[int]:
        """The processes this cluster consists of: its session (``ray start`` ran as a session
        leader) and anything else naming its private temporary folder."""
        import psutil

        self.leader.poll()  # reaps it once it has exited
        found = []
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if os.getsid(proc.pid) == self.leader.pid or str(self.base) in " ".join(proc.info["cmdline"] or []):
                    found.append(proc.pid)
            except (OSError, psutil.Error):
                pass
        return found


def _start_head() -> LoopbackCluster:
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip("the ray command is not installed next to this Python")
    base = Path(tempfile.mkdtemp(prefix="gbray-"))  # short: Ray's socket paths live under it
    home = base / "home"
    (home / ".ray").mkdir(parents=True)
    token = secrets.token_hex(32)
    (home / ".ray" / "auth_token").write_text(token)
    ports = dict(zip(HEAD_PORTS, _free_ports(len(HEAD_PORTS))))
    cmd = [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           "--include-dashboard=false", "--num-cpus=2", "--num-gpus=0", f"--temp-dir={base / 'ray'}",
           "--disable-usage-stats", *[f"--{name}={port}" for name, port in ports.items()]]
    # Token authentication on; RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps Ray from swapping 127.0.0.1
    # for the machine's address (it would then listen on every interface).
    env = _clean_env(HOME=str(home), RAY_AUTH_MODE="token", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    log = open(base / "head.log", "w")
    leader = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    cluster = LoopbackCluster(base, home, token, ports, leader)
    import grpc

    deadline = time.monotonic() + 120
    while True:
        # `ray start` prints this once every process of the head (the raylet last) is up.
        started = "Ray runtime started" in (base / "head.log").read_text()
        codes = [ray_connection._call(kind, "127.0.0.1", ports[name], token, 1.0)[0]
                 for kind, name in (("gcs", "port"), ("client", "ray-client-server-port"))] if started else []
        if codes and all(code == grpc.StatusCode.OK for code in codes):
            return cluster
        if leader.poll() is not None or time.monotonic() > deadline:
            _stop_head(cluster)
            raise AssertionError(f"the test head did not come up: {(base / 'head.log').read_text()[-3000:]}")
        time.sleep(0.5)


def _stop_head(cluster: LoopbackCluster) -> None:
    """SIGTERM to ``ray start --block`` (it stops what it started), then SIGKILL to whatever of the
    cluster's own processes is left; then its folder goes."""
    try:
        if cluster.leader.poll() is None:
            cluster.leader.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while cluster.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in cluster.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        cluster.leader.wait(timeout=10)
    finally:
        shutil.rmtree(cluster.base, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray")
    pytest.importorskip("psutil")
    head = _start_head()
    try:
        yield head
    finally:
        _stop_head(head)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def reference(template, tmp_path_factory) -> dict[str, bytes]:
    base = tmp_path_factory.mktemp("reference")
    assert main(["render", str(template), "--out", str(base / "out"), "--store", str(base / "store")]) == 0
    return _view_files(base / "out")


def _render(template: Path, out: Path, farm: str, env: dict[str, str], import_ray_first: bool = False):
    code = "import sys\n" + ("import ray\n" if import_ray_first else "") + \
        "from render_farm.cli import main\nsys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "render", str(template), "--out", str(out), "--store", str(out.parent / "store"),
           "--farm", farm]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def _loopback_only(cluster: LoopbackCluster) -> list[str]:
    """Every socket a process of the cluster listens on (or binds), as 'name ip:port'; asserts it found some."""
    import psutil

    bound = []
    for pid in cluster.pids():
        try:
            proc = psutil.Process(pid)
            for conn in proc.net_connections(kind="inet"):
                if conn.status in (psutil.CONN_LISTEN, psutil.CONN_NONE) and conn.laddr:
                    bound.append((proc.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            pass
    assert len(bound) >= 5, f"found too few listening sockets to judge: {bound}"
    return [f"{name} {ip}:{port}" for name, ip, port in bound if ip not in LOOPBACK]


def _render_and_compare(cluster, template, reference, out: Path, farm: str, env: dict[str, str],
                        import_ray_first: bool = False) -> None:
    done = _render(template, out, farm, env, import_ray_first)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, f"{farm}: {printed[-3000:]}"
    _assert_same_as_reference(out, reference)
    first = json.loads((out / "run_log.jsonl").read_text().splitlines()[0])
    address = env.get("RAY_ADDRESS") if farm == "ray" else farm
    assert first["executor_detail"].startswith(f"ray {address}"), first["executor_detail"]
    written = "".join(p.read_text(errors="replace") for p in out.rglob("*")
                      if p.is_file() and p.suffix in (".json", ".jsonl", ".log"))
    assert cluster.token not in printed and cluster.token not in written, f"{farm}: the token was printed"


def test_joins_a_token_cluster_by_ray_client_byte_identical_to_local(cluster, template, reference, tmp_path):
    """ray://HOST:PORT, the token in ~/.ray/auth_token and RAY_AUTH_MODE unset (as a new user has
    it): greybox turns token mode on, joins, and writes the local run's bytes; the token is printed
    nowhere; every socket of the cluster is on loopback."""
    _render_and_compare(cluster, template, reference, tmp_path / "out", cluster.client, _clean_env(HOME=str(cluster.home)))
    assert _loopback_only(cluster) == [], "the test cluster listens beyond loopback"


@pytest.mark.slow
def test_joins_by_gcs_address_and_by_ray_address(cluster, template, reference, tmp_path):
    """HOST:PORT with the token in RAY_AUTH_TOKEN, and --farm ray with RAY_ADDRESS (ray:// and a GCS
    address) and the token in RAY_AUTH_TOKEN_PATH, ray imported before greybox settles
    RAY_AUTH_MODE (as a library caller has it): each writes the local run's bytes."""
    no_token_home = tmp_path / "home"
    no_token_home.mkdir()
    token_file = tmp_path / "token"
    token_file.write_text(cluster.token + "\n")
    _render_and_compare(cluster, template, reference, tmp_path / "gcs", cluster.gcs,
                        _clean_env(HOME=str(no_token_home), RAY_AUTH_TOKEN=cluster.token))
    for name, address in (("env-client", cluster.client), ("env-gcs", cluster.gcs)):
        env = _clean_env(HOME=str(no_token_home), RAY_ADDRESS=address, RAY_AUTH_TOKEN_PATH=str(token_file))
        _render_and_compare(cluster, template, reference, tmp_path / name, "ray", env, import_ray_first=True)


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_refusing_cluster_exits_2_at_once_and_leaves_the_folder_as_it_was(cluster, template, tmp_path, monkeypatch,
                                                                          capsys):
    """No token, a wrong token, RAY_AUTH_MODE=disabled, the wrong port for the form, a bad token
    file, nothing listening: exit 2 in about a second, saying what to set; a new --out is not
    created and a finished one is not touched (no job.json, lock or log written)."""
    finished = tmp_path / "finished"
    assert main(["render", str(template), "--out", str(finished), "--store", str(tmp_path / "store")]) == 0
    before = _snapshot(finished)
    empty_home = tmp_path / "empty_home"
    empty_home.mkdir()
    free_port = _free_ports(1)[0]
    cases = [
        (cluster.client, {"HOME": empty_home}, "no token; set RAY_AUTH_TOKEN"),
        (cluster.gcs, {"HOME": empty_home, "RAY_AUTH_TOKEN": "not-the-token"}, "refused the token from RAY_AUTH_TOKEN"),
        (cluster.gcs, {"HOME": cluster.home, "RAY_AUTH_MODE": "disabled"}, "RAY_AUTH_MODE=disabled here"),
        (f"ray://{cluster.gcs}", {"HOME": cluster.home}, "not as a Ray Client server"),
        (cluster.client[len("ray://"):], {"HOME": cluster.home}, "not as a Ray GCS"),
        (cluster.gcs, {"HOME": empty_home, "RAY_AUTH_TOKEN_PATH": tmp_path / "absent"}, "RAY_AUTH_TOKEN_PATH="),
        (f"127.0.0.1:{free_port}", {"HOME": cluster.home}, "cannot reach the Ray cluster"),
        ("ray", {"HOME": cluster.home, "RAY_ADDRESS": f"ray://127.0.0.1:{free_port}"}, "(from RAY_ADDRESS)"),
    ]
    for farm, env, message in cases:
        for key in [k for k in os.environ if k.startswith("RAY_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        for out in (tmp_path / "new", finished):
            started = time.monotonic()
            code = main(["render", str(template), "--out", str(out), "--store", str(tmp_path / "store"), "--farm", farm])
            seconds = time.monotonic() - started
            err = capsys.readouterr().err
            assert code == 2 and message in err and "Traceback" not in err, (farm, env, err)
            assert seconds < ray_connection.CHECK_TIMEOUT_S, (farm, seconds)
            assert cluster.token not in err
        assert not (tmp_path / "new").exists()
        assert _snapshot(finished) == before, f"{farm}: the finished folder changed"


def test_silent_port_is_given_up_after_the_check_time(template, tmp_path, monkeypatch, capsys):
    """A port that accepts connections and never answers: exit 2 after CHECK_TIMEOUT_S."""
    monkeypatch.setattr(ray_connection, "CHECK_TIMEOUT_S", 1.5)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # never accepted: the TCP handshake completes, no HTTP/2 ever comes
    try:
        started = time.monotonic()
        code = main(["passes", str(template), "--out", str(tmp_path / "out"), "--farm",
                     f"ray://127.0.0.1:{silent.getsockname()[1]}"])
        seconds = time.monotonic() - started
    finally:
        silent.close()
    err = capsys.readouterr().err
    assert code == 2 and "no answer, waited at most 1.5 s" in err, err
    assert 1.4 < seconds < 4.0
    assert not (tmp_path / "out").exists()


class FakeRayServer:
    """A gRPC server on 127.0.0.1 that answers the calls in ``answers`` (method -> replies, each
    used once) and holds every other call until it is stopped."""

    def __init__(self, answers: dict[str, list[bytes]]):
        import grpc

        self.release = threading.Event()
        release, lock = self.release, threading.Lock()

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                def handle(request, context):
                    with lock:
                        replies = answers.get(details.method)
                        reply = replies.pop(0) if replies else None
                    if reply is None:
                        release.wait(60)
                        return b""
                    return reply

                return grpc.unary_unary_rpc_method_handler(handle)

        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        self.server.add_generic_rpc_handlers((Handler(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.release.set()
        self.server.stop(0)


def test_gcs_address_from_a_machine_that_is_not_a_node_exits_2_at_once(template, tmp_path, capsys):
    """HOST:PORT needs a raylet of that cluster on this machine (Ray's driver would look for one for
    a minute): said at once, with ray:// as the way from here."""
    pytest.importorskip("ray")
    from ray.core.generated import gcs_service_pb2

    no_nodes = gcs_service_pb2.GetAllNodeInfoReply().SerializeToString()
    fake = FakeRayServer({ray_connection.GCS_CHECK[0]: [b""] * 4,
                          "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo": [no_nodes] * 4})
    try:
        started = time.monotonic()
        code = main(["passes", str(template), "--out", str(tmp_path / "out"), "--farm", f"127.0.0.1:{fake.port}"])
        seconds = time.monotonic() - started
    finally:
        fake.stop()
    err = capsys.readouterr().err
    assert code == 2 and "this machine is not a node of the Ray cluster" in err and "ray://HEAD:10001" in err, err
    assert seconds < ray_connection.CHECK_TIMEOUT_S
    assert not (tmp_path / "out").exists()


def test_join_that_hangs_in_ray_init_is_given_up_within_the_bound(template, tmp_path):
    """A Ray Client server that passes the check and then never answers Ray: ray.init is abandoned
    when the join's time is up (here 4 s instead of JOIN_TIMEOUT_S), exit 2, nothing written."""
    pytest.importorskip("ray")
    fake = FakeRayServer({ray_connection.CLIENT_CHECK[0]: [b""]})
    port = fake.port
    try:
        code = ("import sys\nimport render_farm.ray_connection as c\nc.JOIN_TIMEOUT_S = 4\n"
                "from render_farm.cli import main\nsys.exit(main(sys.argv[1:]))")
        out = tmp_path / "out"
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", code, "passes", str(template), "--out", str(out), "--farm",
                               f"ray://127.0.0.1:{port}"], cwd=ROOT, env=_clean_env(HOME=str(tmp_path)),
                              capture_output=True, text=True, timeout=120)
        seconds = time.monotonic() - started
    finally:
        fake.stop()
    assert done.returncode == 2, done.stderr[-2000:]
    assert "joining it took over 4 s" in done.stderr and "did not start a session" in done.stderr
    assert seconds < 4 + 20  # the join's 4 s, plus starting Python and importing ray on a busy machine
    assert not out.exists()


def test_check_calls_are_the_ones_rays_stubs_define():
    """The two check calls are written out by hand (ray cannot be imported before RAY_AUTH_MODE is
    settled); they must be what Ray's generated stubs name and encode."""
    pytest.importorskip("ray")
    from ray.core.generated import gcs_service_pb2, ray_client_pb2

    def methods(module) -> set[str]:
        return {f"/{service.full_name}/{method.name}" for service in module.DESCRIPTOR.services_by_name.values()
                for method in service.methods}

    assert ray_connection.GCS_CHECK == ("/ray.rpc.NodeInfoGcsService/GetClusterId",
                                        gcs_service_pb2.GetClusterIdRequest().SerializeToString())
    assert ray_connection.GCS_CHECK[0] in methods(gcs_service_pb2)
    ping = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING).SerializeToString()
    assert ray_connection.CLIENT_CHECK == ("/ray.rpc.RayletDriver/ClusterInfo", ping)
    assert ray_connection.CLIENT_CHECK[0] in methods(ray_client_pb2)


@pytest.mark.parametrize("farm, environ, expected, address", [
    ("local", {"RAY_ADDRESS": "10.0.0.1:6379"}, FarmTarget("local"), None),
    ("ray", {}, FarmTarget("private"), None),
    ("ray", {"RAY_ADDRESS": " "}, FarmTarget("private"), None),
    ("ray", {"RAY_ADDRESS": "ray://head:10001"}, FarmTarget("client", "head", 10001, "RAY_ADDRESS"), "ray://head:10001"),
    ("ray", {"RAY_ADDRESS": "10.0.0.1:6379"}, FarmTarget("gcs", "10.0.0.1", 6379, "RAY_ADDRESS"), "10.0.0.1:6379"),
    ("ray://head.farm:10002", {"RAY_ADDRESS": "x:1"}, FarmTarget("client", "head.farm", 10002), "ray://head.farm:10002"),
    ("ray://head", {}, FarmTarget("client", "head", 10001), "ray://head:10001"),
    ("head:6379", {}, FarmTarget("gcs", "head", 6379), "head:6379"),
    ("[::1]:6379", {}, FarmTarget("gcs", "::1", 6379), "[::1]:6379"),
    ("ray://[fd00::2]:10001", {}, FarmTarget("client", "fd00::2", 10001), "ray://[fd00::2]:10001"),
])
def test_farm_forms(farm, environ, expected, address):
    target = parse_farm(farm, environ)
    assert target == expected and target.address == address


@pytest.mark.parametrize("farm, environ, message", [
    ("slurm", {}, "--farm 'slurm': not a Ray address"),
    ("head:port", {}, "not a Ray address"),
    ("head:70000", {}, "not a Ray address"),
    (":6379", {}, "not a Ray address"),
    ("ray", {"RAY_ADDRESS": "http://head:8265"}, "RAY_ADDRESS='http://head:8265' (with --farm ray)"),
])
def test_bad_farm_values(farm, environ, message):
    from greybox.errors import InputError

    with pytest.raises(InputError) as caught:
        parse_farm(farm, environ)
    assert message in str(caught.value)


@pytest.mark.slow
def test_private_ray_listens_on_loopback_only(tmp_path):
    """--farm ray without RAY_ADDRESS: every socket of the Ray it starts is on 127.0.0.1 (Ray would
    otherwise swap 127.0.0.1 for the machine's address and listen on every interface)."""
    pytest.importorskip("ray")
    pytest.importorskip("psutil")
    code = """
import json, psutil
from render_farm.ray_executor import RayExecutor
executor = RayExecutor(None, workers=1, threads=1, include_dashboard=False)
me = psutil.Process()
bound = []
for proc in [me] + me.children(recursive=True):
    try:
        bound += [(proc.name(), c.laddr.ip) for c in proc.net_connections(kind="inet")
                  if c.status in (psutil.CONN_LISTEN, psutil.CONN_NONE) and c.laddr]
    except psutil.Error:
        pass
executor.shutdown()
print("BOUND", json.dumps(bound))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_clean_env(HOME=str(tmp_path)), capture_output=True, text=True,
                          timeout=180)
    line = next((l for l in done.stdout.splitlines() if l.startswith("BOUND ")), None)
    assert line, done.stdout[-2000:] + done.stderr[-2000:]
    bound = json.loads(line[len("BOUND "):])
    assert len(bound) >= 5, bound
    assert [b for b in bound if b[1] not in LOOPBACK] == []


def test_ray_settings_greybox_changes_are_undone_on_shutdown(monkeypatch):
    """RAY_AUTH_MODE and the loopback switch are set for this process only while its Ray is up."""
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv(ray_connection.LOOPBACK_ENV, "1")
    ray_connection._set_ray_setting("RAY_AUTH_MODE", "token")
    ray_connection.use_loopback_only()
    assert os.environ["RAY_AUTH_MODE"] == "token" and os.environ[ray_connection.LOOPBACK_ENV] == "0"
    ray_connection.restore_ray_settings()
    assert "RAY_AUTH_MODE" not in os.environ and os.environ[ray_connection.LOOPBACK_ENV] == "1"


def test_a_ray_client_session_that_dies_at_start_is_tried_again(monkeypatch, capsys):
    """The head's Ray Client server sometimes loses the session process it forks (Ray's
    'Initialization failure from server', ray-project/ray#63202): greybox tries again."""
    ray = pytest.importorskip("ray")
    calls = []

    def init(address=None, **kwargs):
        calls.append(address)
        if len(calls) == 1:
            raise ConnectionAbortedError("Initialization failure from server:\n")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray_connection, "check_cluster", lambda target, deadline: None)
    ray_connection.join_cluster(FarmTarget("client", "head", 10001))
    assert calls == ["ray://head:10001", "ray://head:10001"]
    assert "ray-project/ray#63202" in capsys.readouterr().err
