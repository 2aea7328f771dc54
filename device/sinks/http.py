"""A live web view, a JSON API and Prometheus metrics of a run (`run --serve`).

/               one page: the live annotated frame (a detector's boxes drawn on it), its label and top-k
                or its objects (track ids, per-label and per-zone counts), fps and per-stage latency
/api/view       one frame's result and its annotated JPEG (base64) in one object: what the page shows
/stream.mjpg    the annotated frames as MJPEG, for other viewers (absent with --no-preview)
/api/latest     the last result (the `--json` object)
/api/summary    the run's summary so far
/healthz        200 while results are fresh, 503 when the last is older than a few seconds
/metrics        Prometheus text format

The inference thread only keeps a reference to the newest result. Frames are
JPEG-encoded by a thread of their own, only while someone watches (the stream, or
the page within the last VIEWER_IDLE_S), at most --serve-fps per second; a client too
slow for that skips frames (counted). Each JPEG is kept with the result it was drawn
from, so the page's image, headline and scores always come from one frame.
With a token every request must carry it (`Authorization: Bearer TOKEN`, the scheme in any case,
or `?token=`). Without one, only Host names that cannot be rebound are answered (IP literals,
localhost, the bound name, this machine's name), so a web page elsewhere cannot read the camera
through DNS rebinding; and a non-loopback address needs a token or `public` (--serve-public).

Server: the standard library's ThreadingHTTPServer, bounded (edgepipe[device] stays free of
a web framework on a Pi, and the few limits it needs are a few lines): every socket has a
timeout (an idle or half-sent connection is closed after options.request_timeout, a watcher that
stops reading after the same), at most MAX_CONNECTIONS are served at once (the next is closed at
once and counted, so idle clients cannot pin unbounded threads or memory), and a client that
resets or times out is counted, never a traceback. Handlers only read a reference the inference
thread leaves, so no web client can slow inference.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

from edgepipe.core.errors import MissingExtraError, UserError
from edgepipe.core.safetext import safe_line

from edgepipe.device.run.results import FrameResult
from edgepipe.device.run.sink import RunInfo, Sink
from .endpoints import is_loopback

from .options import ServeOptions

JPEG_QUALITY = 80
BOUNDARY = "edgepipe-frame"
VIEWER_IDLE_S = 2.0  # the page counts as watching this long after its last /api/view
MAX_CONNECTIONS = 32  # served at once; each is one thread
CLIENT_GONE = (ConnectionError, TimeoutError)  # resets, broken pipes, timeouts: normal on a network


def host_names(bound: str) -> frozenset[str]:
    """The Host names (lower case, no port) that cannot be DNS-rebound to us: those of the bound
    address, localhost and this machine's own names. IP literals are always fine (checked apart)."""
    names = {"localhost", bound.lower()}
    with_hostname = socket.gethostname().lower()
    names |= {with_hostname, with_hostname.split(".")[0], f"{with_hostname.split('.')[0]}.local"}
    return frozenset(names)


def host_of(header: str | None) -> str:
    """The host part of a Host header, lower case, without port or IPv6 brackets."""
    host = (header or "").strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(header: str | None, names: frozenset[str]) -> bool:
    host = host_of(header)
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host in names


class BoundedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a connection cap and without tracebacks for clients that go away."""

    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS  # the listen backlog: a burst waits instead of being refused

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], log: TextIO) -> None:
        self.log = log
        self.errors_said: set[str] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.counts = {"client_disconnects": 0, "refused_busy": 0, "handler_errors": 0}
        self.counts_lock = threading.Lock()
        super().__init__(address, handler)

    def count(self, name: str) -> None:
        with self.counts_lock:
            self.counts[name] += 1

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            self.count("refused_busy")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, CLIENT_GONE):
            self.count("client_disconnects")
            return
        self.count("handler_errors")
        said = f"{type(error).__name__}: {error}"
        with self.counts_lock:  # one line per distinct failure, counted after that; never a traceback
            if said in self.errors_said:
                return
            self.errors_said.add(said)
        self.log.write(f"edgepipe run: serve: a request failed: {safe_line(said)[:200]} (counted in handler_errors)\n")
        self.log.flush()


class HttpSink(Sink):
    def __init__(self, options: ServeOptions, log: TextIO) -> None:
        self.uses_frames = options.preview  # the page's video; --no-preview serves results alone
        try:
            from .metrics import RunMetrics
        except ImportError:
            raise MissingExtraError("--serve needs prometheus_client: pip install 'edgepipe[device]'") from None
        if options.token is None and not options.public and not is_loopback(options.host):
            raise UserError(f"--serve {options.host}:{options.port} without a token would show the live video, "
                            "results, summary and metrics to anyone who can reach this machine; set a token "
                            "(--serve-token-file or $EDGEPIPE_SERVE_TOKEN), or add --serve-public if that is meant")
        self.options, self.log = options, log
        self.host_names = host_names(options.host)
        self.metrics = RunMetrics()
        self.run: RunInfo | None = None
        self.latest: FrameResult | None = None
        self.latest_at: float | None = None  # monotonic time of the newest result
        self.jpeg: bytes | None = None
        self.jpeg_result: FrameResult | None = None  # the result self.jpeg was drawn from
        self.jpeg_seq = 0
        self.watchers = 0
        self.viewed_at: float | None = None  # monotonic time of the page's last /api/view
        self.frames_sent = 0
        self.skipped = 0  # frames a slow stream client never got
        self._cond = threading.Condition()
        self._new_result = threading.Event()
        self._closed = threading.Event()
        try:
            self.server = BoundedServer((options.host, options.port), _handler_for(self), log)
        except OSError as exc:
            raise UserError(f"--serve {options.host}:{options.port}: cannot listen there ({exc.strerror}); "
                            "pick another port or host") from None
        self.port = self.server.server_address[1]
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        return f"http://{host}:{self.port}/"

    def start(self, run: RunInfo) -> None:
        self.run = run
        self.metrics.start(run)
        self._threads = [threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name="edgepipe-http", daemon=True)]
        if self.options.preview:
            self._threads.append(threading.Thread(target=self._encode, name="edgepipe-jpeg", daemon=True))
        for thread in self._threads:
            thread.start()
        self.log.write(f"edgepipe run: serving {self.url}" + (" (token required)" if self.options.token else
                                                              " to anyone (--serve-public)" if self.options.public
                                                              and not is_loopback(self.options.host) else "")
                       + ("" if self.options.preview else " without images") + "\n")
        self.log.flush()

    # -- the inference thread's side: a reference and a few counters ----------------------------
    def emit(self, result: FrameResult) -> None:
        self.latest, self.latest_at = result, time.monotonic()
        self.metrics.observe(result)
        if self.watched():
            self._new_result.set()

    def summary_fields(self) -> dict[str, Any]:
        with self.server.counts_lock:
            counts = dict(self.server.counts)
        return {"serve": {"url": self.url, "frames_sent": self.frames_sent, "dropped": self.skipped, **counts}}

    def close(self, summary: dict[str, Any]) -> None:
        self._closed.set()
        self._new_result.set()
        with self._cond:
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(timeout=2.0)

    # -- the JPEG thread --------------------------------------------------------------------------
    def _encode(self) -> None:
        encoded: FrameResult | None = None
        while not self._closed.is_set():
            if not self._new_result.wait(timeout=0.5):
                continue
            self._new_result.clear()
            result = self.latest
            if result is None or result is encoded or result.image is None or not self.watched():
                continue
            began = time.monotonic()
            self._encode_one(result)
            encoded = result
            self._closed.wait(max(0.0, 1.0 / self.options.fps - (time.monotonic() - began)))

    def _encode_one(self, result: FrameResult) -> None:
        """Encode `result`'s annotated frame and publish it with the result it was drawn from."""
        import cv2  # only the preview needs it

        ok, data = cv2.imencode(".jpg", result.annotated, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if ok:
            with self._cond:
                self.jpeg, self.jpeg_result, self.jpeg_seq = data.tobytes(), result, self.jpeg_seq + 1
                self._cond.notify_all()

    # -- request handlers' side ------------------------------------------------------------------
    def watched(self) -> bool:
        """Someone wants JPEGs: a stream client, or the page lately."""
        return bool(self.watchers) or (self.viewed_at is not None
                                       and time.monotonic() - self.viewed_at < VIEWER_IDLE_S)

    def view(self) -> dict[str, Any] | None:
        """What the page shows: one result and the JPEG drawn from it, as one object.

        Without a preview it is the newest result alone. With one, it is the newest
        encoded frame's result, never the newest result beside an older frame's image;
        a page's first request (nobody watching until then) encodes the newest frame
        itself rather than show an old one or wait for the JPEG thread. None: no result yet.
        """
        latest = self.latest
        if not self.options.preview or latest is None or latest.image is None:
            return None if latest is None else {"result": latest.to_json(), "jpeg": None}
        was_watched = self.watched()
        self.viewed_at = time.monotonic()
        self._new_result.set()
        if not was_watched or self.jpeg is None:
            self._encode_one(latest)
        with self._cond:
            jpeg, result = self.jpeg, self.jpeg_result
        if jpeg is None or result is None:
            return None
        return {"result": result.to_json(), "jpeg": base64.b64encode(jpeg).decode("ascii")}

    def authorised(self, header: str | None, query: dict[str, list[str]]) -> bool:
        token = self.options.token
        if token is None:
            return True
        scheme, _, credentials = (header or "").strip().partition(" ")
        given = credentials.strip() if scheme.lower() == "bearer" else ""
        given = given or (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())

    def health(self) -> tuple[bool, dict[str, Any]]:
        if self.latest_at is None:
            return False, {"status": "starting", "detail": "no result yet"}
        age = time.monotonic() - self.latest_at
        fresh = age <= self.options.stale_after
        outputs = self.run.outputs_health() if self.run else {}
        status = ("ok" if not outputs else "degraded") if fresh else "stale"
        return fresh, {"status": status, "last_result_age_s": round(age, 3),
                       "frame": self.latest.index if self.latest else None, **({"outputs": outputs} if outputs else {})}

    def next_jpeg(self, after: int) -> tuple[int, bytes] | None:
        """The newest JPEG after sequence number `after`, waiting for one; None when the run ends."""
        with self._cond:
            while not self._closed.is_set():
                if self.jpeg_seq > after and self.jpeg is not None:
                    return self.jpeg_seq, self.jpeg
                self._cond.wait(timeout=1.0)
        return None


def _handler_for(sink: HttpSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgepipe"
        protocol_version = "HTTP/1.1"
        timeout = sink.options.request_timeout  # every read and write on the socket: idle and half-sent clients go

        def log_error(self, format: str, *args: Any) -> None:
            pass  # malformed requests and timeouts are answered or counted, not logged line by line

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the journal gets results, not access logs (whose URLs may carry the token)

        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            url = urlsplit(self.path)
            if sink.options.token is None and not host_allowed(self.headers.get("Host"), sink.host_names):
                self._json(HTTPStatus.MISDIRECTED_REQUEST, {"error": "unknown Host; use this machine's address"})
                return
            if not sink.authorised(self.headers.get("Authorization"), parse_qs(url.query)):
                self._send(HTTPStatus.UNAUTHORIZED, b'{"error": "token required"}\n', "application/json",
                           {"WWW-Authenticate": 'Bearer realm="edgepipe"'})
                return
            route = {"/": self._page, "/stream.mjpg": self._stream, "/api/view": self._view, "/api/latest": self._latest,
                     "/api/summary": self._summary, "/healthz": self._healthz, "/metrics": self._metrics}.get(url.path)
            if route is None or (url.path == "/stream.mjpg" and not sink.options.preview):
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no {url.path} here"})
                return
            route()

        def _send(self, status: HTTPStatus, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: HTTPStatus, data: Any) -> None:
            self._send(status, (json.dumps(data) + "\n").encode(), "application/json")

        def _page(self) -> None:
            self._send(HTTPStatus.OK, page(sink.options.preview, sink.options.fps).encode(), "text/html; charset=utf-8")

        def _latest(self) -> None:
            result = sink.latest
            if result is None:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no result yet"})
            else:
                self._json(HTTPStatus.OK, result.to_json())

        def _view(self) -> None:
            view = sink.view()
            if view is None:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no result yet"})
            else:
                self._json(HTTPStatus.OK, view)

        def _summary(self) -> None:
            self._json(HTTPStatus.OK, sink.run.running_summary() if sink.run else {})

        def _healthz(self) -> None:
            fresh, detail = sink.health()
            self._json(HTTPStatus.OK if fresh else HTTPStatus.SERVICE_UNAVAILABLE, detail)

        def _metrics(self) -> None:
            from .metrics import CONTENT_TYPE

            self._send(HTTPStatus.OK, sink.metrics.exposition(), CONTENT_TYPE)

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            with sink._cond:
                sink.watchers += 1
            sink._new_result.set()
            sent = sink.jpeg_seq - 1 if sink.jpeg is not None else 0  # start with the newest frame there is
            try:
                while (frame := sink.next_jpeg(sent)) is not None:
                    seq, jpeg = frame
                    with sink._cond:  # several clients count into it
                        sink.skipped += max(0, seq - sent - 1) if sent else 0
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    self.wfile.flush()
                    with sink._cond:
                        sink.frames_sent += 1
                    sent = seq
            except CLIENT_GONE:
                sink.server.count("client_disconnects")  # the watcher went away, or stopped reading
            finally:
                with sink._cond:
                    sink.watchers -= 1

    return Handler


def page(preview: bool, fps: float) -> str:
    """The one page: one frame and its result, refreshed together by a few lines of script."""
    image = '<img id="live" alt="live view">' if preview else '<p class="muted">preview off (--no-preview)</p>'
    return PAGE.replace("{image}", image).replace("{period_ms}", str(max(50, round(1000 / fps))))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>edgepipe</title>
<style>
 body{margin:0;font:15px system-ui,sans-serif;background:#111;color:#eee}
 main{display:flex;flex-wrap:wrap;gap:16px;padding:12px}
 #live{display:block;max-width:100%;background:#000}
 h1{font-size:28px;margin:0 0 4px} table{border-collapse:collapse} td{padding:2px 10px 2px 0}
 .muted{color:#999}
</style></head>
<body><main>
<div>{image}</div>
<div>
 <h1 id="label">-</h1>
 <div class="muted">frame <span id="frame">-</span> &middot; <span id="fps">-</span> fps</div>
 <table id="top"></table>
 <div id="counts-part" hidden><h3>counts</h3><table id="counts"></table></div>
 <div id="regions-part" hidden><h3 id="regions-title">regions</h3><table id="regions"></table></div>
 <h3>latency (ms)</h3><table id="latency"></table>
 <div id="status" class="muted"></div>
</div>
</main>
<script>
const token = new URLSearchParams(location.search).get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
const live = document.getElementById("live");
function rows(id, entries) {
  const table = document.getElementById(id);
  table.replaceChildren(...entries.map(([a, b]) => {
    const tr = document.createElement("tr");
    for (const text of [a, b]) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    return tr;
  }));
}
function show(r) {  // one result: the headline, the numbers and the tables all read it
  document.getElementById("frame").textContent = r.frame;
  document.getElementById("fps").textContent = r.fps.toFixed(1);
  if (r.counts) {  // a detector: its objects, their counts, and the zones'
    const counted = c => Object.entries(c).map(([l, n]) => n + " " + l).join(", ") || "-";
    const n = r.detections.length;
    document.getElementById("label").textContent = n + (n === 1 ? " object" : " objects");
    rows("top", r.detections.map(d => [(d.track_id ? "#" + d.track_id + " " : "") + d.label,
                                       d.score.toFixed(2) + "  [" + d.box.join(", ") + "]"]));
    document.getElementById("counts-part").hidden = false;
    rows("counts", [["present", counted(r.counts)]]);
    const zones = Object.entries(r.zones || {});
    document.getElementById("regions-title").textContent = "zones";
    document.getElementById("regions-part").hidden = zones.length === 0;
    rows("regions", zones.map(([z, c]) => [z, counted(c)]));
  } else {
    document.getElementById("label").textContent = r.label ?? "-";
    rows("top", r.top.map(p => [p.label, p.score.toFixed(3)]));
    const regions = Object.entries(r.regions || {});
    document.getElementById("regions-part").hidden = regions.length === 0;
    rows("regions", regions.map(([n, t]) => [n, t.length ? t[0].label + " " + t[0].score.toFixed(3) : "-"]));
  }
  rows("latency", Object.entries(r.latency_ms).map(([s, ms]) => [s, ms.toFixed(1)]));
}
async function refresh() {
  try {
    const response = await fetch("api/view" + q, {cache: "no-store"});
    if (!response.ok) throw new Error(response.status);
    const view = await response.json();
    if (live) {  // the text changes once its own frame has loaded, never before
      await new Promise((loaded, failed) => {
        live.onload = loaded;
        live.onerror = () => failed(new Error("unreadable frame"));
        live.src = "data:image/jpeg;base64," + view.jpeg;
      });
      live.dataset.frame = view.result.frame;
    }
    show(view.result);
    document.getElementById("status").textContent = "";
  } catch (e) {
    document.getElementById("status").textContent = "no fresh result (" + e.message + ")";
  }
}
async function loop() { await refresh(); setTimeout(loop, {period_ms}); }  // never two at once
loop();
</script>
</body></html>
"""
