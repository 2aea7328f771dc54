"""`edgepipe run` in a process of its own, for tests that kill it, signal it or
talk to it (MQTT, HTTP) while it runs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading


class RunProcess:
    """`edgepipe run ... --json` in its own process; stdout rows and stderr lines collected as they come."""

    def __init__(self, *argv, env: dict[str, str] | None = None) -> None:
        self.rows: list[dict] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self.process = subprocess.Popen([sys.executable, "-m", "edgepipe", "run", *map(str, argv), "--json"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self._readers = [threading.Thread(target=self._read, args=(self.process.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.process.stderr, False), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, rows: bool) -> None:
        for line in stream:
            with self._cond:
                (self.rows.append(json.loads(line)) if rows else self.err.append(line))
                self._cond.notify_all()

    def wait_rows(self, n: int, timeout: float = 60.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.rows) >= n or self.process.poll() is not None, timeout)
            assert ok and len(self.rows) >= n, "".join(self.err)

    def wait_err(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """The first stderr line matching `pattern`, waiting for it."""
        def found():
            return next((m for line in self.err if (m := re.search(pattern, line))), None)

        with self._cond:
            ok = self._cond.wait_for(lambda: found() is not None or self.process.poll() is not None, timeout)
            match = found()
            assert ok and match, "".join(self.err)
            return match

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (how a service is stopped), then the exit code once its output is read."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
