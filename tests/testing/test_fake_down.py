"""A fake that is DOWN refuses connections and keeps its port for when it comes back."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import httpx
import pytest

from stigg_cache.testing.fake import FakeMode, FakeStigg


def test_down_refuses_connections_and_no_other_socket_takes_the_port() -> None:
    # Down, the port used to be free: another test's server could take it, and UP then
    # failed with "Address already in use" (a flake under a loaded suite).
    with FakeStigg() as fake:
        port = fake.port
        fake.set_mode(FakeMode.DOWN)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{fake.url}/api/v1/customers/acme/entitlements", timeout=2)
        squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            with pytest.raises(OSError):
                squatter.bind(("127.0.0.1", port))
        finally:
            squatter.close()
        fake.set_mode(FakeMode.UP)
        assert fake.port == port
        answer = httpx.get(f"{fake.url}/api/v1/customers/acme/entitlements", timeout=5)
        assert answer.status_code == 200, answer.text  # served again, on the same port


def _down_then_up(fake: FakeStigg) -> None:
    """DOWN refuses connections; UP serves again."""
    fake.set_mode(FakeMode.DOWN)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fake.url}/api/v1/customers/acme/entitlements", timeout=2)
    fake.set_mode(FakeMode.UP)
    answer = httpx.get(f"{fake.url}/api/v1/customers/acme/entitlements", timeout=5)
    assert answer.status_code == 200, answer.text


def test_a_forked_child_alive_never_keeps_the_fake_from_going_down_and_up() -> None:
    # A child forked after the fake started inherited its listening socket: DOWN (and UP)
    # then raised "Address already in use" in the parent, in the very forked-worker
    # outage tests the fake is for.
    with FakeStigg() as fake:
        pid = os.fork()
        if pid == 0:  # the child only lives on, holding what it inherited
            time.sleep(3)
            os._exit(0)
        try:
            _down_then_up(fake)
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_down_waits_a_moment_for_a_listening_socket_another_process_still_holds() -> None:
    # A child closes the listening socket it inherited as it starts; a parent that went
    # DOWN before it had failed to hold its port ("Address already in use", 1 CI run), and
    # left the socket it could not bind to the garbage collector.
    with FakeStigg() as fake:
        assert fake._server is not None
        inherited = os.dup(fake._server.socket.fileno())  # as a child just forked holds it
        threading.Timer(0.3, os.close, (inherited,)).start()  # and closes it as it starts
        _down_then_up(fake)
