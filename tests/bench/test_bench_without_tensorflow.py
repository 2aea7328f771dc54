"""bench runs on a Pi, where TensorFlow is never installed: prove no code path of it imports TF."""

import subprocess
import sys
import textwrap

from edgepipe.synthetic import write_video

BLOCK_TF_AND_BENCH = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
            return None

    sys.meta_path.insert(0, NoTensorFlow())
    from edgepipe.cli import main
    bundle, video, out = sys.argv[1:4]
    assert main(["bench", bundle, "--runs", "3", "--warmup", "1", "--threads", "1", "--accelerator", "all",
                 "--e2e", video, "--out", out, "--plot", out + ".png", "--csv", out + ".csv"]) == 0
    assert main(["bench", "compare", out, out, "--plot", out + ".cmp.png"]) == 0
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("NO-TF-OK")
""")


def test_bench_e2e_compare_and_plot_never_import_tensorflow(tiny_bundle, tmp_path):
    video = tmp_path / "v.mp4"
    write_video(video, frames=8, size=(160, 120))
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_TF_AND_BENCH, str(tiny_bundle), str(video), str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.rstrip().endswith("NO-TF-OK")
