"""``make bench``: run every ``bench/bench_*.py`` in turn and collect their JSON results.

Each benchmark measures against a reference in the same process (ratios, medians of
repeats), prints its own summary and exits non-zero when it misses its target. This runner
writes ``<output>/<name>.json`` per benchmark and ``<output>/summary.json``, and exits
non-zero if any benchmark failed. ``--only sdf,metrics`` runs a subset.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("bench-output"))
    parser.add_argument("--only", default="", help="comma-separated names, e.g. sdf,metrics")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    scripts = sorted(BENCH.glob("bench_*.py"))
    summary = {}
    failed = []
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        print(f"== {name} ({script.relative_to(BENCH.parent)})", flush=True)
        result_path = args.output / f"{name}.json"
        start = time.perf_counter()
        completed = subprocess.run([sys.executable, str(script), "--json", str(result_path)])
        seconds = round(time.perf_counter() - start, 1)
        result = json.loads(result_path.read_text()) if result_path.is_file() else None
        summary[name] = {"exit_code": completed.returncode, "seconds": seconds, "result": result}
        if completed.returncode != 0:
            failed.append(name)
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"== {len(summary) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
