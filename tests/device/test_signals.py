"""SIGINT/SIGTERM on a real `edgepipe run` process: it stops within a second and
flushes the summary, the --stats-json file and a playable recording. No sleeps:
the test waits for the process's own output lines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import cv2
import pytest

from edgepipe.synthetic import write_video


@pytest.fixture(scope="module")
def slow_video(tmp_path_factory) -> object:
    """60 frames at 15 fps: 4 s when paced with --realtime, longer than any test waits."""
    path = tmp_path_factory.mktemp("slow") / "slow.mp4"
    write_video(path, frames=60, size=(160, 120), fps=15.0)
    return path


@pytest.mark.parametrize("sig, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_signal_stops_run_within_a_second_and_flushes_summary_and_recording(
        tiny_bundle, slow_video, tmp_path, sig, exit_code):
    stats, record = tmp_path / "stats.json", tmp_path / "rec.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgepipe", "run", str(tiny_bundle), "--source", str(slow_video), "--realtime",
         "--json", "--threads", "1", "--record", str(record), "--stats-json", str(stats)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = [json.loads(proc.stdout.readline()) for _ in range(3)]
        indices = [row["frame"] for row in first]
        assert indices == sorted(set(indices))  # paced like a camera: may drop, never reorders
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        stopped_after = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == exit_code, err
    assert stopped_after < 1.0
    assert f"(stopped by {sig.name})" in err and "summary: " in err
    summary = json.loads(stats.read_text())
    frames = 3 + len(out.splitlines())
    assert summary["frames"] == frames < 60 and summary["reason"] == f"stopped by {sig.name}"
    capture = cv2.VideoCapture(str(record))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    capture.release()
