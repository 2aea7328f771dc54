"""`edgepipe bench` and `bench compare` end to end, in-process, on real interpreters and real files."""

import csv
import json

import pytest

from edgepipe.device.bench.stats import LATENCY_KEYS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RESULT_KEYS = {
    "accelerator", "threads", "workers", "backend", "backend_version", "model_file", "input", "load_ms",
    "first_inference_ms", "warmup", "runs", "timed_s", "latency_ms", "inferences_per_s", "peak_rss_mb",
    "rss_mb", "thermal", "windows", "samples_ms",
}
ENVIRONMENT_KEYS = {
    "hostname", "board", "cpu", "machine", "cores", "cores_available", "os", "kernel", "python", "numpy",
    "edgepipe", "edgetpu_runtime", "edgetpu_devices",
}


def test_bench_json_schema_is_complete_and_consistent(bundle_report, tiny_bundle, measured):
    report = bundle_report
    RUNS, WARMUP = measured["runs"], measured["warmup"]
    assert report["schema"] == "edgepipe.bench/1"
    assert set(report) == {"schema", "model", "model_name", "created", "settings", "environment", "results",
                           "skipped", "e2e"}
    assert report["model"] == str(tiny_bundle) and report["model_name"] == tiny_bundle.name
    assert set(report["environment"]) == ENVIRONMENT_KEYS
    assert report["environment"]["cores"] >= 1 and report["environment"]["python"].count(".") == 2
    assert report["settings"]["runs"] == RUNS and report["settings"]["threads"] == [1, 2]
    assert report["e2e"] is None and report["skipped"] == []
    assert [(r["accelerator"], r["threads"], r["workers"]) for r in report["results"]] == [("cpu", 1, 1), ("cpu", 2, 1)]
    for r in report["results"]:
        assert set(r) == RESULT_KEYS
        assert r["backend"] == "ai_edge_litert" and r["backend_version"]
        assert r["model_file"].endswith("model.tflite")
        assert r["input"] == {"shape": [1, 96, 96, 3], "dtype": "uint8",
                              "source": "random pixels through the model's preprocessing"}
        assert r["runs"] == RUNS == len(r["samples_ms"]) and r["warmup"] == WARMUP
        lat = r["latency_ms"]
        assert tuple(lat) == LATENCY_KEYS
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] >= 0
        assert lat["min"] == min(r["samples_ms"]) and lat["max"] == max(r["samples_ms"])
        assert r["inferences_per_s"] == pytest.approx(RUNS / (sum(r["samples_ms"]) / 1000), rel=1e-3)
        assert r["load_ms"] > 0 and r["first_inference_ms"] > 0
        assert r["peak_rss_mb"] >= r["rss_mb"] > 10
        assert r["windows"] is None


def test_stdout_json_is_the_same_object_as_out(cli, tiny_bundle, tmp_path):
    out = tmp_path / "r.json"
    code, stdout, _ = cli("bench", tiny_bundle, "--runs", "5", "--warmup", "0", "--threads", "1",
                              "--json", "--out", out)
    assert code == 0
    assert json.loads(stdout) == json.loads(out.read_text())


def test_human_output_is_a_table_per_configuration(cli, tiny_bundle):
    code, stdout, stderr = cli("bench", tiny_bundle, "--runs", "5", "--warmup", "1", "--threads", "1,2")
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].startswith(f"model {tiny_bundle} on ")
    assert "p50" in lines[1] and "p99" in lines[1] and "peak RSS MB" in lines[1]
    assert [line.split()[:2] for line in lines[2:4]] == [["cpu", "1"], ["cpu", "2"]]
    assert "timing 5 runs after 1 warm-up" in stderr


def test_csv_has_one_row_per_configuration_matching_the_json(bench_files, bundle_report, measured):
    RUNS = measured["runs"]
    rows = list(csv.DictReader(bench_files["csv"].open()))
    assert len(rows) == 2
    for row, result in zip(rows, bundle_report["results"]):
        assert int(row["threads"]) == result["threads"] and int(row["runs"]) == RUNS
        for key in LATENCY_KEYS:
            assert float(row[f"{key}_ms"]) == result["latency_ms"][key]
        assert float(row["inferences_per_s"]) == result["inferences_per_s"]


def test_bare_tflite_with_and_without_labels(cli, tiny_int8_model):
    for extra in ([], ["--labels", tiny_int8_model["labels"]]):
        code, stdout, _ = cli("bench", tiny_int8_model["model"], *extra, "--runs", "3", "--warmup", "0",
                                  "--threads", "1", "--json")
        assert code == 0
        assert json.loads(stdout)["results"][0]["runs"] == 3


def test_compare_table_and_ratios_from_two_real_results(cli, bench_files):
    a = json.loads(bench_files["bundle"].read_text())
    b = json.loads(bench_files["tflite"].read_text())
    # Options may sit anywhere, also between `compare` and the files.
    code, stdout, _ = cli("bench", "compare", "--json", bench_files["bundle"], bench_files["tflite"])
    assert code == 0
    result = json.loads(stdout)
    assert result["schema"] == "edgepipe.bench-compare/1"
    rows = result["rows"]
    expected = a["results"] + b["results"]
    assert [(r["model"], r["threads"]) for r in rows] == [("tiny", 1), ("tiny", 2), ("model.tflite", 1)]
    base = expected[0]
    for row, res in zip(rows, expected):
        assert row["p50_ms"] == res["latency_ms"]["p50"] and row["p99_ms"] == res["latency_ms"]["p99"]
        assert row["fps"] == res["inferences_per_s"] and row["peak_rss_mb"] == res["peak_rss_mb"]
        assert row["p50_ratio"] == pytest.approx(res["latency_ms"]["p50"] / base["latency_ms"]["p50"], abs=1e-3)
        assert row["fps_ratio"] == pytest.approx(res["inferences_per_s"] / base["inferences_per_s"], abs=1e-3)
    assert rows[0]["p50_ratio"] == rows[0]["fps_ratio"] == 1.0

    code, stdout, _ = cli("bench", "compare", bench_files["bundle"], bench_files["tflite"])
    assert code == 0
    table = stdout.splitlines()
    assert table[0].split()[:4] == ["model", "device", "accelerator", "threads"]
    assert len(table) == 1 + 3 + 1
    assert table[1].split()[-2:] == ["1.00x", "1.00x"]
    assert table[3].split()[0] == "model.tflite"


def test_plots_are_real_pngs(cli, bench_files, tiny_bundle, tmp_path):
    compare_png = tmp_path / "compare.png"
    code, _, _ = cli("bench", "compare", bench_files["bundle"], bench_files["tflite"], "--plot", compare_png)
    assert code == 0 and compare_png.read_bytes()[:8] == PNG_MAGIC
    bench_png = tmp_path / "bench.png"
    code, _, _ = cli("bench", tiny_bundle, "--runs", "5", "--warmup", "0", "--threads", "1",
                         "--duration", "0.2", "--plot", bench_png)
    assert code == 0 and bench_png.read_bytes()[:8] == PNG_MAGIC and bench_png.stat().st_size > 5000


def test_accelerator_all_skips_a_missing_edge_tpu_with_the_reason(cli, tiny_bundle):
    code, stdout, _ = cli("bench", tiny_bundle, "--accelerator", "all", "--runs", "3", "--warmup", "0",
                              "--threads", "1", "--json")
    assert code == 0
    report = json.loads(stdout)
    assert [r["accelerator"] for r in report["results"]] == ["cpu"]
    assert report["skipped"][0]["accelerator"] == "edgetpu"
    assert "no Edge TPU model" in report["skipped"][0]["reason"]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("bench: ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("threads, message", [
    ("0", "0 threads is impossible"),
    ("-2", "-2 threads is impossible"),
    ("two", "'two' is not a whole number"),
    ("1.5", "'1.5' is not a whole number"),
    ("1,,2", "'' is not a whole number"),
    ("65", "more than 64"),
])
def test_impossible_threads_exit_2(cli, tiny_bundle, threads, message):
    code, _, stderr = cli("bench", tiny_bundle, f"--threads={threads}")
    assert code == 2
    assert message in one_error_line(stderr)


@pytest.mark.parametrize("argv, message", [
    (["{missing}", "--runs", "2"], "does not exist"),
    (["{garbage}", "--runs", "2"], "is not a TFLite model"),
    (["{bundle}", "--accelerator", "edgetpu"], "has no Edge TPU model"),
    (["{edgetpu_model}", "--accelerator", "edgetpu"], "the Edge TPU runtime (libedgetpu) is not installed"),
    (["{bundle}", "--accelerator", "edgetpu", "--threads", "1,2"], "ignores --threads"),
    (["{edgetpu_model}", "--accelerator", "all", "--threads", "1,2"],
     "nothing could be measured here: cpu: {edgetpu_model} is compiled for the Edge TPU"),
    (["{bundle}", "--out", "{existing}"], "already exists; pass --force"),
    (["compare", "{existing}"], "is not an edgepipe bench result"),
    (["compare", "{missing}"], "does not exist"),
])
def test_bad_input_is_one_line_exit_1(cli, tiny_bundle, tmp_path, argv, message):
    (tmp_path / "garbage.tflite").write_bytes(b"not a model at all")
    (tmp_path / "existing.json").write_text('{"schema": "something else"}')
    # A model that contains the Edge TPU custom op needs libedgetpu, absent here.
    (tmp_path / "edgetpu.tflite").write_bytes((tiny_bundle / "model.tflite").read_bytes() + b"edgetpu-custom-op")
    names = {"missing": tmp_path / "nope.tflite", "garbage": tmp_path / "garbage.tflite", "bundle": tiny_bundle,
             "existing": tmp_path / "existing.json", "edgetpu_model": tmp_path / "edgetpu.tflite"}
    code, stdout, stderr = cli("bench", *[a.format(**names) for a in argv])
    assert code == 1
    assert message.format(**names) in one_error_line(stderr)
    assert stdout == ""


@pytest.mark.parametrize("argv, message", [
    (["compare"], "needs at least one bench JSON file"),
    (["compare", "a.json", "--runs", "5"], "--runs does not apply to `bench compare`"),
    (["{bundle}", "extra.json"], "unexpected argument 'extra.json'"),
])
def test_misused_compare_exits_2(cli, tiny_bundle, argv, message):
    code, _, stderr = cli("bench", *[a.format(bundle=tiny_bundle) for a in argv])
    assert code == 2
    assert message in one_error_line(stderr)


def test_plot_without_matplotlib_names_the_extra_before_measuring(cli, tiny_bundle, tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    code, _, stderr = cli("bench", tiny_bundle, "--plot", tmp_path / "p.png")
    assert code == 1
    assert one_error_line(stderr).endswith("matplotlib is not installed; install it with: pip install 'edgepipe[plot]'")
    assert "timing" not in stderr and not (tmp_path / "p.png").exists()


def test_help_documents_bench_and_compare(cli):
    code, stdout, _ = cli("bench", "--help")
    assert code == 0
    for text in ("edgepipe bench compare", "--threads", "--e2e", "--duration", "--accelerator", "--host",
                 "see `edgepipe deploy`", "examples:"):
        assert text in stdout


def test_host_without_the_deploy_stage_is_a_user_error(tiny_bundle):
    """The CLI's entry point hands --host to the deploy stage; bench alone only explains."""
    import argparse

    from edgepipe.core.errors import UserError
    from edgepipe.device.bench.cli import register_bench

    parser = argparse.ArgumentParser()
    register_bench(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", str(tiny_bundle), "--host", "pi@raspberrypi"])
    with pytest.raises(UserError, match="--host needs edgepipe's deploy stage"):
        args.func(args)


def test_host_has_the_same_connection_flags_as_deploy(cli):
    _, bench_help, _ = cli("bench", "--help")
    _, deploy_help, _ = cli("deploy", "--help")
    for flag in ("--identity", "--ssh-config", "--ssh-option", "--connect-timeout", "--prefix", "--remote-python"):
        assert flag in bench_help and flag in deploy_help
