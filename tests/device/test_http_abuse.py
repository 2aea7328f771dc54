"""`run --serve` under abuse, against the real server with a real classifier inferring: idle,
half-sent and reset connections, wrong Host headers, many watchers. Every frame is still
inferred (counted, not timed), threads and memory stay bounded, nothing is logged as a
traceback, and clients get their answers once the abusers are gone."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepipe.core.errors import UserError
from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.run.loop import Pipeline
from edgepipe.device.run.options import RunOptions
from edgepipe.device.sinks.http import MAX_CONNECTIONS, HttpSink, ServeOptions, host_allowed, host_names

FRAMES = 300
TOKEN = "t0ken-for-tests"


class PacedFrames:
    """A finite source of FRAMES frames, paused at two points (`gate`, `finish`) so that the abuse
    happens while it runs."""

    name, live, current_item, fps = "paced", False, None, None

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.gate, self.finish, self.delivered = frames, threading.Event(), threading.Event(), 0

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        if self.delivered >= FRAMES:
            return None
        if self.delivered == 20:
            self.gate.wait(60)  # the rest only once the abusers are in place
        if self.delivered == FRAMES - 10:
            self.finish.wait(60)  # the last ones once the abuse is over
        self.delivered += 1
        return self.frames[self.delivered % len(self.frames)]

    def close(self) -> None:
        pass


def _proc_status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def _request(port: int, raw: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := conn.recv(4096)):
            data += chunk
        return data


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    conn.close()


def test_idle_half_sent_reset_and_many_watchers_do_not_hurt_inference(tiny_bundle, shapes_dataset: Path, capfd):
    frames = [cv2.imread(str(p)) for p in sorted(shapes_dataset.rglob("*.jpg"))[:10]]
    source = PacedFrames(frames)
    log = io.StringIO()
    sink = HttpSink(ServeOptions(port=0, fps=50, request_timeout=1.0), log=log)
    pipeline = Pipeline(open_classifier(tiny_bundle, threads=1), source, RunOptions(stats_interval=0), [sink])
    summary: dict = {}
    runner = threading.Thread(target=lambda: summary.update(pipeline.run().summary))
    threads_before, rss_before = _proc_status("Threads"), _proc_status("VmRSS")
    runner.start()
    port, opened = sink.port, []
    while source.delivered < 20 and runner.is_alive():  # the server and inference have started
        source.gate.wait(0.01)
    try:
        # many watchers, then idle and half-sent connections: more than the cap
        for _ in range(20):
            watcher = socket.create_connection(("127.0.0.1", port), timeout=10)
            watcher.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: localhost\r\n\r\n")
            opened.append(watcher)
        for i in range(MAX_CONNECTIONS * 3):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            if i % 2:
                conn.sendall(b"GET /api/latest HTTP/1.1\r\nHost: loc")  # half-sent, never finished
            opened.append(conn)
        assert _proc_status("Threads") <= threads_before + MAX_CONNECTIONS + 8
        source.gate.set()  # inference goes on while they hang
        assert opened[0].recv(64).startswith(b"HTTP/1.1 200")  # a watcher gets its stream
        for conn in opened[20:]:  # the server closes every idle or half-sent one (timeout or cap)
            assert conn.recv(4096) == b""
        for conn in opened[:10]:
            _reset(conn)  # watchers that vanish mid-stream
        for conn in opened[10:20]:
            conn.close()
        opened.clear()
        for _ in range(30):  # requests reset before their answer is read
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            _reset(conn)

        assert _request(port, b"GET /api/latest HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port).startswith(
            b"HTTP/1.1 200")
        assert _request(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").startswith(b"HTTP/1.1 200")
        rebound = _request(port, b"GET /api/latest HTTP/1.1\r\nHost: attacker.example:%d\r\n\r\n" % port)
        assert rebound.startswith(b"HTTP/1.1 421")
    finally:
        source.gate.set()
        source.finish.set()
        for conn in opened:
            conn.close()
        runner.join(timeout=120)
        pipeline.request_stop("test over")
    assert summary["frames"] == FRAMES  # every frame inferred, none lost to the web clients
    fields = summary["serve"]
    assert fields["refused_busy"] >= 1 and fields["client_disconnects"] >= 1 and fields["handler_errors"] == 0
    assert _proc_status("VmRSS") - rss_before < 150_000  # KB: bounded, whatever the clients did
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err + log.getvalue()


def test_host_names_without_a_token_are_only_unrebindable_ones():
    names = host_names("127.0.0.1")
    assert all(host_allowed(h, names) for h in ("127.0.0.1:8080", "[::1]:8080", "LOCALHOST:80", "localhost",
                                                "192.168.1.5", socket.gethostname()))
    assert not any(host_allowed(h, names) for h in ("attacker.example", "attacker.example:8080", "", None,
                                                    "localhost.attacker.example", "[evil"))


def test_a_public_address_needs_a_token_or_serve_public():
    with pytest.raises(UserError, match="--serve-public"):
        HttpSink(ServeOptions(host="0.0.0.0", port=0), log=io.StringIO())
    for options in (ServeOptions(host="0.0.0.0", port=0, public=True),
                    ServeOptions(host="0.0.0.0", port=0, token=TOKEN)):
        sink = HttpSink(options, log=io.StringIO())
        sink.server.server_close()


def test_the_bearer_scheme_is_case_insensitive_and_a_token_allows_any_host():
    sink = HttpSink(ServeOptions(port=0, token=TOKEN, preview=False), log=io.StringIO())
    threading.Thread(target=sink.server.serve_forever, daemon=True).start()
    try:
        for scheme in ("Bearer", "bearer", "BEARER"):
            answer = _request(sink.port, b"GET /api/summary HTTP/1.1\r\nHost: cam.example\r\n"
                                         b"Authorization: %s %s\r\n\r\n" % (scheme.encode(), TOKEN.encode()))
            assert answer.startswith(b"HTTP/1.1 200"), answer
        answer = _request(sink.port, b"GET /api/summary HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n"
                          % TOKEN.encode())
        assert answer.startswith(b"HTTP/1.1 401")
    finally:
        sink.server.shutdown()
        sink.server.server_close()
