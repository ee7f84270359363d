"""Peak resident memory added by a block of code, for benchmarks that run each measurement in a fresh process.

On Linux the kernel's high-water mark (``VmHWM``) is reset to the current RSS through ``/proc/self/clear_refs``
before the block, so the peak counts only what the block allocated on top of its inputs. Elsewhere the increase of
``ru_maxrss`` is the fallback: it misses a peak that stays below the process's earlier one (then it reads 0).
"""

from __future__ import annotations

import resource
import sys


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _max_rss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes, Linux KiB


class PeakRSS:
    """``with PeakRSS() as peak: ...`` then ``peak.increase_mib`` (and ``peak.exact``: the VmHWM reset worked)."""

    def __enter__(self) -> PeakRSS:
        self.increase_mib = 0.0
        self._before = _status_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
            self.exact = self._before is not None
        except OSError:
            self.exact = False
        if not self.exact:
            self._before = _max_rss_kib()
        return self

    def __exit__(self, *exc_info: object) -> None:
        peak = _status_kib("VmHWM") if self.exact else _max_rss_kib()
        self.increase_mib = ((peak or 0) - self._before) / 1024
