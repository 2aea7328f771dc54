"""`run --workers auto`: how many interpreters, with how many threads each, make
this model fastest on this machine's cores.

An interpreter's own threads scale poorly on small CPUs (2 threads gave 1.7x
on 2 cores) while separate interpreters on consecutive frames scale almost
linearly, but by how much depends on the model and the CPU. So it is measured:
each combination that fills the cores runs back-to-back invokes on all its
interpreters at once for a fraction of a second, and the fastest wins (within
TIE_MARGIN the one with fewer workers wins: same throughput, lower latency).
The answer is cached per model hash and machine, so only the first start pays.
"""

from __future__ import annotations

import hashlib
import json
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.core.files import atomic_write_text
from edgepipe.core.cachedir import cache_dir

from edgepipe.device.model.backends import threads_text
from edgepipe.device.model.classifier import Classifier
from edgepipe.device.host import default_threads

MEASURE_S = 0.6  # the whole measurement, shared by the combinations (loading and warm-up come on top)
MIN_WINDOW_S = 0.1
WARMUP_INVOKES = 2
TIE_MARGIN = 0.03
CACHE_FILE = "workers.json"
CACHE_VERSION = 1


@dataclass(frozen=True)
class WorkerChoice:
    workers: int
    threads: int
    per_s: float  # bare inferences per second of the combination, all interpreters together
    cached: bool = False
    measured: tuple[tuple[int, int, float], ...] = ()  # (workers, threads, per_s) of each combination tried

    def describe(self) -> str:
        how = "cached measurement" if self.cached else "measured now"
        others = ", ".join(f"{w}x{t} {r:.1f}/s" for w, t, r in self.measured if (w, t) != (self.workers, self.threads))
        return (f"--workers auto: {threads_text(self.threads, self.workers)}, "
                f"{self.per_s:.1f} inferences/s ({how}" + (f"; {others}" if others else "") + ")")


def combinations(cores: int, threads: int | None) -> list[tuple[int, int]]:
    """(workers, threads) pairs that fill `cores`; with `threads` fixed, every worker count up to the cores."""
    if threads:
        return [(w, threads) for w in range(1, max(1, cores // threads) + 1)]
    return [(w, cores // w) for w in range(1, cores + 1) if cores % w == 0]


def concurrent_rate(classifiers: list[Classifier], tensor: np.ndarray, seconds: float) -> float:
    """Inferences per second of all `classifiers` invoking back to back at once for `seconds`."""
    counts = [0] * len(classifiers)
    start = threading.Barrier(len(classifiers) + 1)
    deadline: list[float] = []

    def loop(i: int, clf: Classifier) -> None:
        start.wait()
        end = deadline[0]
        while time.perf_counter() < end:
            clf.invoke(tensor)
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i, c), daemon=True) for i, c in enumerate(classifiers)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline.append(began + seconds)
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def measure(base: Classifier, threads: int | None, cores: int,
            budget_s: float = MEASURE_S) -> tuple[WorkerChoice, list[Classifier]]:
    """The fastest combination and its interpreters (kept, so the run does not load them again)."""
    options = combinations(cores, threads)
    window = max(MIN_WINDOW_S, budget_s / len(options))
    rng = np.random.default_rng(0)
    spec = base.input_spec
    tensor = base.preprocess(rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8))
    best: tuple[float, int, int, list[Classifier]] | None = None
    measured: list[tuple[int, int, float]] = []
    for workers, per_worker in options:
        pool = [base if base.threads == per_worker and i == 0 else base.replica(per_worker) for i in range(workers)]
        for clf in pool:
            for _ in range(WARMUP_INVOKES):
                clf.invoke(tensor)
        rate = concurrent_rate(pool, tensor, window)
        measured.append((workers, per_worker, round(rate, 1)))
        if best is None or rate > best[0] * (1 + TIE_MARGIN):
            best = (rate, workers, per_worker, pool)
    assert best is not None  # combinations() is never empty
    rate, workers, per_worker, pool = best
    return WorkerChoice(workers, per_worker, round(rate, 1), measured=tuple(measured)), pool


def cache_path() -> Path:
    return cache_dir(CACHE_FILE)


def machine_key(clf: Classifier, threads: int | None, cores: int) -> str:
    """What the answer depends on: the model, the CPU, the cores we may use, the runtime, fixed --threads."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.lower().startswith(("model name", "hardware", "cpu part")))
    except (OSError, StopIteration):
        pass
    machine = f"{platform.node()}|{platform.machine()}|{cpu}|{cores} cores|{clf.backend} {clf.backend_version}"
    return f"{clf.model_sha256}:{hashlib.sha256(machine.encode()).hexdigest()[:16]}:threads={threads or 'any'}"


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries; an unreadable or foreign file counts as empty (it is only a cache)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def _cached_choice(entry: Any, cores: int, threads: int | None) -> WorkerChoice | None:
    """A cache entry, validated: positive whole numbers that fit these cores."""
    if not isinstance(entry, dict):
        return None
    workers, per_worker, rate = entry.get("workers"), entry.get("threads"), entry.get("per_s")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (workers, per_worker)):
        return None
    if (workers, per_worker) not in combinations(cores, threads) or not isinstance(rate, (int, float)):
        return None
    return WorkerChoice(workers, per_worker, float(rate), cached=True)


def choose_workers(base: Classifier, threads: int | None, cache: Path | None = None,
                   cores: int | None = None) -> tuple[WorkerChoice, list[Classifier]]:
    """The (workers, threads) for this model here, from the cache or measured (then cached),
    and one classifier per worker; `base` is reused when its threads fit."""
    cores = cores or default_threads()
    cache = cache or cache_path()
    key = machine_key(base, threads, cores)
    entries = _read_cache(cache)
    choice = _cached_choice(entries.get(key), cores, threads)
    if choice is not None:
        first = base if base.threads == choice.threads else base.replica(choice.threads)
        return choice, [first] + [base.replica(choice.threads) for _ in range(choice.workers - 1)]
    choice, pool = measure(base, threads, cores)
    entries[key] = {"workers": choice.workers, "threads": choice.threads, "per_s": choice.per_s,
                    "measured": [list(m) for m in choice.measured],
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        atomic_write_text(cache, json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=2) + "\n")
    except OSError:
        pass  # a read-only home only costs the next start another measurement
    return choice, pool
