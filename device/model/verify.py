"""`edgepipe verify`: run a bundle's golden set through this machine's runtime
and check the answers are the ones convert recorded.

The CPU model runs in this process. The Edge TPU model runs in the probe's
child process (edgetpu_probe), so a libedgetpu that crashes or hangs makes a
failed check, not a dead verifier; its result also fills the probe cache, so
the service started after a verified deploy does not probe again.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from edgepipe.core.accelerators import VERIFY_ACCELERATORS
from edgepipe.core.errors import UserError

from .bundle import Bundle, load_bundle
from .edgetpu_probe import checked_edgetpu
from .golden import compare, read_golden, run_golden
from .classifier import open_classifier
from .options import VerifyOptions
from .postprocess import scored
from edgepipe.device.model.backends import EDGETPU_INSTALL_HINT, find_backend
from edgepipe.device.host import edgetpu_library
from . import imx500_sensor
from .imx500_sensor import Imx500Camera, sensor_pixels
from .imx500_package import bundle_block, ensure_rpk


@dataclass
class Check:
    """One model's verdict. status: passed, failed or skipped (all: no Edge TPU here)."""

    accelerator: str
    status: str
    model: str
    min_agreement: float
    runtime: str
    seconds: float
    comparison: dict[str, Any] | None = None
    reason: str = ""


@dataclass
class VerifyReport:
    bundle: str
    bundle_sha256: str
    golden_images: int
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return any(c.status == "passed" for c in self.checks) and not any(c.status == "failed" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _threshold(o: VerifyOptions, golden: Any, accelerator: str) -> float:
    return o.min_agreement if o.min_agreement is not None else golden.min_agreement[accelerator]


def _verdict(comparison: dict[str, Any], threshold: float) -> tuple[str, str]:
    if comparison["top1_agreement"] >= threshold:
        return "passed", ""
    return "failed", (f"{comparison['measure']} {comparison['top1_agreement']:.1%} ({comparison['agreed']}/{comparison['n']}) "
                      f"< {threshold:.0%}, largest score difference {comparison['max_abs_diff']:.3f}")


def _check_cpu(o: VerifyOptions, bundle: Bundle, golden: Any) -> Check:
    started = time.perf_counter()
    classifier = open_classifier(bundle.root, accelerator="cpu", threads=o.threads, probe=False)
    comparison = compare(golden, run_golden(classifier, golden)).to_json()
    threshold = _threshold(o, golden, "cpu")
    status, reason = _verdict(comparison, threshold)
    return Check("cpu", status, bundle.models["cpu"], threshold, f"{classifier.backend} {classifier.backend_version}",
                 round(time.perf_counter() - started, 3), comparison, reason)


def _check_edgetpu(o: VerifyOptions, bundle: Bundle, golden: Any) -> Check:
    started = time.perf_counter()
    backend = find_backend()
    runtime = f"{backend.name} {backend.version}"
    threshold = _threshold(o, golden, "edgetpu")
    model = bundle.models["edgetpu"]
    outcome = checked_edgetpu(bundle.root, str(bundle.manifest["files"].get(model, "")), edgetpu_library(),
                              o.edgetpu_device, runtime, lambda: (golden, threshold), use_cache=False)
    seconds = round(time.perf_counter() - started, 3)
    missing = o.accelerator == "all" and (outcome is None or outcome.status == "unavailable")
    if outcome is None:
        reason = f"{edgetpu_library()} is not installed; {EDGETPU_INSTALL_HINT}"
    elif outcome.status == "ok":
        return Check("edgetpu", "passed", model, threshold, runtime, seconds, outcome.comparison)
    else:
        reason = outcome.reason
    return Check("edgetpu", "skipped" if missing else "failed", model, threshold, runtime, seconds,
                 outcome.comparison if outcome else None, reason)


def _check_imx500(o: VerifyOptions, bundle: Bundle, golden: GoldenSet) -> Check:
    """The golden images injected into the AI Camera's sensor as input tensors, its answers compared with
    the simulated sensor's (convert --imx500); the CPU model's answers where a bundle has none."""
    started = time.perf_counter()
    rpk = ensure_rpk(bundle)
    camera = Imx500Camera(rpk, len(bundle.labels), factories=imx500_sensor.default_factories(),
                          tensor_injection=True)
    camera.open()
    try:
        scores = np.stack([camera.infer(sensor_pixels(image.bgr, bundle.input_spec)).scores for image in golden.images])
    finally:
        camera.close()
    simulated = all(image.expected_imx500 is not None for image in golden.images)
    if simulated:
        golden = replace(golden, images=[replace(image, expected=image.expected_imx500) for image in golden.images])
    comparison = compare(golden, scores).to_json()
    threshold = _threshold(o, golden, "imx500")
    status, reason = _verdict(comparison, threshold)
    runtime = "IMX500 sensor, tensor injection, vs " + ("the simulated sensor" if simulated else "the CPU model")
    return Check("imx500", status, rpk.relative_to(bundle.root).as_posix(), threshold, runtime,
                 round(time.perf_counter() - started, 3), comparison, reason)


def verify_bundle(o: VerifyOptions) -> VerifyReport:
    """Every requested model of the bundle against its golden set; raises UserError when nothing can be checked."""
    if o.accelerator not in VERIFY_ACCELERATORS:
        raise UserError(f"accelerator {o.accelerator!r} is not one of {', '.join(VERIFY_ACCELERATORS)}")
    started = time.perf_counter()
    bundle = load_bundle(o.bundle, verify=True)
    golden = read_golden(bundle)
    if golden is None:
        raise UserError(f"bundle {bundle.root} has no golden set (converted with --no-golden or by an older "
                        "edgepipe): nothing to verify; convert it again without --no-golden")
    wanted = [a for a in ("cpu", "edgetpu") if o.accelerator in (a, "all") and a in bundle.models]
    if o.accelerator == "imx500":
        bundle_block(bundle)  # one line when the bundle has no IMX500 model
        wanted = ["imx500"]
    if o.accelerator != "all" and not wanted:
        raise UserError(f"bundle {bundle.root} has no {o.accelerator} model; use --accelerator all")
    report = VerifyReport(str(bundle.root), bundle.sha256, len(golden.images))
    for accelerator in wanted:
        check = {"cpu": _check_cpu, "edgetpu": _check_edgetpu, "imx500": _check_imx500}[accelerator](o, bundle, golden)
        report.checks.append(check)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _check_line(c: Check) -> list[str]:
    head = f"  {c.accelerator:<8} {c.status.upper():<7}"
    if c.comparison is None:
        return [f"{head} {c.reason}"]
    m = c.comparison
    sign = ">=" if m["top1_agreement"] >= c.min_agreement else "<"
    lines = [
        f"{head} {m['measure']} {m['top1_agreement']:.1%} ({m['agreed']}/{m['n']}) {sign} {c.min_agreement:.0%}; "
        f"score difference max {m['max_abs_diff']:.4f}, mean {m['mean_abs_diff']:.5f}; accuracy {m['accuracy']:.1%}; "
        f"{c.model} on {c.runtime}, {c.seconds:.2f} s"
    ]
    if c.reason and c.status != "failed":
        lines.append(f"           {c.reason}")
    lines += [f"           disagrees: {d['file']} (true {d['true']}): expected {scored(d['expected'], d['expected_score'])}, "
              f"got {scored(d['got'], d['got_score'])}" for d in m["disagreements"]]
    return lines


def format_report(report: VerifyReport) -> str:
    lines = [f"{report.bundle}: golden set of {report.golden_images} images, "
             f"{'PASSED' if report.passed else 'FAILED'} in {report.seconds:.2f} s"]
    for check in report.checks:
        lines += _check_line(check)
    return "\n".join(lines)


def failure_line(report: VerifyReport) -> str:
    """One line for a failed verification: which model, by how much."""
    failed = [c for c in report.checks if c.status == "failed"]
    if not failed:
        return "no model could be checked here: " + "; ".join(f"{c.accelerator}: {c.reason}" for c in report.checks)
    return "; ".join(f"{c.accelerator} model {c.reason or 'failed'}" for c in failed) + \
        " (the bundle's answers differ on this device; see `edgepipe verify BUNDLE` for the images)"
