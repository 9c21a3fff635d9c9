"""Which Ray a job runs on, and joining a cluster: the address forms, token authentication, a bounded wait.

``--farm`` takes:

- ``local`` (the default): worker processes on this machine; ``RAY_ADDRESS`` plays no part;
- ``ray``: the cluster in ``RAY_ADDRESS`` when it is set, else a private Ray on this machine
  whose every listener binds to 127.0.0.1;
- ``ray://HOST:PORT``: a cluster through its Ray Client server (``ray start --head
  --ray-client-server-port``, Ray's default 10001), from any machine that reaches it;
- ``HOST:PORT``: a cluster by its GCS address (``ray start --head --port``, Ray's default 6379); the
  driver then joins as a Ray driver and must run on a node of that cluster.

Joining checks the cluster before ``ray`` is imported (Ray reads ``RAY_AUTH_MODE`` once, at import):
one gRPC call without a token tells whether the address answers, whether it is the kind of server
its form names, and whether the cluster requires token authentication; a second one, with the token,
whether the cluster accepts it. A token is looked up as Ray does (``RAY_AUTH_TOKEN``, then the file
``RAY_AUTH_TOKEN_PATH`` names, then ``~/.ray/auth_token``); it is sent, never printed. When the
cluster requires a token and ``RAY_AUTH_MODE`` is unset, it is set to ``token`` for this process,
which is what Ray 2.60 needs to join a cluster by an explicit address. For a GCS address, a third
call (Ray imported by then) asks whether this machine runs a raylet of that cluster, which Ray's
driver needs and otherwise waits a minute for. Each check waits at most :data:`CHECK_TIMEOUT_S`;
``ray.init`` then gets the rest of :data:`JOIN_TIMEOUT_S`: an unreachable, refusing or silent
cluster is reported (exit 2, with what to set) within that bound, most of them at once.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from greybox.errors import InputError

CHECK_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 60.0
DEFAULT_CLIENT_PORT = 10001  # Ray's own default for ray://HOST
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 instead of the machine's address

FORMS = "local, ray, ray://HOST:PORT (Ray Client) or HOST:PORT (GCS address, on a cluster node)"
START_HINT = ("start the head (`RAY_AUTH_MODE=token ray start --head --port=6379 --ray-client-server-port=10001`; the README's "
              "cluster section) or point greybox at it: --farm ray://HEAD:10001 from any machine, --farm HEAD:6379 "
              "on a cluster node, or RAY_ADDRESS with --farm ray")
TOKEN_HINT = ("set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to a file holding the token, or copy the head's token to "
              "~/.ray/auth_token (`ray get-auth-token` on the head prints it)")

# The two calls, as Ray's generated stubs name and encode them (ray.core.generated cannot be imported
# here: importing it imports ray, which fixes RAY_AUTH_MODE). A test checks these against the stubs.
GCS_CHECK = ("/ray.rpc.NodeInfoGcsService/GetClusterId", b"")  # GetClusterIdRequest(), empty
CLIENT_CHECK = ("/ray.rpc.RayletDriver/ClusterInfo", b"\x08\x06")  # ClusterInfoRequest(type=PING)


class ClusterUnavailable(ConnectionError):
    """The cluster cannot be joined; the message says why and what to set."""


@dataclass(frozen=True)
class FarmTarget:
    """Where a job runs: ``kind`` is local, private (a Ray of our own), client (ray://) or gcs."""

    kind: str
    host: str = ""
    port: int = 0
    source: str = "--farm"  # or "RAY_ADDRESS"

    @property
    def address(self) -> str | None:
        """What ``ray.init(address=...)`` gets; None for local and private."""
        if self.kind == "client":
            return f"ray://{_host_port(self.host, self.port)}"
        if self.kind == "gcs":
            return _host_port(self.host, self.port)
        return None

    @property
    def is_cluster(self) -> bool:
        return self.kind in ("client", "gcs")

    def label(self) -> str:
        where = self.address or self.kind
        return f"{where} (from RAY_ADDRESS)" if self.source == "RAY_ADDRESS" else where


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_farm(farm: str, environ=None) -> FarmTarget:
    """The target ``--farm`` names (``ray`` reads ``RAY_ADDRESS``); InputError for anything else. Imports no ray."""
    environ = os.environ if environ is None else environ
    value = (farm or "").strip()
    if value == "local":
        return FarmTarget("local")
    if value == "ray":
        address = environ.get("RAY_ADDRESS", "").strip()
        if not address:
            return FarmTarget("private")
        return _parse_address(address, "RAY_ADDRESS", f"RAY_ADDRESS={address!r} (with --farm ray)")
    return _parse_address(value, "--farm", f"--farm {farm!r}")


def _parse_address(value: str, source: str, what: str) -> FarmTarget:
    kind, rest = ("client", value[len("ray://"):]) if value.startswith("ray://") else ("gcs", value)
    if "://" in rest:
        raise InputError(f"{what}: not a Ray address; use {FORMS} (the dashboard's http:// address is not one)")
    host, sep, port_text = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if kind == "client" and (not sep or "]" in port_text):  # ray://HOST: Ray's default client port
        host, port_text = rest.strip("[]"), str(DEFAULT_CLIENT_PORT)
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536 or "/" in host or " " in host:
        raise InputError(f"{what}: not a Ray address; use {FORMS}")
    return FarmTarget(kind, host, int(port_text), source)


def _is_loopback(host: str) -> bool:
    return host == "localhost" or host == "::1" or host.startswith("127.")


def machine_address() -> str:
    """The address Ray gives this machine (the interface of the default route; no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("8.8.8.8", 80))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def find_token(environ=None) -> tuple[str | None, str]:
    """(token, where it came from) in Ray's order; the token is for the request header only, never for messages."""
    environ = os.environ if environ is None else environ
    if environ.get("RAY_AUTH_TOKEN", "").strip():
        return environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    named = environ.get("RAY_AUTH_TOKEN_PATH", "")
    if named:
        where = f"RAY_AUTH_TOKEN_PATH={named}"
        try:
            token = Path(named).expanduser().read_text().strip()
        except OSError as err:
            raise ClusterUnavailable(f"{where}: cannot read it ({err.strerror}); point it at the file holding the "
                                     "cluster's token, or unset it") from None
        if not token:  # Ray aborts the whole process on this one
            raise ClusterUnavailable(f"{where}: the file is empty; point it at the file holding the cluster's token")
        return token, where
    default = Path.home() / ".ray" / "auth_token"
    try:
        token = default.read_text().strip()
    except OSError:
        return None, "~/.ray/auth_token"
    return (token or None), "~/.ray/auth_token"


def _call(kind: str, host: str, port: int, token: str | None, timeout: float):
    """The status code of one check call (grpc.StatusCode.OK when it answers)."""
    import grpc

    method, request = CLIENT_CHECK if kind == "client" else GCS_CHECK
    metadata = [("authorization", f"Bearer {token}")] if token else None
    # Ray's own channels never go through an HTTP proxy; neither does this one.
    with grpc.insecure_channel(_host_port(host, port), options=[("grpc.enable_http_proxy", 0)]) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as err:
            return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


_CHANGED: dict[str, str | None] = {}  # the Ray settings this process changed, with their values before


def _set_ray_setting(name: str, value: str | None) -> None:
    """Set (None: unset) a Ray environment setting for this process and the Ray processes it starts.

    Ray reads these once, when it is imported; where it already is (a test process, a library
    caller), the same refresh Ray itself does when it turns token mode on is applied."""
    _CHANGED.setdefault(name, os.environ.get(name))
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    if "ray" not in sys.modules:
        return
    if name == "RAY_AUTH_MODE":
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    elif name == LOOPBACK_ENV:
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = ray_constants.env_bool(LOOPBACK_ENV, not ray_constants.IS_WINDOWS_OR_OSX)


def restore_ray_settings() -> None:
    """Undo what this module set, once Ray is shut down: a later job in the same process starts afresh."""
    for name, before in list(_CHANGED.items()):
        _set_ray_setting(name, before)
    _CHANGED.clear()


def use_loopback_only() -> None:
    """Keep a Ray that this process starts, or joins on this machine, on 127.0.0.1 (Ray otherwise
    swaps 127.0.0.1 for the machine's address, and its servers then listen on every interface)."""
    if os.environ.get(LOOPBACK_ENV) != "0":
        _set_ray_setting(LOOPBACK_ENV, "0")


def check_cluster(target: FarmTarget, deadline: float) -> str | None:
    """Check reachability, server kind and authentication before ray is imported; set what Ray needs.

    Returns the token the cluster accepted (None: it asks for none); raises ClusterUnavailable
    with the reason and what to set."""
    import grpc

    label = target.label()
    server = "Ray Client server" if target.kind == "client" else "Ray GCS"
    host = target.host
    unreachable = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        token, _ = find_token()  # TLS channels are Ray's to set up: only the mode is settled here
        if token and "RAY_AUTH_MODE" not in os.environ:
            _set_ray_setting("RAY_AUTH_MODE", "token")
        return token
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower() or None
    code, details = _call(target.kind, host, target.port, None, _left(deadline))
    if code in unreachable:
        why = "no answer" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "connection refused or host unreachable"
        raise ClusterUnavailable(f"cannot reach the Ray cluster at {label} ({why}, waited at most "
                                 f"{CHECK_TIMEOUT_S:g} s); {START_HINT}")
    if code not in (grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED):
        other = ("ray://HOST:PORT takes the head's --ray-client-server-port (Ray's default 10001); the GCS port "
                 "(--port, default 6379) is written without ray://, on a cluster node" if target.kind == "client" else
                 "HOST:PORT takes the head's GCS port (--port, Ray's default 6379); the Ray Client port "
                 "(--ray-client-server-port, default 10001) is written ray://HOST:PORT")
        raise ClusterUnavailable(f"{label} answers, but not as a {server} ({code.name}: {details[:120]}); {other}")
    if target.kind == "gcs" and _is_loopback(host):
        # Ray's driver dials the machine's address for a loopback GCS address; a head that listens on
        # loopback only does not answer there, and Ray must then be told to stay on 127.0.0.1.
        mine = machine_address()
        if not _is_loopback(mine) and _call("gcs", mine, target.port, None, _left(deadline))[0] in unreachable:
            use_loopback_only()
    if code == grpc.StatusCode.OK or mode not in (None, "token", "disabled"):
        return None  # no authentication, or a mode Ray checks itself (e.g. k8s)
    # The cluster requires a token.
    if mode == "disabled":
        raise ClusterUnavailable(f"the Ray cluster at {label} requires token authentication, but RAY_AUTH_MODE=disabled "
                                 f"here; unset RAY_AUTH_MODE (or set it to token) and {TOKEN_HINT}")
    token, where = find_token()
    if token is None:
        raise ClusterUnavailable(f"the Ray cluster at {label} requires token authentication and this machine has "
                                 f"no token; {TOKEN_HINT}")
    code, details = _call(target.kind, host, target.port, token, _left(deadline))
    if code == grpc.StatusCode.UNAUTHENTICATED:
        raise ClusterUnavailable(f"the Ray cluster at {label} refused the token from {where}: it is not the head's "
                                 f"token; {TOKEN_HINT}")
    if code != grpc.StatusCode.OK:
        raise ClusterUnavailable(f"the Ray cluster at {label} did not answer the authenticated check "
                                 f"({code.name}: {details[:120]}); {START_HINT}")
    if mode is None:
        _set_ray_setting("RAY_AUTH_MODE", "token")
    return token


def runs_a_node_of(target: FarmTarget, token: str | None, timeout: float) -> bool | None:
    """Whether this machine runs a raylet of the cluster, found the way Ray's driver finds one (the
    ``--node_id`` of local raylet processes, alive in the cluster's GCS); None when it cannot tell.

    Ray imported: call only once check_cluster has settled RAY_AUTH_MODE."""
    try:
        import grpc
        from ray._private.services import find_node_ids
        from ray.core.generated import gcs_pb2, gcs_service_pb2, gcs_service_pb2_grpc

        local = find_node_ids()
        if not local:
            return False
        selector = gcs_service_pb2.GetAllNodeInfoRequest.NodeSelector
        request = gcs_service_pb2.GetAllNodeInfoRequest(
            node_selectors=[selector(node_id=bytes.fromhex(node)) for node in local],
            state_filter=gcs_pb2.GcsNodeInfo.GcsNodeState.ALIVE)
        metadata = [("authorization", f"Bearer {token}")] if token else None
        with grpc.insecure_channel(_host_port(target.host, target.port), options=[("grpc.enable_http_proxy", 0)]) as ch:
            reply = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(ch).GetAllNodeInfo(request, timeout=timeout,
                                                                                   metadata=metadata)
        return len(reply.node_info_list) > 0
    except Exception:  # noqa: BLE001 - Ray's own join then decides, within the time left
        return None


def _left(deadline: float, most: float | None = None) -> float:
    """Seconds to wait now: what is left of ``deadline``, at most ``most`` (a check's CHECK_TIMEOUT_S)."""
    return max(0.1, min(CHECK_TIMEOUT_S if most is None else most, deadline - time.monotonic()))


def join_cluster(target: FarmTarget, **init_kwargs) -> None:
    """Check the cluster, then ``ray.init`` it, all within :data:`JOIN_TIMEOUT_S`; ClusterUnavailable
    otherwise (and the Ray settings this module changed are put back)."""
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    try:
        _join(target, deadline, init_kwargs)
    except BaseException:
        restore_ray_settings()
        raise


def _join(target: FarmTarget, deadline: float, init_kwargs: dict) -> None:
    token = check_cluster(target, deadline)
    label = target.label()
    import ray

    if target.kind == "gcs" and runs_a_node_of(target, token, _left(deadline)) is False:
        raise ClusterUnavailable(
            f"this machine is not a node of the Ray cluster at {label}, and a GCS address only joins from one "
            "(Ray's driver needs a raylet of that cluster here): use ray://HEAD:10001 (its Ray Client server), "
            f"or make this machine a node first (`RAY_AUTH_MODE=token ray start --address={_host_port(target.host, target.port)}`)")
    outcome: dict[str, BaseException | None] = {}

    def connect() -> None:
        while True:
            try:
                ray.init(address=target.address, **init_kwargs)
                outcome["error"] = None
                return
            except ConnectionAbortedError as err:
                # The head's Ray Client server forks a session process that sometimes dies at once
                # (ray-project/ray#63202, open in Ray 2.60); Ray has disconnected cleanly: try again.
                if time.monotonic() > deadline - CHECK_TIMEOUT_S:
                    outcome["error"] = err
                    return
                print(f"greybox: note: the Ray Client server at {target.label()} failed to start a session "
                      "(a known Ray bug, ray-project/ray#63202); trying again", file=sys.stderr)
                time.sleep(1.0)
            except BaseException as err:  # noqa: BLE001 - reported below, in the caller's thread
                outcome["error"] = err
                return

    # ray.init has no overall time limit (an unreachable GCS is retried for minutes): it runs in a
    # daemon thread that is abandoned, still trying, when the time is up.
    thread = threading.Thread(target=connect, name="greybox-ray-join", daemon=True)
    thread.start()
    thread.join(_left(deadline, JOIN_TIMEOUT_S))
    if "error" not in outcome:
        hint = ("this machine must be a node of that cluster for a GCS address; from elsewhere use ray://HEAD:10001"
                if target.kind == "gcs" else "the head's Ray Client server did not start a session for it; see "
                "ray_client_server*.log in the head's Ray logs")
        raise ClusterUnavailable(f"the Ray cluster at {label} accepted this machine, but joining it took over "
                                 f"{JOIN_TIMEOUT_S:g} s; {hint}")
    error = outcome["error"]
    if error is not None:
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ClusterUnavailable(f"Ray could not join the cluster at {label}: {first}; {START_HINT}")
