"""`bench --workers`: several interpreters invoking at once (the throughput curve of
`run --workers`), on the real tiny model, and `--e2e` on the same pipeline."""

import json

from edgepipe.synthetic import write_video


def test_workers_dimension_gives_one_row_per_combination(cli, tiny_bundle, tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video, frames=12, size=(160, 120), fps=15.0)
    code, stdout, stderr = cli("bench", tiny_bundle, "--workers", "1,2", "--threads", "1", "--runs", "8",
                               "--warmup", "2", "--e2e", video, "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["settings"]["workers"] == [1, 2]
    rows = report["results"]
    assert [(r["workers"], r["threads"]) for r in rows] == [(1, 1), (2, 1)]
    # Every interpreter makes --runs timed runs; all of them enter the statistics.
    assert [r["runs"] for r in rows] == [8, 16] and len(rows[1]["samples_ms"]) == 16
    assert all(r["inferences_per_s"] > 0 and r["latency_ms"]["p50"] > 0 for r in rows)
    assert report["e2e"]["workers"] == 1 and report["e2e"]["frames"] == 8


def test_e2e_with_two_workers_runs_the_parallel_pipeline_in_order(cli, tiny_bundle, tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video, frames=12, size=(160, 120), fps=15.0)
    code, stdout, stderr = cli("bench", tiny_bundle, "--workers", "2", "--threads", "1", "--runs", "8",
                               "--warmup", "2", "--e2e", video)
    assert code == 0, stderr
    assert "end to end: " in stdout and "threads=1, workers=2)" in stdout
    assert "workers" in stdout.splitlines()[1]  # the table's header has the column


def test_compare_keeps_workers_apart(cli, tiny_bundle, tmp_path):
    out = tmp_path / "w.json"
    code, _, stderr = cli("bench", tiny_bundle, "--workers", "1,2", "--threads", "1", "--runs", "5",
                          "--warmup", "1", "--out", out)
    assert code == 0, stderr
    code, stdout, _ = cli("bench", "compare", out, "--json")
    rows = json.loads(stdout)["rows"]
    assert [(r["threads"], r["workers"]) for r in rows] == [(1, 1), (1, 2)]


def test_impossible_workers_exit_2(cli, tiny_bundle):
    code, _, stderr = cli("bench", tiny_bundle, "--workers", "0")
    assert code == 2 and "0 workers is impossible" in stderr
