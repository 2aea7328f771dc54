"""The Raspberry Pi AI Camera's network.rpk in a release whose bundle has an IMX500 model.

Only Raspberry Pi OS's imx500-package makes network.rpk, so the device does:
the device's edgepipe (`python -m edgepipe.device.model.imx500_package RELEASE`) packages
the bundle's packerOut.zip once per package hash and keeps the rpk, with a record
tying it to that hash, next to the package in the release. Those two files are
the only ones a release may hold beyond its manifest's (verify.py).
"""

from __future__ import annotations

import subprocess

from .files import MANIFEST, plain_name, read_json
from .layout import Layout
from .protocol import AgentError

PACKAGE_TIMEOUT_S = 900  # imx500-package on a Pi: well under a minute for a classifier
RPK = "network.rpk"  # edgepipe.device.model.imx500_contract.RPK
RECORD = "network.rpk.json"  # edgepipe.device.model.imx500_package.RECORD


def derived_files(manifest: dict) -> set:
    """The release-relative names of network.rpk and its record, when the bundle has an IMX500 model."""
    block = manifest.get("imx500")
    package = block.get("package") if isinstance(block, dict) else None
    if not isinstance(package, str) or not plain_name(package):
        return set()
    folder = package.rsplit("/", 1)[0] + "/" if "/" in package else ""
    return {folder + RPK, folder + RECORD}


def package_imx500(layout: Layout, release_id: str, python: str, required: bool) -> dict:
    """network.rpk for the release, made by the device's edgepipe. A failure stops the deploy only when
    the AI Camera is to be used (--accelerator or --verify imx500); otherwise it is reported."""
    release = layout.release(release_id)
    if not isinstance(read_json(release / MANIFEST, {}).get("imx500"), dict):
        return {"packaged": False, "reason": "no IMX500 model in the bundle"}
    argv = [python, "-m", "edgepipe.device.model.imx500_package", str(release)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PACKAGE_TIMEOUT_S, cwd="/")
        reason = "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = "imx500 packaging did not finish: %s" % exc
    reason = reason.split(": error: ", 1)[-1]
    if reason and required:
        raise AgentError("release %s: %s" % (release_id, reason))
    return {"packaged": not reason, "reason": reason}
