"""Long steps show a rate and the time left: tqdm on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
import threading

import pytest

from edgepipe.core import progress as progress_module
from edgepipe.core.progress import Progress, Working


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_every_interval_with_rate_and_time_left():
    stream, clock = io.StringIO(), FakeClock()
    with Progress(100, "features", stream=stream, clock=clock) as bar:
        for _ in range(10):
            clock.now += 2.0  # 5 images/s
            bar.update(1)
        bar.note("loss 0.5")
        clock.now += 180.0
        bar.update(90)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "features: 5/100 img (0.5 img/s, 3:10 left)",
        "features: 10/100 img (0.5 img/s, 3:00 left)",
        "features: 100/100 img in 3:20 (0.5 img/s), loss 0.5",
    ]


def test_a_terminal_gets_a_tqdm_bar_with_rate_and_eta():
    stream, clock = Terminal(), FakeClock()
    with Progress(40, "verifying", stream=stream, clock=clock) as bar:
        for _ in range(40):
            bar.update(1)
    text = stream.getvalue()
    assert "verifying: 100%" in text and "40/40" in text and "img/s]" in text and "<" in text


def test_working_reports_elapsed_time_until_the_block_ends(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL_S", 0.01)
    ticked = threading.Event()

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            if "so far" in text:
                ticked.set()
            return super().write(text)

    stream = Stream()
    with Working("PTQ: converting", stream=stream):
        assert ticked.wait(5), "no elapsed-time line while the block ran"
    lines = stream.getvalue().splitlines()
    assert lines[0] == "PTQ: converting: 0 s so far"
    assert lines[-1] == "PTQ: converting: done in 0 s"


def test_working_prints_no_done_line_when_the_block_fails():
    stream = io.StringIO()
    with pytest.raises(RuntimeError):
        with Working("QAT", stream=stream):
            raise RuntimeError("stop")
    assert "done" not in stream.getvalue()


BARS_THEN_A_LINE = """
from edgepipe.core.progress import Progress, say
say("before")
for epoch in (1, 2):
    with Progress(3, f"epoch {epoch}/2") as bar:
        for _ in range(3):
            bar.update()
say("after")
"""


@pytest.mark.parametrize("size", [(0, 0), (100, 30)], ids=["unsized", "100x30"])
def test_bars_on_a_terminal_leave_no_blank_lines(size):
    """On a real pseudo-terminal, sized or not (0 x 0, as some SSH and container sessions give):
    the screen ends up with each bar's last state on its own line and nothing empty between."""
    import fcntl
    import os
    import pty
    import struct
    import sys
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: stderr is the terminal
        os.execv(sys.executable, [sys.executable, "-c", BARS_THEN_A_LINE])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    output = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.waitpid(pid, 0)
    shown = [line.rsplit("\r", 1)[-1] for line in output.decode().split("\r\n")[:-1]]  # what stays on screen
    assert [line.split(":")[0] for line in shown] == ["before", "epoch 1/2", "epoch 2/2", "after"]
    assert all("3/3" in line for line in shown[1:3])
