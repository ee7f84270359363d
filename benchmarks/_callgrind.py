"""Instructions counted by valgrind's callgrind, segment by segment: a measure a busy machine does not blur.

A script run under :func:`count_segments` marks each measured segment with ``os.getppid()`` before and after it
(``--dump-before=getppid`` writes the counts so far at each call) and prints ``SEGMENTS label1 label2 ...`` once
done; segment ``k``'s count is then in dump ``2k`` (dump ``2k - 1`` holds what ran before it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: set in the environment of the script run under callgrind
UNDER_CALLGRIND = "_ALKIT_BENCHMARK_UNDER_CALLGRIND"


def count_segments(script: str, arguments: list[str]) -> tuple[str, dict[str, int]]:
    """Run ``python script *arguments`` under callgrind; return its output and each segment's instruction count."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (e.g. `apt-get install valgrind`)")
    with tempfile.TemporaryDirectory(prefix="alkit-callgrind-") as folder:
        out = Path(folder) / "callgrind.out"
        command = [
            valgrind, "--tool=callgrind", "--dump-before=getppid", f"--callgrind-out-file={out}",
            sys.executable, script, *arguments,
        ]  # fmt: skip
        env = {**os.environ, UNDER_CALLGRIND: "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        print("counting instructions under callgrind (10-20 minutes: importing torch is slow there) ...", flush=True)
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"the run under callgrind failed:\n{result.stderr[-3000:]}")
        labels = next(line for line in result.stdout.splitlines() if line.startswith("SEGMENTS")).split()[1:]
        counts = {}
        for k, label in enumerate(labels, start=1):
            text = Path(f"{out}.{2 * k}").read_text()
            counts[label] = int(re.search(r"^summary:\s+(\d+)", text, re.MULTILINE).group(1))
    return result.stdout, counts
