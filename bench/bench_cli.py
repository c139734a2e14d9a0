"""P5: wall time of `hw --help` (goal ≤ 0.3 s), beside a bare interpreter start and an `import transformers`.

Usage: python bench/bench_cli.py [--repeats 10]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    hw = shutil.which("hw") or sys.exit("the `hw` console script is not on PATH; pip install -e . first")
    rows = {
        "python -c pass (interpreter start)": _median_seconds([sys.executable, "-c", "pass"], args.repeats),
        "hw --help": _median_seconds([hw, "--help"], args.repeats),
        "python -c 'import transformers' (what --help avoids)": _median_seconds(
            [sys.executable, "-c", "import transformers"], max(3, args.repeats // 3)
        ),
    }
    print("\n| command | median wall time |\n|---|---|")
    for label, seconds in rows.items():
        print(f"| {label} | {seconds:.3f} s |")
    print(f"\nP5 hw --help {rows['hw --help']:.3f} s (goal ≤ 0.3 s)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
