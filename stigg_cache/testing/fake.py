"""A fake Stigg: a real HTTP server on loopback speaking Stigg's REST API.

The official SDKs point at it with ``base_url`` and parse its answers. Modes
switch at run time to simulate outages; every hang is bounded and ends when
the mode changes or the server closes, so tests stop by themselves.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import functools
import gzip
import json
import logging
import os
import re
import socket
import struct
import sys
import threading
import time
import weakref
import zlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from stigg_cache._support.clock import SYSTEM_CLOCK
from stigg_cache._support.log import FaultLog
from stigg_cache.models import AccessDeniedReason, FeatureEntitlement
from stigg_cache.testing._closing import Closing
from stigg_cache.testing.account import FakeAccount, json_answer
from stigg_cache.testing.graphql import answer_graphql, graphql_core, missing_extra, state_json
from stigg_cache.testing.subscriptions import ALL_STATUSES, graphql_object, rest_item

LOOPBACK = "127.0.0.1"
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: closing the connection resets it
HOLD_PORT_WAIT_S = 2.0  # for a child just forked to close the listening socket it inherited
MAX_HANG_S = 30.0  # a blackholed request is released after this, whatever the test does
TRICKLE_BYTE_INTERVAL_S = 0.05
BOMB_DECODED_BYTES = 64 * 1024 * 1024  # 8 times the 8 MiB a client may hold of an answer
_ACKNOWLEDGING = b'{"data": {}}'
_CUSTOMER = r"^/api/v1/customers/(?P<customer>[^/]+)"
_EDGE = r"^/edge/v1/c/(?P<customer>[^/]+)"  # the SDKs' edge_api_url is {url}/edge
_ROUTES = [
    ("GET", re.compile(_CUSTOMER + r"/entitlements$"), "entitlements"),
    ("POST", re.compile(r"^/api/v1/events$"), "events"),
    ("POST", re.compile(r"^/api/v2/usage$"), "usage"),
    ("POST", re.compile(r"^/api/v1/usage$"), "usage-v1"),  # deprecated by Stigg, still served
    ("POST", re.compile(_CUSTOMER + r"/promotional-entitlements$"), "promotions"),
    ("DELETE", re.compile(_CUSTOMER + r"/promotional-entitlements/(?P<feature>[^/]+)$"), "revoke"),
    ("POST", re.compile(r"^/graphql$"), "graphql"),
    ("GET", re.compile(_EDGE + r"/entitlements-state\.json$"), "edge-state"),
    ("GET", re.compile(_EDGE + r"/entitlements\.json$"), "edge-entitlements"),
    ("GET", re.compile(r"^/api/v1/subscriptions$"), "subscriptions"),
    ("GET", re.compile(_EDGE + r"/subscriptions\.json$"), "edge-subscriptions"),
]


class FakeMode(enum.Enum):
    """How the fake answers.

    UP: correctly. DOWN: connections refused (the port is closed).
    BLACKHOLE: connections accepted, never answered. ERROR_5XX: 503.
    RATE_LIMITED: 429 with ``Retry-After`` (none from the Edge API, as Stigg).
    SLOW: correct after ``delay_s``.
    TRICKLE: correct headers, then the body one byte every 50 ms.
    GARBAGE: 200 with a body that is not JSON. UNAUTHORIZED / FORBIDDEN: 401 / 403
    to every request (a revoked key, a gateway refusing while Stigg comes back).
    BOMB: 200 with ``Content-Encoding: gzip, gzip``: 286 bytes on the wire that
    inflate to ``BOMB_DECODED_BYTES`` of JSON saying ``{"data": {}}``.
    REDIRECT: 308 to ``/moved`` + the path, with ``{"data": {}}`` (a proxy or a
    load balancer in front of Stigg; ``/moved`` is no route of the fake's).
    REPLY_LOST: reads answered; a write (a POST: usage, events, a grant) is taken in and
    counted, then its connection is reset before the answer (a network cut on the way
    back: the sender cannot tell whether Stigg has it, and sends it again).
    """

    UP = "up"
    DOWN = "down"
    BLACKHOLE = "blackhole"
    ERROR_5XX = "error_5xx"
    RATE_LIMITED = "rate_limited"
    SLOW = "slow"
    TRICKLE = "trickle"
    GARBAGE = "garbage"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    BOMB = "bomb"
    REDIRECT = "redirect"
    REPLY_LOST = "reply_lost"


def _display(feature_id: str) -> str:
    return feature_id.replace("_", " ").replace("-", " ").capitalize()


def boolean(feature_id: str, *, granted: bool = True) -> FeatureEntitlement:
    """A boolean feature entitlement."""
    return FeatureEntitlement(
        feature_id, "BOOLEAN", is_granted=granted, display_name=_display(feature_id)
    )


def numeric(feature_id: str, value: float | None, *, unlimited: bool = False) -> FeatureEntitlement:
    """A configuration number (``usageLimit`` carries the value)."""
    return FeatureEntitlement(
        feature_id,
        "NUMBER",
        is_granted=True,
        usage_limit=value,
        has_unlimited_usage=unlimited,
        display_name=_display(feature_id),
    )


def metered(
    feature_id: str,
    *,
    limit: float | None,
    usage: float = 0.0,
    unlimited: bool = False,
    period_end: datetime | None = None,
) -> FeatureEntitlement:
    """A metered feature with a monthly reset."""
    now = datetime.now(UTC)
    end = period_end or now + timedelta(days=15)  # mid-period, as most checks are
    return FeatureEntitlement(
        feature_id,
        "NUMBER",
        is_granted=True,
        usage_limit=limit,
        current_usage=usage,
        has_unlimited_usage=unlimited,
        reset_period="MONTH",
        usage_period_start=end - timedelta(days=30),
        usage_period_end=end,
        display_name=_display(feature_id),
    )


def enum_feature(feature_id: str, values: list[str]) -> FeatureEntitlement:
    """An enum feature."""
    return FeatureEntitlement(
        feature_id,
        "ENUM",
        is_granted=True,
        enum_values=tuple(values),
        display_name=_display(feature_id),
    )


class FakeStigg(Closing):
    """A fake Stigg server on 127.0.0.1 (port chosen by the OS unless given).

    Attributes:
        counts: requests received per ``"METHOD route"``.
        gzip_answers: gzip every answer whose request accepts gzip, as Stigg's
            servers do (off by default: a capture then reads as plain JSON).
    """

    def __init__(
        self, *, api_key: str | None = None, port: int = 0, account: FakeAccount | None = None
    ) -> None:
        self.api_key = api_key
        self.account = account or FakeAccount()
        self._lock = threading.Lock()
        self._mode = FakeMode.UP
        self._delay_s = 0.0
        self._retry_after_s = 1.0
        self._release = threading.Event()
        self._closed = threading.Event()
        self.counts: Counter[str] = Counter()
        self._faults = FaultLog(SYSTEM_CLOCK)  # what the fake cannot do, logged once a minute
        self.batches: list[list[Any]] = []  # accepted event batches, as sent
        self.gzip_answers = False
        # (monotonic time, method, path, status, Retry-After) of every answer given
        self.log: list[tuple[float, str, str, int, str | None]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._held: socket.socket | None = None  # the port while DOWN, bound, not listening
        self._port = port
        self._listen()
        _SERVING.add(self)

    # -- configuration ----------------------------------------------------------

    def set_customer(
        self,
        customer_id: str,
        entitlements: list[FeatureEntitlement],
        *,
        resource_id: str | None = None,
        access_denied_reason: AccessDeniedReason | None = None,
        plans: Sequence[str] = (),
    ) -> None:
        """Create or replace a customer's (or resource's) entitlements, and its active
        subscriptions with one to each of ``plans``."""
        self.account.set_customer(
            customer_id,
            entitlements,
            resource_id=resource_id,
            access_denied_reason=access_denied_reason,
            plans=plans,
        )

    def set_mode(self, mode: FakeMode, *, delay_s: float = 0.0, retry_after_s: float = 1.0) -> None:
        """Switch behaviour; hung requests are released, the port opens or closes."""
        with self._lock:
            old = self._mode
            self._mode, self._delay_s, self._retry_after_s = mode, delay_s, retry_after_s
            self._release.set()
            self._release = threading.Event()
        if mode is FakeMode.DOWN and old is not FakeMode.DOWN:
            self._stop_listening()
            self._hold_port()
        elif old is FakeMode.DOWN and mode is not FakeMode.DOWN:
            self._listen()

    @property
    def mode(self) -> FakeMode:
        """The current mode."""
        return self._mode

    @property
    def port(self) -> int:
        """The port on 127.0.0.1 (the OS's choice when 0 was given)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL to give an SDK (``base_url=``)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def graphql_url(self) -> str:
        """The GraphQL endpoint to give a GraphQL SDK (``api_url=``).

        Raises:
            ImportError: graphql-core, which the endpoint needs, is not installed
                (``pip install 'stigg-cache[testing]'``).
        """
        graphql_core()
        return f"{self.url}/graphql"

    @property
    def edge_url(self) -> str:
        """The Edge base URL to give a GraphQL SDK (``edge_api_url=``)."""
        return f"{self.url}/edge"

    def entitlement_requests(self) -> int:
        """How many entitlement reads the fake answered in UP, SLOW or TRICKLE mode."""
        return self.counts["GET entitlements"]

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        """Stop serving and release every hung request."""
        self._closed.set()
        self._release.set()
        self._stop_listening()
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def _forget_in_child(self) -> None:
        """In a forked child: the parent serves, so its sockets are closed here (a child
        holding the listening socket kept the parent from going DOWN and UP again:
        "Address already in use")."""
        server, self._server = self._server, None
        held, self._held = self._held, None
        for sock in (server.socket if server is not None else None, held):
            if sock is not None:
                sock.close()

    def _hold_port(self) -> None:
        """Keep the port bound while DOWN (connections are still refused: nothing listens),
        so no other process takes it before UP listens on it again.

        A child forked a moment ago closes the listening socket it inherited as it starts
        (:meth:`_forget_in_child`); until it has, the port is still taken: tried again for
        up to ``HOLD_PORT_WAIT_S``.
        """
        deadline = time.monotonic() + HOLD_PORT_WAIT_S
        while True:
            held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                held.bind((LOOPBACK, self._port))
            except OSError as error:
                held.close()
                if error.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
                continue
            self._held = held
            return

    def _listen(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()
        server = _Server((LOOPBACK, self._port), self)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fake-stigg-{self._port}",
        )
        self._thread.start()

    def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.drop_connections()

    # -- serving ----------------------------------------------------------------

    def _answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(target)
        found = _route(method, url.path)
        if found is None:
            self.counts[f"{method} unknown"] += 1
            return json_answer(
                404, {"message": f"no route {method} {url.path}", "code": "NotFound"}
            )
        name, match = found
        self.counts[f"{method} {name}"] += 1
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            return json_answer(401, {"message": "Unauthorized", "code": "Unauthenticated"})
        args = {k: unquote(v) for k, v in match.groupdict().items()}
        try:
            document = json.loads(body) if body else None
        except ValueError:
            return json_answer(400, {"message": "body is not JSON", "code": "BadRequest"})
        if name == "subscriptions":
            return _subscriptions_page(self.account, parse_qs(url.query))
        graphql = name == "graphql" or name.startswith("edge-")
        handler = self._graphql if graphql else self._dispatch
        return handler(name, args, parse_qs(url.query), document)

    def _dispatch(
        self, name: str, args: dict[str, str], query: dict[str, list[str]], document: Any
    ) -> tuple[int, dict[str, str], bytes]:
        account = self.account
        if name == "entitlements":
            resource = query.get("resourceId", [None])[0]
            return json_answer(200, {"data": account.entitlements(args["customer"], resource)})
        if name == "events":
            answer = account.report_events(document)
            if answer[0] == 200 and isinstance(document, dict):
                self.batches.append(list(document["events"]))
            return answer
        if name == "usage":
            return account.report_usage(document)
        if name == "usage-v1":
            return _as_v1_usage(account.report_usage(document))
        if name == "promotions":
            return account.grant_promotions(args["customer"], document)
        return account.revoke_promotion(args["customer"], args["feature"])

    def _graphql(
        self, name: str, args: dict[str, str], query: dict[str, list[str]], document: Any
    ) -> tuple[int, dict[str, str], bytes]:
        """What the GraphQL SDKs call: ``/graphql`` and the Edge JSON."""
        if name == "graphql":
            try:
                return answer_graphql(self.account, document)
            except ImportError as error:  # graphql-core missing: say so, as an answer
                event = "stigg_cache.testing_extra_missing"
                self._faults.report(event, str(error), level=logging.ERROR)
                return missing_extra(error)
        resource = query.get("resourceId", [None])[0]
        if name == "edge-subscriptions":
            held = self.account.subscriptions(args["customer"], resource)
            active = [graphql_object(subscription) for subscription in held]
            return json_answer(200, {"data": {"getActiveSubscriptions": active}})
        state = state_json(self.account, args["customer"], resource)
        if name == "edge-state":
            return json_answer(200, {"data": {"entitlementsState": state}})
        return json_answer(200, {"data": {"entitlements": state["entitlements"]}})


def _subscriptions_page(
    account: FakeAccount, query: dict[str, list[str]]
) -> tuple[int, dict[str, str], bytes]:
    """``GET /api/v1/subscriptions``: filtered by customer, resource and status (statuses
    comma-joined, as the REST SDK sends them), in one cursor page."""
    customer = query.get("customerId", [None])[0]
    if customer is None:
        return json_answer(400, {"message": "the fake lists one customer's", "code": "BadRequest"})
    statuses = ",".join(query.get("status", [])).split(",") if "status" in query else None
    held = account.subscriptions(
        customer, query.get("resourceId", [None])[0], statuses or ALL_STATUSES
    )
    page = [rest_item(subscription) for subscription in held]
    return json_answer(200, {"data": page, "pagination": {"next": None, "prev": None}})


def _as_v1_usage(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], bytes]:
    """The deprecated ``/api/v1/usage`` answers the same records as a bare list."""
    status, _, body = answer
    if status != 200:
        return answer
    return json_answer(200, {"data": json.loads(body)["data"]["usages"]})


@functools.cache
def bomb() -> bytes:
    """``{"data": {}}`` padded with spaces to ``BOMB_DECODED_BYTES``, gzipped twice."""
    block = b" " * (1024 * 1024)
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip format
    parts = [inner.compress(_ACKNOWLEDGING[:-1])]
    parts += [inner.compress(block) for _ in range(BOMB_DECODED_BYTES // len(block) - 1)]
    parts += [inner.compress(b" " * (len(block) - len(_ACKNOWLEDGING))), inner.compress(b"}")]
    once = b"".join([*parts, inner.flush()])
    return gzip.compress(once, compresslevel=9, mtime=0)


def _route(method: str, path: str) -> tuple[str, re.Match[str]] | None:
    for route_method, pattern, name in _ROUTES:
        match = pattern.match(path)
        if method == route_method and match:
            return name, match
    return None


_SERVING: weakref.WeakSet[FakeStigg] = weakref.WeakSet()


def _in_child() -> None:
    for fake in list(_SERVING):
        fake._forget_in_child()


os.register_at_fork(after_in_child=_in_child)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: a burst of workers connecting at once
    # overflowed it, and a dropped SYN costs its client a 1 s retransmission.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], fake: FakeStigg) -> None:
        super().__init__(address, _Handler)
        self.fake = fake
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-request is normal here (outages are the point)."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        """Reset every open connection: DOWN must not leave keep-alives working."""
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm
        # meets the client's delayed ACK and every answer waits ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence per-request logging."""

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        mode, release = fake._mode, fake._release
        if mode is FakeMode.BLACKHOLE:
            fake.counts[f"{method} blackholed"] += 1
            release.wait(MAX_HANG_S)
            self.close_connection = True
            return
        if mode is FakeMode.SLOW:
            release.wait(fake._delay_s)
        status, headers, answer = self._choose(method, mode, body)
        if mode is FakeMode.REPLY_LOST and method == "POST":
            fake.counts[f"{method} reply lost"] += 1
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            self.close_connection = True
            return
        if fake.gzip_answers and "gzip" in self.headers.get("Accept-Encoding", "") and answer:
            fake.counts["gzipped"] += 1
            headers = {**headers, "Content-Encoding": "gzip"}
            answer = gzip.compress(answer, mtime=0)
        retry_after = headers.get("Retry-After")
        fake.log.append(  # list.append is atomic: no lock on the request path
            (time.monotonic(), method, self.path.partition("?")[0], status, retry_after)
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if mode is FakeMode.TRICKLE:
            self._trickle(answer, release)
        else:
            self.wfile.write(answer)

    def _trickle(self, body: bytes, release: threading.Event) -> None:
        for index in range(len(body)):
            if release.wait(TRICKLE_BYTE_INTERVAL_S):
                self.close_connection = True
                return
            self.wfile.write(body[index : index + 1])
            self.wfile.flush()

    def _choose(
        self, method: str, mode: FakeMode, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        fake = self.server.fake
        if mode is FakeMode.ERROR_5XX:
            fake.counts[f"{method} 5xx"] += 1
            return json_answer(503, {"message": "Service Unavailable"})
        if mode is FakeMode.RATE_LIMITED:
            fake.counts[f"{method} 429"] += 1
            edge = self.path.startswith("/edge/")  # Stigg's Edge API gives no Retry-After
            retry = {} if edge else {"Retry-After": f"{fake._retry_after_s:g}"}
            return json_answer(429, {"message": "Too Many Requests"}, retry)
        if mode in (FakeMode.UNAUTHORIZED, FakeMode.FORBIDDEN):
            status = 401 if mode is FakeMode.UNAUTHORIZED else 403
            fake.counts[f"{method} {status}"] += 1
            return json_answer(status, {"message": "Unauthorized", "code": "Unauthenticated"})
        if mode in (FakeMode.GARBAGE, FakeMode.BOMB, FakeMode.REDIRECT):
            fake.counts[f"{method} {mode.value}"] += 1
            return self._unlike_stigg(mode)
        headers = {k.lower(): v for k, v in self.headers.items()}
        return fake._answer(method, self.path, headers, body)

    def _unlike_stigg(self, mode: FakeMode) -> tuple[int, dict[str, str], bytes]:
        """An answer as a proxy, a misconfigured gateway or an attacker may give."""
        json_type = {"Content-Type": "application/json"}
        if mode is FakeMode.GARBAGE:
            return 200, json_type, b"<html>oops"
        if mode is FakeMode.BOMB:
            return 200, {**json_type, "Content-Encoding": "gzip, gzip"}, bomb()
        return 308, {**json_type, "Location": f"/moved{self.path}"}, _ACKNOWLEDGING
