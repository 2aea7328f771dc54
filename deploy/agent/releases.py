"""The release commands: prepare, commit, activate (verify, switch, service, health,
rollback on failure), rollback, discard; and pruning old releases after each switch.

An upload becomes a release only after every file's sha256 is checked here, and
`current` moves only to a verified release; a release that fails its health
check is rolled back to the previous one with the service settings it ran with.
"""

from __future__ import annotations

import os
import shutil

from .files import read_json, write_json_atomic
from .imx500 import package_imx500
from .layout import PARTIAL_SUFFIX, Layout
from .protocol import AgentError
from .report import device_report, edgepipe_python
from .services import install_service, restore, wait_healthy
from .unit import install_env_file
from .verify import verify_on_device, verify_release


def prune(layout: Layout, keep: int) -> list:
    """Keep the newest `keep` releases of the history (always including current); remove the rest."""
    history = layout.history_or_disk()[0][-keep:]
    current = layout.current_release()
    kept = [entry["release"] for entry in history]
    if current and current not in kept:
        kept.insert(0, current)
    layout.save_history(history)
    removed = []
    for path in layout.release_dirs():
        if path.name not in kept:
            shutil.rmtree(str(path))
            removed.append(path.name)
    verifications = read_json(layout.verifications_file, {})
    if any(release not in kept for release in verifications):
        write_json_atomic(layout.verifications_file, {k: v for k, v in verifications.items() if k in kept})
    return removed


def discard_unverified(layout: Layout, release_id: str, verification: dict) -> str:
    """A release that failed verification never runs: remove it unless it is current or in the history."""
    previous = layout.current_release()
    if release_id != previous and release_id not in [e["release"] for e in layout.history()]:
        shutil.rmtree(str(layout.release(release_id)), ignore_errors=True)
        verifications = read_json(layout.verifications_file, {})
        verifications.pop(release_id, None)
        write_json_atomic(layout.verifications_file, verifications)
        kept = "the release was discarded"
    else:
        kept = "the release stays on the device but was not switched to"
    raise AgentError("release %s failed verification on the device: %s; %s and current stays %s"
                     % (release_id, verification["reason"] or "see the checks", kept, previous or "unset"),
                     verification=verification, release=release_id, previous=previous)


def cmd_prepare(args, layout: Layout) -> dict:
    layout.releases.mkdir(parents=True, exist_ok=True)
    stale = [p for p in layout.releases.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
    for path in stale:
        shutil.rmtree(str(path), ignore_errors=True)
    have = layout.release(args.release).is_dir()
    if have:
        try:
            verify_release(layout.release(args.release), args.sha)
        except AgentError:  # damaged on the device: upload again; commit replaces it
            have = False
    return {
        "prefix": str(layout.root),
        "partial": str(layout.partial(args.release)),
        "release_dir": str(layout.release(args.release)),
        "have_release": have,
        "removed_partials": [p.name for p in stale],
        "current": layout.current_release(),
        "report": device_report(layout, edgepipe_python(layout, args.python)),
    }


def commit_upload(layout: Layout, release_id: str, sha: str) -> dict:
    """Verify an upload on the device and only then make it a release."""
    partial, release = layout.partial(release_id), layout.release(release_id)
    try:
        verify_release(partial, sha)
    except AgentError as exc:
        shutil.rmtree(str(partial), ignore_errors=True)
        raise AgentError("%s; the upload was discarded and the device keeps its current release" % exc)
    if release.is_dir():  # a damaged copy (prepare found it so): swap in the verified one
        damaged = layout.releases / (".%s.damaged" % release_id)
        shutil.rmtree(str(damaged), ignore_errors=True)
        os.rename(str(release), str(damaged))
        os.rename(str(partial), str(release))
        shutil.rmtree(str(damaged))
    else:
        os.rename(str(partial), str(release))
    return {"release": release_id, "release_dir": str(release), "verified": True}


def cmd_commit(args, layout: Layout) -> dict:
    return commit_upload(layout, args.release, args.sha)


def cmd_activate(args, layout: Layout) -> dict:
    if args.sha and layout.partial(args.release).is_dir():  # one round trip less for a fresh upload
        commit_upload(layout, args.release, args.sha)
    imx500 = package_imx500(layout, args.release, edgepipe_python(layout, args.python),
                            required="imx500" in (args.verify, args.accelerator))
    verification = None
    if args.verify:
        verification = verify_on_device(layout, args.release, args.verify, edgepipe_python(layout, args.python))
        if not verification["passed"]:
            discard_unverified(layout, args.release, verification)
    if args.template_text:
        layout.template.write_text(args.template_text)
    previous = layout.current_release()
    original = layout.history_or_disk()[0]  # a damaged state file is rewritten from what is on disk
    previous_entry = next((e for e in reversed(original) if e["release"] == previous), None)
    history = [e for e in original if e["release"] != args.release]
    layout.switch(args.release)
    result = {"release": args.release, "previous": previous, "health": None, "rolled_back": False,
              "verification": verification, "imx500": imx500}
    if args.manager == "none":
        layout.save_history(history + [{"release": args.release, "service": read_json(layout.service_file, {}) or None}])
        result["removed"] = prune(layout, args.keep)
        return result
    config = {"manager": args.manager, "scope": args.scope, "source": args.source,
              "accelerator": args.accelerator, "collect": args.collect, "python": edgepipe_python(layout, args.python),
              "user": args.user or os.environ.get("USER", "")}
    if args.mqtt:
        config["mqtt"] = args.mqtt
    if args.serve:
        config["serve"] = args.serve
        config["serve_public"] = args.serve_public
    if args.roi:
        config["roi"] = args.roi
    layout.save_history(history + [{"release": args.release, "service": config}])
    install_env_file(layout, args.env_upload)
    service = install_service(layout, config)
    result["health"] = health = wait_healthy(service, service.restart(), args.health_timeout)
    if health["healthy"]:
        result["removed"] = prune(layout, args.keep)
        return result
    layout.save_history(original)
    if previous_entry and layout.release(previous).is_dir():
        result["previous_health"] = restore(layout, previous_entry, args.health_timeout)
        if result["previous_health"] is None:  # it ran without a service: do not leave the failing one
            service.stop()
        back = ("restored %s with its previous service settings" if previous == args.release
                else "rolled back to %s") % previous
    else:
        service.stop()
        layout.current.unlink()
        back = "service stopped (no previous release to go back to)"
    result["rolled_back"] = True
    result["removed"] = prune(layout, args.keep)
    raise AgentError("release %s failed its health check (%s); %s" % (args.release, health["reason"], back),
                     **result)


def cmd_rollback(args, layout: Layout) -> dict:
    history = layout.history_or_disk()[0]
    current = layout.current_release()
    releases = [e["release"] for e in history]
    if current in releases:
        history = history[: releases.index(current)]
    history = [e for e in history if layout.release(e["release"]).is_dir()]
    if not history:
        raise AgentError("no previous release to roll back to under %s" % layout.root)
    target = history[-1]
    layout.save_history(history)
    result = {"release": target["release"], "previous": current,
              "health": restore(layout, target, args.health_timeout)}
    if result["health"] and not result["health"]["healthy"]:
        raise AgentError("rolled back to %s but it failed its health check: %s"
                         % (target["release"], result["health"]["reason"]), **result)
    return result


def cmd_discard(args, layout: Layout) -> dict:
    """Remove the partial upload of a release (after a failed transfer): nothing half-copied stays."""
    partial = layout.partial(args.release)
    existed = partial.exists()
    shutil.rmtree(str(partial), ignore_errors=True)
    return {"discarded": existed, "disk_free": shutil.disk_usage(str(layout.root)).free}
