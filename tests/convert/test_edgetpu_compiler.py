"""Running edgetpu_compiler and reading its verdict. The real compiler is x86-64
Linux only, so these tests put a stand-in on PATH that prints its output format
(Coral's documented format) and writes its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepipe.convert.edgetpu_compiler import (
    CompileError,
    CompilerUnavailable,
    compile_model,
    parse_compiler_output,
    per_op_from_log,
)
from edgepipe.device.inspect.edgetpu_rules import MAPPED, predict_ops
from edgepipe.device.inspect.report import inspect_file
from edgepipe.convert.options import CompileOptions
from edgepipe.convert.metadata import METADATA_NAME, copy_metadata, read_metadata, with_metadata
from edgepipe.device.model.modelinfo import read_model_info
from edgepipe.core.errors import UserError


def test_full_compile_with_stand_in_compiler(stand_in_compiler, small_int8_export: Path, tmp_path: Path) -> None:
    stand_in_compiler("success")
    result = compile_model(small_int8_export, tmp_path, CompileOptions(min_runtime=13, timeout=120))
    assert result.where == "local" and result.version == "16.0.384591198"
    assert result.command[:2] == ["edgetpu_compiler", "-s"] and ["-m", "13"] == result.command[6:8]
    total = len(read_model_info(small_int8_export).ops)
    assert (result.subgraphs, result.total, result.mapped, result.cpu) == (1, total, total, 0)
    report = inspect_file(result.model_path)
    assert report["edgetpu_compiled"] is True
    assert [op["op"] for op in report["ops"]] == ["CUSTOM"] and report["mapped"] == 1


def test_partial_mapping_with_stand_in_compiler(stand_in_compiler, small_int8_export: Path, tmp_path: Path) -> None:
    stand_in_compiler("partial")
    result = compile_model(small_int8_export, tmp_path, CompileOptions(timeout=120))
    info = read_model_info(small_int8_export)
    half = len(info.ops) // 2
    assert (result.mapped, result.cpu) == (half, len(info.ops) - half)
    assert sum(r["count"] for r in result.table if r["status"] == MAPPED) == half
    per_op = per_op_from_log(predict_ops(info), result.table)
    assert [p.edgetpu for p in per_op] == ["mapped"] * half + ["cpu"] * (len(info.ops) - half)
    assert per_op[half].reason == "Operation not supported"
    compiled = inspect_file(result.model_path)
    assert compiled["edgetpu_compiled"] and compiled["cpu"] == len(info.ops) - half


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("not_quantized", "not quantized"),
        ("crash", "crashed (Internal compiler error)"),
        ("zero", "mapped no operation"),
    ],
)
def test_failures_are_parsed_not_trusted_to_exit_codes_with_stand_in_compiler(
    stand_in_compiler, small_int8_export: Path, tmp_path: Path, mode: str, message: str
) -> None:
    stand_in_compiler(mode)  # "crash" and "zero" exit 0, like the real tool
    with pytest.raises(CompileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_model(small_int8_export, tmp_path, CompileOptions(timeout=120))


def test_timeout_with_stand_in_compiler(stand_in_compiler, small_int8_export: Path, tmp_path: Path) -> None:
    stand_in_compiler("hang")
    with pytest.raises(CompileError, match="timed out after 2 s"):
        compile_model(small_int8_export, tmp_path, CompileOptions(timeout=2))


def test_no_compiler_and_no_docker_says_both_ways_to_get_one(no_compiler, small_int8_export: Path, tmp_path: Path) -> None:
    with pytest.raises(CompilerUnavailable) as info:
        compile_model(small_int8_export, tmp_path, CompileOptions())
    text = str(info.value)
    assert "deploy/edgetpu-compiler/Dockerfile" in text and "--compiler-host" in text
    assert "\n" not in text


def test_parse_reads_the_real_output_format() -> None:
    stdout = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 2051 ms.

Input model: model.tflite
Input size: 3.94MiB
Output model: model_edgetpu.tflite
Output size: 4.07MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 72
Operation log: model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU.
Number of operations that will run on Edge TPU: 70
Number of operations that will run on CPU: 2
"""
    log = """Operator                       Count      Status

QUANTIZE                       1          Operation is working on an unsupported data type
CONV_2D                        35         Mapped to Edge TPU
DEQUANTIZE                     1          Operation not supported
"""
    parsed = parse_compiler_output(stdout, log)
    assert (parsed["subgraphs"], parsed["total"], parsed["mapped"], parsed["cpu"]) == (1, 72, 70, 2)
    assert parsed["error"] is None and parsed["version"] == "16.0.384591198"
    assert parsed["table"][1] == {"op": "CONV_2D", "count": 35, "status": MAPPED}
    rejected = parse_compiler_output("ERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'\nCompilation failed!")
    assert rejected["error"] == "the compiler does not know CONV_2D version 6 (newer than it accepts)"


def test_metadata_the_compiler_drops_is_put_back(stand_in_compiler, small_int8_export: Path, tmp_path: Path) -> None:
    stand_in_compiler("success")
    source = tmp_path / "model.tflite"
    source.write_bytes(with_metadata(small_int8_export.read_bytes(), {METADATA_NAME: b'{"labels":["a"]}'}))
    result = compile_model(source, tmp_path, CompileOptions(timeout=120))
    stripped = result.model_path.read_bytes()
    assert METADATA_NAME not in read_metadata(stripped)
    restored = copy_metadata(source.read_bytes(), stripped)
    assert read_metadata(restored)[METADATA_NAME] == b'{"labels":["a"]}'
    assert set(read_metadata(source.read_bytes())) <= set(read_metadata(restored))


STAND_IN_SSH = '''
import subprocess, sys
args = sys.argv[1:]
while args[0] in ("-o", "-p"):
    args = args[2:]
assert args[0] == "--", "the destination must come after --"
host, command = args[1], " ".join(args[2:])
with open(__file__ + ".log", "a") as log:
    log.write(f"{host}\\t{command}\\n")
sys.exit(subprocess.run(["sh", "-c", command]).returncode)
'''
STAND_IN_SCP = '''
import shutil, sys
args = sys.argv[1:]
while args[0] != "--":
    args = args[2:] if args[0] in ("-o", "-P") else args[1:]
src, dst = [a.split(":", 1)[1] if ":" in a else a for a in args[1:]]
shutil.copy(src, dst if not dst.endswith("/") else dst + src.rsplit("/", 1)[-1])
'''


def test_compiler_host_over_stand_in_ssh_with_stand_in_compiler(stand_in_compiler, small_int8_export: Path, tmp_path: Path) -> None:
    """--compiler-host: ssh/scp stand-ins run the remote side locally, so the quoting and the
    copy-compile-copy-clean steps are exercised; the compiler is the stand-in on PATH."""
    import stat
    import sys

    compiler = stand_in_compiler("success")
    for name, body in (("ssh", STAND_IN_SSH), ("scp", STAND_IN_SCP)):
        script = compiler.parent / name
        script.write_text(f"#!{sys.executable}\n{body}")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    result = compile_model(small_int8_export, tmp_path, CompileOptions(host="me@x86box", timeout=120))
    assert result.where == "ssh me@x86box" and result.subgraphs == 1
    assert inspect_file(result.model_path)["edgetpu_compiled"] is True
    calls = (compiler.parent / "ssh.log").read_text().splitlines()
    remote = calls[0].split("\t")[1]
    assert remote.startswith("mktemp -d /tmp/edgepipe-compile.")
    assert calls[1].split("\t")[1].startswith("edgetpu_compiler -s -o /tmp/edgepipe-compile.")
    assert calls[-1].split("\t")[1].startswith("rm -rf /tmp/edgepipe-compile.")
    assert not list(Path("/tmp").glob(f"edgepipe-compile.*/{small_int8_export.name}"))


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/x", "-oProxyCommand=x@host", "me@-host", "me@host;id"])
def test_compiler_host_is_validated_like_a_deploy_target(host: str) -> None:
    with pytest.raises(UserError, match="is not a host"):
        CompileOptions(host=host)
