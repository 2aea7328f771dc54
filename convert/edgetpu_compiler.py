"""Running Coral's `edgetpu_compiler` and reading what it did.

The compiler is an x86-64 Linux binary, so it runs where it can: on PATH,
else in the Docker image deploy/ ships (edgepipe/edgetpu-compiler), else on
an x86-64 host over ssh/scp. Its exit code is not a reliable verdict (a
compile that maps nothing still says "compiled successfully"), so the
verdict comes from parsing its stdout and its .log table. Every command is an
argument list; remote commands are quoted with shlex, never built by string
pasting.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepipe.core.errors import UserError
from edgepipe.core.ssh import SshOptions, Target, scp_command, ssh_command

from edgepipe.device.inspect.edgetpu_rules import MAPPED, OpPrediction

from .options import CompileOptions

COMPILER = "edgetpu_compiler"
DOCKER_IMAGE = "edgepipe/edgetpu-compiler"
DOCKERFILE = "deploy/edgetpu-compiler/Dockerfile"

HOW_TO_GET_A_COMPILER = (
    "to compile for the Edge TPU, either build the compiler image once with "
    f"`docker build -t {DOCKER_IMAGE} -f {DOCKERFILE} deploy/edgetpu-compiler` "
    "(any machine with Docker; on ARM add --platform linux/amd64) and rerun with --edgetpu, "
    "or rerun with --edgetpu --compiler-host USER@HOST naming an x86-64 Debian/Ubuntu host "
    "that has edgetpu_compiler installed (https://coral.ai/docs/edgetpu/compiler/)"
)

_ERROR_PATTERNS = (
    (re.compile(r"Model not quantized", re.I), "the compiler says the model is not quantized (a float op or a dynamic shape)"),
    (re.compile(r"Internal compiler error", re.I), "the Edge TPU compiler crashed (Internal compiler error)"),
    (re.compile(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'"), None),
    (re.compile(r"Compilation failed", re.I), "compilation failed"),
)
_TABLE_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\S.*?)\s*$")


class CompilerUnavailable(UserError):
    """No way to run the compiler here; convert keeps going with the CPU bundle."""


class CompileError(UserError):
    """The compiler ran and failed, crashed, timed out or mapped nothing."""


@dataclass
class CompileResult:
    model_path: Path
    log_path: Path | None
    where: str
    command: list[str]
    version: str | None
    subgraphs: int
    total: int | None
    mapped: int | None
    cpu: int | None
    table: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "command": self.command,
            "version": self.version,
            "edgetpu_subgraphs": self.subgraphs,
            "total": self.total,
            "mapped": self.mapped,
            "cpu": self.cpu,
            "table": self.table,
        }


def _run(command: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise CompileError(f"{what} timed out after {timeout:g} s; raise --compiler-timeout or use --segments") from None
    except OSError as exc:
        raise CompileError(f"cannot run {command[0]}: {exc.strerror or exc}") from None


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _docker_image_present() -> bool:
    probe = subprocess.run(["docker", "image", "inspect", DOCKER_IMAGE], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def choose_runner(options: CompileOptions) -> str:
    """'ssh', 'local' or 'docker', or CompilerUnavailable saying how to get one."""
    if options.host:
        if shutil.which("ssh") is None or shutil.which("scp") is None:
            raise CompilerUnavailable("--compiler-host needs the OpenSSH client (ssh, scp) on PATH")
        return "ssh"
    if shutil.which(COMPILER):
        return "local"
    if _docker_answers():
        if _docker_image_present():
            return "docker"
        raise CompilerUnavailable(f"Docker is running but has no {DOCKER_IMAGE} image; {HOW_TO_GET_A_COMPILER}")
    raise CompilerUnavailable(f"{COMPILER} is not installed here (it exists only for x86-64 Linux) and no Docker engine answers; {HOW_TO_GET_A_COMPILER}")


def _compile_local(model: Path, work: Path, options: CompileOptions) -> tuple[list[str], subprocess.CompletedProcess]:
    command = [COMPILER, *options.compiler_args(str(work)), str(model)]
    return command, _run(command, options.timeout, COMPILER)


def _compile_docker(model: Path, work: Path, options: CompileOptions) -> tuple[list[str], subprocess.CompletedProcess]:
    shutil.copy(model, work / model.name)
    command = [
        "docker", "run", "--rm", "--network", "none",
        "--user", f"{os.getuid()}:{os.getgid()}",
        "-v", f"{work.resolve()}:/work", "-w", "/work",
        "--entrypoint", COMPILER, DOCKER_IMAGE,
        *options.compiler_args("/work"), f"/work/{model.name}",
    ]  # fmt: skip
    return command, _run(command, options.timeout + 60, "the Edge TPU compiler in Docker")


def _compile_ssh(model: Path, work: Path, options: CompileOptions) -> tuple[list[str], subprocess.CompletedProcess]:
    """Through the deploy stage's SSH layer: the host validated in full, `--` before it, BatchMode."""
    target = Target.parse(options.host or "")
    connection = SshOptions(connect_timeout=15)
    host = str(target)

    def ssh(remote_command: list[str]) -> list[str]:
        return ssh_command(target, connection, remote_command)

    made = _run(ssh(["mktemp", "-d", "/tmp/edgepipe-compile.XXXXXX"]), 60, f"ssh {host}")
    remote = made.stdout.strip()
    if made.returncode != 0 or not re.fullmatch(r"/tmp/edgepipe-compile\.[A-Za-z0-9]+", remote):
        raise CompileError(f"cannot open a work folder on {host} over ssh: {(made.stderr or made.stdout).strip()[:200]}")
    try:
        sent = _run(scp_command(target, connection, [str(model)], target.scp_destination(f"{remote}/")),
                    options.timeout, f"scp to {host}")
        if sent.returncode != 0:
            raise CompileError(f"cannot copy the model to {host}: {sent.stderr.strip()[:200]}")
        command = ssh([COMPILER, *options.compiler_args(remote), f"{remote}/{model.name}"])
        result = _run(command, options.timeout + 60, f"{COMPILER} on {host}")
        stem = model.stem
        for name in (f"{stem}_edgetpu.tflite", f"{stem}_edgetpu.log"):
            _run(scp_command(target, connection, [target.scp_destination(f"{remote}/{name}")], str(work / name)),
                 options.timeout, f"scp from {host}")
        return command, result
    finally:
        _run(ssh(["rm", "-rf", remote]), 60, f"ssh {host}")


def parse_compiler_output(stdout: str, log_text: str = "") -> dict[str, Any]:
    """Numbers and the op table from what the compiler printed and logged."""

    def number(pattern: str) -> int | None:
        match = re.search(pattern, stdout)
        return int(match.group(1)) if match else None

    version = re.search(r"Edge TPU Compiler version (\S+)", stdout, re.I)
    table = []
    in_table = False
    for line in log_text.splitlines():
        if re.match(r"^\s*Operator\s+Count\s+Status", line):
            in_table = True
            continue
        row = _TABLE_ROW.match(line.strip()) if in_table else None
        if row:
            table.append({"op": row.group(1), "count": int(row.group(2)), "status": row.group(3)})
    error = None
    for pattern, message in _ERROR_PATTERNS:
        match = pattern.search(stdout)
        if match:
            error = message or f"the compiler does not know {match.group(1)} version {match.group(2)} (newer than it accepts)"
            break
    total = number(r"Total number of operations:\s*(\d+)")
    mapped = number(r"operations that will run on Edge TPU:\s*(\d+)")
    cpu = number(r"operations that will run on CPU:\s*(\d+)")
    if mapped is None and total is not None and table:
        mapped = sum(r["count"] for r in table if r["status"] == MAPPED)
        cpu = total - mapped
    return {
        "version": version.group(1) if version else None,
        "subgraphs": number(r"Number of Edge TPU subgraphs:\s*(\d+)"),
        "total": total,
        "mapped": mapped,
        "cpu": cpu,
        "table": table,
        "error": error,
    }


def compile_model(model: Path, out_dir: Path, options: CompileOptions) -> CompileResult:
    """Compile `model`; returns where model_edgetpu.tflite is, or raises a one-line error."""
    where = choose_runner(options)
    runner = {"local": _compile_local, "docker": _compile_docker, "ssh": _compile_ssh}[where]
    work = Path(tempfile.mkdtemp(prefix="edgetpu-", dir=out_dir))
    command, proc = runner(Path(model), work, options)
    output = f"{proc.stdout}\n{proc.stderr}"
    compiled = work / f"{Path(model).stem}_edgetpu.tflite"
    log = work / f"{Path(model).stem}_edgetpu.log"
    log_text = log.read_text(errors="replace") if log.is_file() else ""
    parsed = parse_compiler_output(output, log_text)
    last_line = next((line for line in reversed(output.strip().splitlines()) if line.strip()), "no output")
    if parsed["error"]:
        raise CompileError(f"Edge TPU compile failed: {parsed['error']} ({last_line.strip()[:160]})")
    if parsed["subgraphs"] is None or not compiled.is_file():
        raise CompileError(f"the Edge TPU compiler (exit code {proc.returncode}) wrote no compiled model: {last_line.strip()[:200]}")
    if parsed["subgraphs"] == 0:
        raise CompileError("the Edge TPU compiler mapped no operation (0 Edge TPU subgraphs); see `edgepipe inspect` for why")
    return CompileResult(
        model_path=compiled,
        log_path=log if log.is_file() else None,
        where=where if where != "ssh" else f"ssh {options.host}",
        command=command,
        version=parsed["version"],
        subgraphs=parsed["subgraphs"],
        total=parsed["total"],
        mapped=parsed["mapped"],
        cpu=parsed["cpu"],
        table=parsed["table"],
        stdout=output,
    )


def per_op_from_log(predictions: list[OpPrediction], table: list[dict[str, Any]]) -> list[OpPrediction]:
    """The compiler's per-(op, status) counts spread over the ops, in `inspect`'s per-op form.

    The log counts ops per type, not per index, so a type's "Mapped" count goes to the
    instances the offline prediction maps, first ones first, then to the earliest others;
    its other statuses go to the rest in execution order. Where the compiler leaves an op
    on the CPU our offline reason is kept beside its status, because the status alone
    rarely says what to change.
    """
    mapped_left: dict[str, int] = defaultdict(int)
    others: dict[str, deque[str]] = defaultdict(deque)
    for row in table:
        if row["status"] == MAPPED:
            mapped_left[row["op"]] += row["count"]
        else:
            others[row["op"]].extend([row["status"]] * row["count"])
    mapped: set[int] = set()
    for p in sorted(predictions, key=lambda p: (p.edgetpu != "mapped", p.index)):
        if mapped_left[p.op] > 0:
            mapped_left[p.op] -= 1
            mapped.add(p.index)
    ops = []
    for p in predictions:
        if p.index in mapped:
            ops.append(OpPrediction(p.index, p.op, p.version, "mapped", "", MAPPED))
            continue
        status = others[p.op].popleft() if others[p.op] else p.status
        reason = status if p.edgetpu == "mapped" or not p.reason else f"{status}: {p.reason}"
        ops.append(OpPrediction(p.index, p.op, p.version, "cpu", reason, status))
    return ops
