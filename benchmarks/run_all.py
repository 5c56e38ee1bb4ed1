"""Run every benchmark (`make bench`), or a tiny smoke run of each (`make bench-smoke`, used by CI
to prove they still work; its figures mean nothing)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, just check they run")
    args = ap.parse_args()
    runs = [
        [str(HERE / "bench_chunking.py"), "--size-mib", "8" if args.smoke else "256"],
        [
            str(HERE / "bench_http.py"),
            "--size-mib",
            "8" if args.smoke else "512",
            "--rss-mib",
            "0" if args.smoke else "2048",
        ],
    ]
    runs.append(
        [
            str(HERE / "bench_search.py"),
            *(["--files", "2000", "--runs", "3"] if args.smoke else []),
        ]
    )
    runs.append([str(HERE / "bench_gc.py"), *(["--chunks", "10000"] if args.smoke else [])])
    for cmd in runs:
        print(f"== {Path(cmd[0]).name}", flush=True)
        subprocess.run([sys.executable, *cmd], check=True)


if __name__ == "__main__":
    main()
