"""`run --serve`: the page in a real headless Chromium, the MJPEG stream, the JSON
API, /metrics parsed by prometheus_client, /healthz, the token, --no-preview."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgepipe.device.sinks.http import BOUNDARY, HttpSink
from edgepipe.device.sinks.options import ServeOptions
from edgepipe.device.run.loop import Pipeline
from edgepipe.device.run.options import RunOptions
from edgepipe.device.run.runstats import STAGES
from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.run.sources import SourceLost

from run_process import RunProcess

TOKEN = "t0ken-for-tests"


def get(url: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def first_mjpeg_frame(url: str, token: str) -> np.ndarray:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        assert response.readline() == f"--{BOUNDARY}\r\n".encode()
        headers = {}
        while (line := response.readline().strip()):
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        data = response.read(int(headers["content-length"]))
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture
def served(tiny_bundle, long_video, tmp_path):
    """A run serving on a free port with a token from a file; yields (run, base URL, stats path)."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    stats = tmp_path / "stats.json"
    run = RunProcess(tiny_bundle, "--source", long_video, "--realtime", "--serve", "127.0.0.1:0",
                     "--serve-token-file", token_file, "--serve-fps", "10", "--stats-json", stats,
                     "--roi", "left=0,0,0.5,1")
    try:
        base = run.wait_err(r"serving (http://\S+/) \(token required\)").group(1)
        run.wait_rows(3)
        yield run, base, stats
    finally:
        run.kill()


def test_token_api_metrics_health_and_stream(served):
    run, base, stats = served
    for path in ("", "api/latest", "metrics", "healthz", "stream.mjpg"):
        status, _, headers = get(base + path)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert get(base + path, token="wrong-token")[0] == 401
    status, body, _ = get(base + "api/latest?token=" + TOKEN)
    latest = json.loads(body)
    assert status == 200 and latest == next(r for r in run.rows if r["frame"] == latest["frame"])
    assert set(latest["regions"]) == {"left"}

    status, body, _ = get(base, TOKEN)
    assert status == 200 and b'id="live"' in body and b'id="label"' in body
    frame = first_mjpeg_frame(base + "stream.mjpg", TOKEN)
    assert frame.shape == (120, 160, 3) and frame.std() > 10

    status, body, _ = get(base + "healthz", TOKEN)
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body, _ = get(base + "api/summary", TOKEN)
    summary = json.loads(body)
    assert status == 200 and summary["reason"] == "running" and summary["frames"] >= 3

    status, body, headers = get(base + "metrics", TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    frames = families["edgepipe_frames"].samples[0].value
    assert families["edgepipe_frames"].type == "counter" and frames >= summary["frames"]
    latency = families["edgepipe_stage_latency_seconds"]
    counts = {s.labels["stage"]: s.value for s in latency.samples if s.name.endswith("_count")}
    assert latency.type == "histogram" and set(counts) == set(STAGES)
    assert all(c >= summary["frames"] for c in counts.values())
    info = families["edgepipe_run_info"].samples[0].labels
    assert info["model"].endswith("model.tflite") and info["accelerator"] == "cpu"
    regions = families["edgepipe_region_label_frames"].samples
    assert {s.labels["region"] for s in regions} == {"left"}

    assert run.stop() == 0
    final = json.loads(stats.read_text())
    assert final["serve"]["frames_sent"] >= 1 and final["serve"]["url"] == base
    assert TOKEN not in "".join(run.err) + stats.read_text()


def test_no_preview_serves_results_but_never_images(tiny_bundle, long_video):
    run = RunProcess(tiny_bundle, "--source", long_video, "--realtime", "--serve", "127.0.0.1:0", "--no-preview")
    try:
        base = run.wait_err(r"serving (http://\S+/) without images").group(1)
        run.wait_rows(2)
        assert get(base + "stream.mjpg")[0] == 404
        status, body, _ = get(base)
        assert status == 200 and b"<img" not in body
        assert get(base + "api/latest")[0] == 200
    finally:
        run.kill()


def video_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (ok_frame := capture.read())[0]:
        frames.append(ok_frame[1])
    capture.release()
    return frames


def page_part(dom: str, opening: str, closing: str) -> str:
    return dom.split(opening, 1)[1].split(closing, 1)[0]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_page_in_headless_chromium_shows_one_frames_result_everywhere(tiny_bundle, long_video, tmp_path):
    """Every frame rejected as unknown (--unknown 1): the headline must say so, not the best class;
    the image, the frame number, the headline and the scores must be one frame's; no --roi, no regions."""
    run = RunProcess(tiny_bundle, "--source", long_video, "--realtime", "--serve", "127.0.0.1:0",
                     "--serve-fps", "10", "--unknown", "1")
    try:
        base = run.wait_err(r"serving (http://\S+/)").group(1)
        run.wait_rows(3)
        browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   "--window-size=800,600", "--virtual-time-budget=3000"]  # the page's fetches done before the dump
        screenshot = tmp_path / "page.png"
        subprocess.run([*browser, f"--screenshot={screenshot}", base], check=True, capture_output=True, timeout=120)
        shot = cv2.imread(str(screenshot))
        assert shot.shape[:2] == (600, 800)
        image_area = shot[12:12 + 120, 12:12 + 160]  # the frame, at its natural size inside the page's padding
        background = np.array([17, 17, 17])  # #111
        assert np.abs(image_area.astype(int) - background).sum(axis=2).mean() > 30 and image_area.std() > 10

        for _ in range(5):  # on a loaded machine the page's first fetch may not be back within the budget: ask again
            dom = subprocess.run([*browser, "--dump-dom", base], check=True, capture_output=True, text=True,
                                 timeout=120).stdout
            if page_part(dom, '<span id="frame">', "</span>") != "-":
                break
    finally:
        run.kill()
    assert page_part(dom, "<span id=\"frame\">", "</span>") != "-", page_part(dom, "<div id=\"status\"", "</div>")
    frame = int(page_part(dom, '<span id="frame">', "</span>"))
    row = next(r for r in run.rows if r["frame"] == frame)
    assert row["label"] == "unknown" and page_part(dom, '<h1 id="label">', "</h1>") == "unknown"
    scores = page_part(dom, '<table id="top">', "</table>")
    assert scores == "".join(f"<tr><td>{p['label']}</td><td>{p['score']:.3f}</td></tr>" for p in row["top"])
    assert '<div id="regions-part" hidden="">' in dom  # no --roi: no regions heading

    img = page_part(dom, '<img id="live"', ">")
    assert f'data-frame="{frame}"' in img
    jpeg = base64.b64decode(page_part(img, 'src="data:image/jpeg;base64,', '"'))
    shown = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    below_overlay = slice(60, 120)  # the label and fps are drawn in the top rows
    distance = [np.abs(shown[below_overlay].astype(int) - f[below_overlay]).mean() for f in video_frames(long_video)]
    assert int(np.argmin(distance)) == frame  # the picture is the frame whose result the text shows


class LosesItsCamera:
    """A live source (a FrameSource seam: no camera here) that delivers frames, then is lost for good."""

    name, live, current_item, fps = "fake-camera", True, None, None

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.lost = list(frames), threading.Event()

    def open(self) -> None:
        if self.lost.is_set():
            raise SourceLost("camera unplugged")

    def read(self) -> np.ndarray:
        if not self.frames:
            self.lost.set()
            raise SourceLost("camera unplugged")
        self.lost.wait(0.02)
        return self.frames.pop()

    def close(self) -> None:
        pass


def test_healthz_turns_503_when_the_source_is_lost(tiny_bundle, shapes_dataset: Path):
    frames = [cv2.imread(str(p)) for p in sorted(shapes_dataset.rglob("*.jpg"))[:20]]
    source = LosesItsCamera(frames)
    sink = HttpSink(ServeOptions(port=0, stale_after=0.5), log=open("/dev/null", "w"))
    pipeline = Pipeline(open_classifier(tiny_bundle, threads=1), source,
                        RunOptions(max_retries=100, stats_interval=0), [sink])
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    base = f"http://127.0.0.1:{sink.port}/"
    try:
        statuses = []
        while len(statuses) < 2000 and 503 not in statuses[1:]:
            status, body, _ = get(base + "healthz")
            if not statuses or status != statuses[-1]:
                statuses.append(status)
            source.lost.wait(0.05)
        assert statuses == [503, 200, 503] or statuses == [200, 503]
        detail = json.loads(body)
        assert detail["status"] == "stale" and detail["last_result_age_s"] >= 0.5
    finally:
        pipeline.request_stop("test over")
        runner.join(timeout=10)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_a_detectors_page_shows_its_boxes_and_lists_its_objects(detect_bundle, raccoon_long_video, tmp_path):
    from edgepipe.device.run.annotate import DETECTION_COLOUR

    run = RunProcess(detect_bundle, "--source", raccoon_long_video, "--realtime", "--serve", "127.0.0.1:0",
                     "--accelerator", "cpu", "--roi", "gate=0,0,0.5,1", "--roi", "lawn=0.5,0,0.5,1")
    try:
        base = run.wait_err(r"serving (http://\S+/)").group(1)
        run.wait_rows(3)
        status, body, _ = get(base + "api/latest")
        latest = json.loads(body)
        assert status == 200 and latest == next(r for r in run.rows if r["frame"] == latest["frame"])
        assert latest["detections"] and set(latest["zones"]) == {"gate", "lawn"}
        families = {f.name: f for f in text_string_to_metric_families(get(base + "metrics")[1].decode())}
        detected = {s.labels["label"]: s.value for s in families["edgepipe_detections"].samples
                    if s.name == "edgepipe_detections_total"}
        assert families["edgepipe_detections"].type == "counter" and set(detected) == {"raccoon"}
        assert detected["raccoon"] >= sum(len(r["detections"]) for r in run.rows[:3])
        assert {s.labels["label"] for s in families["edgepipe_objects"].samples} == {"raccoon"}
        assert {s.labels["zone"] for s in families["edgepipe_zone_objects"].samples} == {"gate", "lawn"}

        browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   "--window-size=1000,700", "--virtual-time-budget=3000"]  # the page's fetches done before the dump
        screenshot = tmp_path / "page.png"
        subprocess.run([*browser, f"--screenshot={screenshot}", base], check=True, capture_output=True, timeout=120)
        shot = cv2.imread(str(screenshot))
        image_area = shot[12:12 + 480, 12:12 + 640].astype(int)  # the 640x480 frame inside the page's padding
        green = np.abs(image_area - DETECTION_COLOUR).sum(axis=2) < 60
        assert green.sum() > 1000  # a box's outline and its label (a thin line of a 640x480 box: ~2000 px)
        rows_with_green, columns_with_green = np.flatnonzero(green.sum(axis=1) > 100), np.flatnonzero(green.sum(axis=0) > 100)
        assert len(rows_with_green) and len(columns_with_green)  # long straight edges: a box, not noise

        for _ in range(5):  # on a loaded machine the page's first fetch may not be back within --timeout: ask again
            dom = subprocess.run([*browser, "--dump-dom", base], check=True, capture_output=True, text=True,
                                 timeout=120).stdout
            frame = dom.split('<span id="frame">', 1)[1].split("</span>", 1)[0]
            if frame != "-":
                break
        row = next(r for r in run.rows if r["frame"] == int(frame))
        headline = dom.split('<h1 id="label">', 1)[1].split("</h1>", 1)[0]
        count = len(row["detections"])
        assert headline == f"{count} object" + ("" if count == 1 else "s")
        objects = dom.split('<table id="top">', 1)[1].split("</table>", 1)[0]
        assert objects.count("<tr>") == count and all(f"{d['label']}</td>" in objects for d in row["detections"])
        zones = dom.split('<table id="regions">', 1)[1].split("</table>", 1)[0]
        assert "<td>gate</td>" in zones and "<td>lawn</td>" in zones
    finally:
        run.kill()
