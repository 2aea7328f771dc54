"""edgepipe's device agent: everything `edgepipe deploy` does ON the device.

Why one fixed program instead of remote shell commands: the workstation never
builds a shell string from user input. `edgepipe deploy` ships this package as
one zipapp (deploy/agent_archive.py) on ssh's stdin and passes its arguments
quoted with shlex.quote; Ansible runs the same archive with its `script`
module. So single-host deploys and fleets share one implementation of
verify/switch/service/health/rollback, and the steps that must be atomic on the
device (switch, health check, rollback) run there even when the SSH connection
drops halfway.

Why standard library only (tests/test_layering.py enforces it): it runs before
we know whether edgepipe (or numpy) is installed on the device, and with
whatever python3 the OS has (3.7+), so it can report what is missing instead of
failing to import. Its modules import each other relatively, so the same files
work as `edgepipe.deploy.agent` here and as `edgepipe_agent` in the archive.

Every command prints ONE JSON object on stdout and exits 0, or prints
{"error": "one line"} (plus any partial result) and exits 1; protocol.py names
the commands and the shape of each answer, for this side and the workstation's.

Layout under PREFIX (layout.py):
    releases/<id>/          verified bundles (<id> = first 16 hex of sha256(bundle.json))
    releases/.<id>.partial  an upload in progress (removed by the next `prepare`)
    current -> releases/<id>   the running release (relative symlink, switched atomically)
    deploy-state.json       {"history": [{"release": id, "service": config}, ...]}, oldest first:
                            what rollback goes back to, with the service settings it ran with
    verifications.json      {id: the last `edgepipe verify` result of that release on this device}
    service.json            the service settings in effect (manager, source, accelerator, python)
    service.env             the service's secrets (MQTT password, serve token)
    .deploy.lock            the prefix lock (holder's token and start time)
    edgepipe.service.in     the unit template (sent by `edgepipe deploy`, copied by Ansible)
    collect/                frames kept by `edgepipe run --collect` (the service's with deploy --collect):
                            <stem>.jpg + <stem>.json pairs, listed and deleted by `deploy collect`
Files holding the service's arguments (which may carry stream credentials) are 0600;
state files and the `current` switch are fsynced with their directory.
"""
