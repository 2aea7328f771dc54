"""Where `edgepipe run`'s CPU time per frame goes: every thread of the run loop under
cProfile with a per-thread CPU clock (time.thread_time), so time spent waiting
(locks, a core taken by another process) is not counted, which keeps the
profile meaningful on a shared machine where wall-clock profiles are not.

It runs the real command (`edgepipe run MODEL --source VIDEO --json`, output
discarded) in this process, then prints the CPU milliseconds per frame of
the calls that matter (decode, resize, colour conversion, the pixel table,
set_tensor, invoke, reading the output, postprocessing, the sinks, the
hand-offs between threads) and of everything else.

cProfile adds its own cost to every Python call, so the Python-level rows are
upper bounds; the native calls (decode, resize, invoke) are measured as they are.

    python benchmarks/profile_run.py MODEL VIDEO [run flags...] [--top 25]
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path

# (row, substrings of pstats' "file:line(function)" keys whose own CPU time it sums)
ROWS = (
    ("decode (VideoCapture.read, imdecode)", ("'read' of 'cv2.VideoCapture", "<imdecode>")),
    ("resize", ("(<resize>)",)),
    ("colour conversion", ("(<cvtColor>)",)),
    ("pixel table (cv2.LUT)", ("(<LUT>)",)),
    ("numpy copies / casts", ("'astype' of", "'copy' of", "numpy.ascontiguousarray", "'reshape' of")),
    ("set_tensor", ("wrapper.SetTensor>",)),
    ("invoke", ("wrapper.Invoke>",)),
    ("get_tensor", ("wrapper.GetTensor>",)),
    ("locks and conditions (hand-offs)", ("'acquire' of", "'release' of", "threading.py", "'wait' of")),
    ("json output", ("json/", "_asdict_inner", "to_json")),
)


def profile(argv: list[str]) -> tuple[pstats.Stats, int, float]:
    """Run `edgepipe run` with every thread of its loop profiled: merged stats, frames, the loop's CPU seconds."""
    from edgepipe.cli import main
    from edgepipe.device.run.loop import Pipeline

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_thread_profile(*_: object) -> None:
        sys.setprofile(None)  # this thread only; threads started later still get the hook
        prof = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(prof)
        prof.enable()

    main_prof = cProfile.Profile(time.thread_time)
    cpu = 0.0
    unprofiled_run = Pipeline.run

    def profiled_run(self: Pipeline):  # the loop only: start-up (imports, model loading) is not per frame
        nonlocal cpu
        threading.setprofile(start_thread_profile)
        started = time.process_time()
        main_prof.enable()
        try:
            return unprofiled_run(self)
        finally:
            main_prof.disable()
            cpu = time.process_time() - started
            threading.setprofile(None)

    Pipeline.run = profiled_run  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        stats_json = Path(tmp) / "stats.json"
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            code = main([*argv, "--json", "--stats-interval", "0", "--stats-json", str(stats_json)])
        Pipeline.run = unprofiled_run  # type: ignore[method-assign]
        if code != 0:
            raise SystemExit(f"edgepipe run exited {code}")
        frames = json.loads(stats_json.read_text())["frames"]
    for prof in profiles:
        prof.disable()
    stats = pstats.Stats(main_prof, stream=io.StringIO())
    for prof in profiles:
        stats.add(prof)
    return stats, frames, cpu


def main() -> int:
    args = sys.argv[1:]
    top = 25
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i:i + 2]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    model, video, *flags = args
    stats, frames, cpu = profile(["run", model, "--source", video, *flags])
    own = {}  # key -> own CPU seconds
    for (filename, line, function), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        own[f"{filename}:{line}({function})"] = tottime
    total = sum(own.values())
    print(f"{frames} frames; process CPU in the run loop {cpu * 1000 / frames:.2f} ms per frame, "
          f"profiled {total * 1000 / frames:.2f} ms; load average {os.getloadavg()[0]:.1f}")
    counted: set[str] = set()
    for row, needles in ROWS:
        keys = [k for k in own if k not in counted and any(n in k for n in needles)]
        counted.update(keys)
        print(f"  {row:<36} {sum(own[k] for k in keys) * 1000 / frames:7.3f} ms")
    rest = {k: v for k, v in own.items() if k not in counted}
    print(f"  {'everything else':<36} {sum(rest.values()) * 1000 / frames:7.3f} ms; the largest:")
    for key, seconds in sorted(rest.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {seconds * 1000 / frames:7.3f} ms  {key[-110:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
