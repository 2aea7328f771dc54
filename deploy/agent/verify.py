"""Checking a release on the device: its files against the manifest, its answers with `edgepipe verify`.

The device may not have edgepipe yet (that is what `prepare` reports), so the
file check cannot use edgepipe.device.model.bundle; it checks the same `files` map.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .files import MANIFEST, read_json, sha256_member, write_json_atomic
from .imx500 import derived_files
from .layout import Layout
from .protocol import AgentError, summarise_verify_run, verification_summary

VERIFY_TIMEOUT_S = 600  # the golden set takes seconds; an Edge TPU probe that hangs is killed by verify itself


def verify_release(directory: Path, expected_sha: str | None = None) -> None:
    """Check every file against the manifest, on the device, after the copy: nothing missing, changed or extra."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise AgentError("%s has no %s" % (directory, MANIFEST))
    if expected_sha and sha256_member(directory, MANIFEST) != expected_sha:
        raise AgentError("%s does not match the bundle's sha256 (corrupted in transfer)" % MANIFEST)
    files = read_json(manifest_path, {}).get("files")
    if not isinstance(files, dict) or not files:
        raise AgentError("%s lists no files" % MANIFEST)
    for name, expected in sorted(files.items()):
        if sha256_member(directory, name) != expected:
            raise AgentError("%s does not match its sha256 on the device (corrupted in transfer or on disk)" % name)
    listed = set(files) | {MANIFEST} | derived_files(read_json(manifest_path, {}))
    for dirpath, dirnames, filenames in os.walk(str(directory)):
        for entry in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            name = os.path.relpath(os.path.join(dirpath, entry), str(directory)).replace(os.sep, "/")
            if name not in listed:
                raise AgentError("%s is not listed in %s; a release holds exactly the manifest's files" % (name, MANIFEST))


def verify_on_device(layout: Layout, release_id: str, accelerator: str, python: str) -> dict:
    """`edgepipe verify` of a release with the device's own edgepipe, recorded in verifications.json."""
    argv = [python, "-m", "edgepipe", "verify", str(layout.release(release_id)), "--accelerator", accelerator, "--json"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        summary = verification_summary({}, accelerator, "edgepipe verify did not finish: %s" % exc)
    else:
        summary = summarise_verify_run(proc.returncode, proc.stdout, proc.stderr, accelerator)
    verifications = read_json(layout.verifications_file, {})
    verifications[release_id] = summary
    write_json_atomic(layout.verifications_file, verifications)
    return summary
