"""This process's resident memory on Linux, from `/proc/self`: the current and peak RSS, and a peak reset."""

from __future__ import annotations

from pathlib import Path


def rss_kib(field: str) -> int | None:
    """A `/proc/self/status` memory field in KiB (`"VmRSS"`: now, `"VmHWM"`: peak); `None` where unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the peak RSS (`VmHWM`) to the current RSS; `False` where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
