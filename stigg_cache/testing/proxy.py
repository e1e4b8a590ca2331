"""A fault-injecting TCP proxy on loopback, between a Stigg client and the fake Stigg.

Faults are switched at run time and apply to what is under way: latency and
jitter, a bandwidth cap, a blackhole (connections accepted, never answered),
refused connections (the port closes), a reset or a clean close after N bytes
of an answer, corrupted answer bodies, a slow trickle, and flapping between
faulty and clean on a schedule. HTTP-level faults (5xx, 429 with Retry-After,
garbage JSON) are the fake's own modes. Only loopback is ever proxied, and
every wait ends when the faults change, after ``MAX_HANG_S``, or on close.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import re
import socket
import struct
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import attrs

from stigg_cache.errors import ConfigurationError
from stigg_cache.testing._closing import Closing

LOOPBACK = "127.0.0.1"
MAX_HANG_S = 30.0
CHUNK_BYTES = 16_384
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


@attrs.frozen
class Faults:
    """What the proxy does to traffic now (all off by default).

    Attributes:
        latency_s / jitter_s: delay before each chunk of an answer (uniform jitter added).
        bandwidth_bps: answer bytes per second.
        blackhole: accept connections and never answer.
        refuse: close the port (clients get connection refused).
        reset_after_bytes: send this much of the answers, then reset the connection.
        truncate_after_bytes: send this much, then close cleanly (a short body).
        corrupt: flip bytes of answer bodies (after the headers).
        trickle_s: send answers one byte per this many seconds.
    """

    latency_s: float = 0.0
    jitter_s: float = 0.0
    bandwidth_bps: float | None = None
    blackhole: bool = False
    refuse: bool = False
    reset_after_bytes: int | None = None
    truncate_after_bytes: int | None = None
    corrupt: bool = False
    trickle_s: float | None = None


CLEAN = Faults()


def require_loopback(host: str) -> str:
    """``host`` if it is a loopback address; chaos never touches anything else.

    Raises:
        ConfigurationError: any other address or name.
    """
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigurationError(f"chaos only targets loopback (127.0.0.1, ::1), not {host!r}")
    return host


class FaultProxy(Closing):
    """Forwards ``127.0.0.1:port`` to an upstream loopback port, with :class:`Faults`."""

    def __init__(self, upstream_port: int, *, upstream_host: str = LOOPBACK, seed: int = 0) -> None:
        """Listen on a port chosen by the OS."""
        self._upstream = (require_loopback(upstream_host), upstream_port)
        self._faults = CLEAN
        self._random = random.Random(seed)  # noqa: S311 - jitter and bit flips, not secrets
        self._changed = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._port = 0
        self._listener: socket.socket | None = None
        self._flapper: threading.Thread | None = None
        self._flap_stop = threading.Event()
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._listen()

    @classmethod
    def to(cls, url: str, *, seed: int = 0) -> FaultProxy:
        """A proxy in front of ``http://127.0.0.1:PORT``."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ConfigurationError(f"proxy upstream {url!r}: write http://127.0.0.1:PORT")
        return cls(parts.port, upstream_host=parts.hostname, seed=seed)

    @property
    def url(self) -> str:
        """Base URL for a client: the proxy's address."""
        return f"http://{LOOPBACK}:{self._port}"

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def set(self, faults: Faults = CLEAN, **changes: Any) -> None:
        """Switch to ``faults`` (with ``changes``); hung connections are let go."""
        self._stop_flapping()
        self._apply(attrs.evolve(faults, **changes))

    def clear(self) -> None:
        """No faults."""
        self.set(CLEAN)

    def flap(self, faults: Faults, *, period_s: float, duration_s: float) -> None:
        """Alternate ``faults`` and clean every ``period_s / 2`` for ``duration_s``, then clean."""
        self._stop_flapping()
        stop = threading.Event()

        def run() -> None:
            deadline = time.monotonic() + min(duration_s, 3600.0)
            faulty = True
            while not stop.is_set() and not self._closed.is_set() and time.monotonic() < deadline:
                self._apply(faults if faulty else CLEAN)
                faulty = not faulty
                stop.wait(period_s / 2)
            if not self._closed.is_set():
                self._apply(CLEAN)

        self._flap_stop = stop
        self._flapper = threading.Thread(target=run, daemon=True, name="stigg-cache-flap")
        self._flapper.start()

    def close(self) -> None:
        """Stop listening and let every connection go."""
        self._closed.set()
        self._stop_flapping()
        self._changed.set()
        self._stop_listening()

    # -- internals --------------------------------------------------------------------

    def _stop_flapping(self) -> None:
        flapper, self._flapper = self._flapper, None
        if flapper is not None:
            self._flap_stop.set()
            flapper.join(timeout=5)

    def _apply(self, faults: Faults) -> None:
        with self._lock:
            old, self._faults = self._faults, faults
            changed, self._changed = self._changed, threading.Event()
        changed.set()  # wake every wait of the old faults
        if faults.refuse and not old.refuse:
            self._stop_listening()
            self._reset_open_connections()  # as when the host goes away
        elif old.refuse and not faults.refuse:
            self._listen()

    def _reset_open_connections(self) -> None:
        with self._lock:
            open_now = list(self._open)
        for client in open_now:
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                client.shutdown(socket.SHUT_RDWR)

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self._port))
        listener.listen(128)
        self._port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._open.add(client)
        try:
            self._relay(client)
        finally:
            with self._lock:
                self._open.discard(client)

    def _relay(self, client: socket.socket) -> None:
        with contextlib.closing(client):
            if self._faults.blackhole:
                self._hold(client)
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=MAX_HANG_S)
            except OSError:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                return
            with contextlib.closing(upstream):
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                requests = threading.Thread(target=_pipe, args=(client, upstream), daemon=True)
                requests.start()
                self._answer(upstream, client)
                # The request pipe holds the client socket in recv(): wake it, or the
                # close (and a reset's RST) would wait for the client to hang up.
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RD)
                requests.join(timeout=1.0)

    def _hold(self, client: socket.socket) -> None:
        """Read and drop whatever comes, answer nothing, until the faults change."""
        changed = self._changed
        client.settimeout(0.05)
        deadline = time.monotonic() + MAX_HANG_S
        while not changed.is_set() and time.monotonic() < deadline:
            try:
                if not client.recv(CHUNK_BYTES):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def _answer(self, upstream: socket.socket, client: socket.socket) -> None:
        """Forward the answers, doing to them what the faults say (read at every chunk)."""
        stream = _AnswerStream()
        while chunk := _recv(upstream):
            faults, changed = self._faults, self._changed
            if faults.blackhole:
                self._hold(client)
                return
            chunk = stream.take(chunk, faults, self._random)
            limit = faults.reset_after_bytes or faults.truncate_after_bytes
            if limit is not None and stream.sent >= limit:
                with contextlib.suppress(OSError):
                    client.sendall(chunk[: max(0, len(chunk) - (stream.sent - limit))])
                if faults.reset_after_bytes is not None:
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                return
            if not self._deliver(client, chunk, faults, changed):
                return

    def _deliver(
        self, client: socket.socket, chunk: bytes, faults: Faults, changed: threading.Event
    ) -> bool:
        """Send one chunk late, slowly or byte by byte; ``False`` once it cannot go on."""
        delay = faults.latency_s + self._random.uniform(0, faults.jitter_s)
        if faults.bandwidth_bps:
            delay += len(chunk) / faults.bandwidth_bps
        if delay and changed.wait(min(delay, MAX_HANG_S)) and self._closed.is_set():
            return False
        try:
            if not faults.trickle_s:
                client.sendall(chunk)
                return True
            for index in range(len(chunk)):
                client.sendall(chunk[index : index + 1])
                if changed.wait(faults.trickle_s):  # the faults changed: the rest at once
                    client.sendall(chunk[index + 1 :])
                    break
        except OSError:
            return False
        return True


@attrs.define
class _AnswerStream:
    """Answers of one connection so far: bytes sent, and which bytes are bodies.

    Headers are kept intact so a corrupted answer is still an answer; bodies are
    delimited by ``Content-Length`` (the fake always sends it; without it, the
    rest of the connection is body).
    """

    sent: int = 0
    headers: bytes = b""
    body_left: int | None = None  # None: reading headers

    def take(self, chunk: bytes, faults: Faults, rng: random.Random) -> bytes:
        """Account for ``chunk``; its body bytes corrupted if the faults say so."""
        self.sent += len(chunk)
        out = bytearray()
        while chunk:
            if self.body_left is None:
                self.headers += chunk
                end = self.headers.find(b"\r\n\r\n")
                if end < 0:
                    out += chunk
                    return bytes(out)
                consumed = len(chunk) - (len(self.headers) - end - 4)
                out += chunk[:consumed]
                length = re.search(rb"(?im)^content-length:\s*(\d+)", self.headers[:end])
                self.body_left = int(length.group(1)) if length else -1
                self.headers, chunk = b"", chunk[consumed:]
                continue
            size = len(chunk) if self.body_left < 0 else min(self.body_left, len(chunk))
            body, chunk = chunk[:size], chunk[size:]
            out += _flip(body, 0, rng) if faults.corrupt else body
            if self.body_left >= 0:
                self.body_left -= size
                if self.body_left == 0:
                    self.body_left = None
        return bytes(out)


def _recv(source: socket.socket) -> bytes:
    try:
        return source.recv(CHUNK_BYTES)
    except OSError:
        return b""


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Requests flow unchanged (faults act on answers and connections)."""
    try:
        while chunk := source.recv(CHUNK_BYTES):
            target.sendall(chunk)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _flip(chunk: bytes, start: int, rng: random.Random) -> bytes:
    """Flip one bit in every 16 bytes of ``chunk[start:]``."""
    if start >= len(chunk):
        return chunk
    damaged = bytearray(chunk)
    for index in range(start, len(damaged), 16):
        damaged[index] ^= 1 << rng.randrange(8)
    return bytes(damaged)
