"""What an `edgepipe deploy` costs, over a real OpenSSH server on 127.0.0.1.

With the int8 MobileNetV2 1.0 224 bundle of the performance table
(benchmarks/models.py), deploying into a temp prefix through the same code
as the CLI (the 'device' is this machine; the service is the agent's
`process` manager running the real `edgepipe run` on a synthetic video):
- one agent round trip (`deploy status`: ssh + python3 + the agent), p50;
- a cold deploy without service: check + scp upload + on-device sha256 + switch;
- a redeploy of a release already on the device (re-verify + switch);
- a deploy with the service, until its health check has a first result;
- a rollback with the service, until its health check has a first result.
Loopback: the upload costs nothing like Wi-Fi to a Pi; this measures
edgepipe's own overhead. Median of --repeats. Prints a table; writes
benchmarks/results/deploy.json.

    python benchmarks/bench_deploy.py [--repeats 3] [--status-calls 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "deploy"))

from models import CLASSES, mobilenet_v2_int8  # noqa: E402
from sshd_server import running_sshd, stop_service  # noqa: E402

from edgepipe.deploy import release  # noqa: E402
from edgepipe.core.ssh import SshOptions, Target  # noqa: E402
from edgepipe.deploy.remote import Remote  # noqa: E402

RESULTS = HERE / "results"
MODEL = RESULTS / "mobilenet_v2_1.0_224_int8.tflite"


def make_bundle(root: Path, model: Path, variant: int) -> Path:
    """A valid bundle around `model`; `variant` changes the manifest, hence the release id."""
    from ai_edge_litert.interpreter import Interpreter

    from edgepipe.device.model.bundle import CPU_MODEL, LABELS, MANIFEST, build_manifest
    from edgepipe.device.model.preprocess import InputSpec

    interpreter = Interpreter(model_path=str(model))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    labels = [f"class_{i:02d}" for i in range(CLASSES)]
    root.mkdir(parents=True)
    shutil.copy(model, root / CPU_MODEL)
    (root / LABELS).write_text("".join(f"{label}\n" for label in labels))
    manifest = build_manifest(
        root, labels=labels,
        input_spec=InputSpec(height=int(inp["shape"][1]), width=int(inp["shape"][2])).with_tensor(
            "uint8", *inp["quantization"]),
        output={"dtype": "uint8", "scale": out["quantization"][0], "zero_point": out["quantization"][1],
                "num_classes": CLASSES, "activation": "softmax"},
        models={"cpu": CPU_MODEL}, extra={"variant": variant},
    )
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return root


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--status-calls", type=int, default=10)
    args = parser.parse_args()
    print(f"model: {mobilenet_v2_int8(MODEL)}", file=sys.stderr)
    quiet = lambda _: None  # noqa: E731 - progress lines would drown the table
    with tempfile.TemporaryDirectory(prefix="bench_deploy.") as tmp:
        tmp = Path(tmp)
        from edgepipe.synthetic import write_video

        video = tmp / "video.mp4"
        write_video(video, frames=200, size=(320, 240))
        (tmp / "sshd").mkdir()
        prefix = tmp / "device" / "edgepipe"
        with running_sshd(tmp / "sshd") as server:
            remote = Remote(Target.parse(server.host), SshOptions(config=str(server.client_config)),
                            prefix=str(prefix), python=sys.executable)
            service = release.ServiceSettings(manager="process", source=str(video), health_timeout=300)
            made = [make_bundle(tmp / f"bundle{i}", MODEL, i) for i in range(3 * args.repeats)]
            size_mb = release.read_local_bundle(made[0]).size / 1e6
            bundles = iter(made)
            times: dict[str, list[float]] = {"cold": [], "present": [], "service": [], "rollback": []}
            try:
                for _ in range(args.repeats):
                    cold = next(bundles)
                    times["cold"].append(timed(lambda: release.deploy(remote, cold, None, 3, say=quiet)))
                    times["present"].append(timed(lambda: release.deploy(remote, cold, None, 3, say=quiet)))
                    fresh = next(bundles)
                    times["service"].append(timed(lambda: release.deploy(remote, fresh, service, 3, say=quiet)))
                    newer = next(bundles)
                    release.deploy(remote, newer, service, 3, say=quiet)
                    times["rollback"].append(timed(lambda: release.rollback(remote, 300)))
                status = [timed(lambda: release.status(remote)) for _ in range(args.status_calls)]
            finally:
                stop_service(prefix)
    rows = [
        ("agent round trip (deploy status), p50", statistics.median(status)),
        (f"cold deploy, no service ({size_mb:.1f} MB bundle)", statistics.median(times["cold"])),
        ("redeploy, release already on the device", statistics.median(times["present"])),
        ("deploy + service restart until first result", statistics.median(times["service"])),
        ("rollback + service restart until first result", statistics.median(times["rollback"])),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f}")
    RESULTS.mkdir(exist_ok=True)
    result = {
        "bundle_mb": round(size_mb, 2),
        "repeats": args.repeats,
        "status_round_trip_s": {"p50": statistics.median(status), "all": status},
        **{f"{key}_s": {"median": statistics.median(values), "all": values} for key, values in times.items()},
        "note": "loopback sshd on this machine; process service manager; median of repeats",
    }
    (RESULTS / "deploy.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'deploy.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
