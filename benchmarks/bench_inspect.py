"""How often does `edgepipe inspect` predict what the real Edge TPU compiler did?

Holds the offline prediction, op for op, against every model pair Coral publishes
(github.com/google-coral/test_data: a model and the `*_edgetpu.tflite` the compiler
made from it; listed in tests/data/coral/pairs.json) that is available here: in
../shared/coral-test-data beside the checkout or fetched into the cache by
`python tests/convert/coral_pairs.py fetch`. The oracle is the compiled file when
present, else pairs.json's record of it. Prints the match rate over ops and over models,
every mismatch, and the compiler version each compiled file records; writes
benchmarks/results/inspect.json.

    python benchmarks/bench_inspect.py
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "convert"))

from coral_pairs import FETCH_HINT, load_pairs  # noqa: E402

from edgepipe.device.inspect.edgetpu_oracle import compare, cpu_op_keys, not_a_pair  # noqa: E402
from edgepipe.device.model.modelinfo import read_model_info  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def main() -> int:
    rows, excluded, missing = [], [], []
    for pair in load_pairs():
        uncompiled_path, compiled_path = pair.file("uncompiled"), pair.file("compiled")
        if uncompiled_path is None or (compiled_path is None and pair.cpu_ops is None):
            missing.append(pair.name)
            continue
        uncompiled = read_model_info(uncompiled_path)
        if compiled_path is not None:
            compiled = read_model_info(compiled_path)
            reason, cpu_ops, compiled_by = not_a_pair(uncompiled, compiled), cpu_op_keys(compiled), [
                {"compiler_version": p.compiler_version, "min_runtime_version": p.min_runtime_version}
                for p in compiled.edgetpu_packages
            ]
        else:
            reason, cpu_ops, compiled_by = pair.not_a_pair, pair.cpu_ops, pair.compiled_by
        if reason:
            excluded.append({"pair": pair.name, "why": reason})
            continue
        result = compare(uncompiled, cpu_ops)
        rows.append({
            "pair": pair.name,
            "oracle": "compiled file" if compiled_path else "pairs.json",
            "ops": len(result.ops),
            "matched": result.matched,
            "cpu_actual": sum(v.actual == "cpu" for v in result.ops),
            "cpu_predicted": sum(v.predicted == "cpu" for v in result.ops),
            "compiled_by": compiled_by,
            "mismatches": [vars(v) for v in result.mismatches],
        })

    ops = sum(r["ops"] for r in rows)
    matched = sum(r["matched"] for r in rows)
    exact = sum(r["matched"] == r["ops"] for r in rows)
    print(f"{'pair':<62} {'ops':>4} {'cpu':>4} {'pred':>4}  match  compiler (runtime)")
    for r in rows:
        by = ", ".join(f"{c['compiler_version'] or '?'} ({c['min_runtime_version']})" for c in r["compiled_by"])
        print(f"{r['pair']:<62} {r['ops']:>4} {r['cpu_actual']:>4} {r['cpu_predicted']:>4}  "
              f"{'exact' if r['matched'] == r['ops'] else r['matched']:>5}  {by}")
        for m in r["mismatches"]:
            print(f"    #{m['index']} {m['op']}: predicted {m['predicted']}, compiler {m['actual']} ({m['reason']})")
    for e in excluded:
        print(f"excluded {e['pair']}: {e['why']}")
    versions = Counter(f"{c['compiler_version'] or '?'} / runtime {c['min_runtime_version']}" for r in rows for c in r["compiled_by"])
    print(f"\ncompiled files by compiler (as recorded in edgetpu-custom-op): {dict(versions)}")
    print(f"ops: {matched} / {ops} = {100 * matched / max(ops, 1):.1f}%   "
          f"models exact: {exact} / {len(rows)} = {100 * exact / max(len(rows), 1):.1f}%   "
          f"(pairs not available here: {len(missing)}; `{FETCH_HINT}` fetches them)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "inspect.json").write_text(json.dumps(
        {"ops": ops, "ops_matched": matched, "models": len(rows), "models_exact": exact,
         "pairs": rows, "excluded": excluded, "missing": missing}, indent=1) + "\n")
    return 0 if matched == ops else 1


if __name__ == "__main__":
    sys.exit(main())
