"""Screenshot the main pages of a built docs site in headless Chromium, to look at them as a reader does.

    python tools/screenshot_docs.py                       # site/ -> build/screenshots/*.png
    python tools/screenshot_docs.py --site /tmp/s --out /tmp/shots --page api/trl/

The site is served on 127.0.0.1 (a random free port) for the run; Chromium (Debian: `apt-get install
chromium`) runs headless with a fresh profile and no background networking, and is given time for the
page's scripts (KaTeX) to typeset before the shot.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = {
    "home": "",
    "objective": "objective/",
    "api_core": "api/core/",
    "tutorial_torchrl": "tutorials/torchrl/",
    "benchmark_gridworld": "benchmarks/gridworld_bias_variance/",
}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium found: apt-get install -y chromium")


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    """Serve `site` on 127.0.0.1 in a daemon thread; the caller shuts it down."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def screenshot(chromium: str, url: str, out: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=10000",
            f"--screenshot={out}",
            url,
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "site", help="built site (default: site/)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "screenshots", help="where the PNGs go")
    parser.add_argument("--page", action="append", help="site-relative page path (repeatable); default: main pages")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        sys.exit(f"{args.site} holds no built site: run `make docs` first")
    pages = {page.strip("/").replace("/", "_") or "home": page for page in args.page} if args.page else PAGES
    args.out.mkdir(parents=True, exist_ok=True)
    chromium = find_chromium()
    server = serve(args.site)
    try:
        for name, page in pages.items():
            out = args.out / f"{name}.png"
            screenshot(chromium, f"http://127.0.0.1:{server.server_address[1]}/{page}", out, args.width, args.height)
            print(out)
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
