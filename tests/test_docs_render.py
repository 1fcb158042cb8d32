"""The built docs site, looked at in headless Chromium, offline.

Builds the site (``mkdocs build --strict``) into a temporary folder, serves it on 127.0.0.1 and
checks what a reader sees: plotly figures on an analysis page and in a notebook are drawn by
plotly.js at run time (``svg.main-svg`` exists only after plotly.js ran), maths is typeset by the
vendored MathJax (``mjx-container``), and a screenshot of the analysis page is not blank. The
browser cannot reach any other host (``--host-resolver-rules``), so everything the pages need
must be in the site. The screenshot is kept at ``build/docs-screenshots/analysis.png``.

Skipped when no Chromium is installed (CI installs Debian's ``chromium``: see ``.ci/run``).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "build" / "docs-screenshots"
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs built with ``mkdocs build --strict`` (as ``make docs`` does)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """The built site served on 127.0.0.1 (an ephemeral port) from a thread."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _chromium(tmp_path: Path, *args: str, timeout: float = 120) -> str:
    if CHROMIUM is None:
        pytest.skip("no Chromium: install it with `apt-get install -y chromium` (CI does)")
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: nothing else
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,900",
        "--virtual-time-budget=10000",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def _analysis_pages(site: Path) -> list[str]:
    """Site-relative URLs of the published analysis pages (not the section index)."""
    pages = sorted(p.parent for p in (site / "analyses").glob("*/index.html"))
    return [f"analyses/{p.name}/" for p in pages]


# ----------------------------------------------------------------------------- PNG decoding
def _unfilter_sequential(kind: int, line: bytes, prev: bytearray, bpp: int) -> bytearray:
    """PNG filters Average (3) and Paeth (4), which run left to right along the row."""
    cur = bytearray(len(line))
    for x in range(len(line)):
        left = cur[x - bpp] if x >= bpp else 0
        up = prev[x]
        if kind == 3:
            pred = (left + up) >> 1
        else:
            ul = prev[x - bpp] if x >= bpp else 0
            p = left + up - ul
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
            pred = left if pa <= pb and pa <= pc else (up if pb <= pc else ul)
        cur[x] = (line[x] + pred) & 0xFF
    return cur


def _png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) to (h, w, c).

    Pillow is not a dependency, so this is the PNG spec's decoder: chunks, zlib, and the five
    row filters (None, Sub and Up vectorised; Average and Paeth row by row)."""
    try:
        from PIL import Image  # optional: faster when installed

        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except ImportError:
        pass
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG {header}"
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    assert len(raw) == height * (1 + stride), "truncated PNG data"
    rows = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (1 + stride)]
        line = raw[y * (1 + stride) + 1 : (y + 1) * (1 + stride)]
        if kind == 0:  # None
            cur = bytearray(line)
        elif kind == 1:  # Sub: a running sum per channel
            arr = np.frombuffer(line, dtype=np.uint8).reshape(width, bpp)
            cur = bytearray(np.cumsum(arr, axis=0, dtype=np.uint8).tobytes())  # wraps mod 256
        elif kind == 2:  # Up
            up = np.frombuffer(bytes(prev), dtype=np.uint8)
            cur = bytearray((np.frombuffer(line, dtype=np.uint8) + up).tobytes())
        elif kind in (3, 4):
            cur = _unfilter_sequential(kind, line, prev, bpp)
        else:
            raise AssertionError(f"bad PNG filter type {kind}")
        rows.append(bytes(cur))
        prev = cur
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, width, bpp)


def _colour_stats(pixels: np.ndarray) -> tuple[int, float]:
    """(number of distinct RGB colours, share of the most common one)."""
    rgb = pixels[..., :3].reshape(-1, 3).astype(np.int64)
    keys = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    _, counts = np.unique(keys, return_counts=True)
    return len(counts), float(counts.max() / counts.sum())


# ----------------------------------------------------------------------------- tests
def test_site_has_an_analysis_page_with_a_figure(site: Path) -> None:
    pages = _analysis_pages(site)
    assert pages, "no published analysis under docs/analyses/"
    html = (site / pages[0] / "index.html").read_text(encoding="utf-8")
    assert "plotly-graph-div" in html
    assert "main-svg" not in html  # drawn by plotly.js at run time, not in the static HTML
    assert "assets/javascripts/plotly.min.js" in html
    assert (site / "assets" / "javascripts" / "plotly.min.js").stat().st_size > 1_000_000


def test_site_loads_nothing_from_other_hosts(site: Path) -> None:
    external = re.compile(
        r"<(?:script|img|iframe)\b[^>]*\bsrc=[\"'](?:https?:)?//|"
        r"<link\b[^>]*\bhref=[\"'](?:https?:)?//[^\"']*[\"'][^>]*>|"
        # static ES module imports (plotly's notebook loader); nbconvert's mermaid loader is a
        # dynamic import() that runs only on pages with mermaid diagrams (none here)
        r"\bimport\s+[\"'](?:https?:)?//",
        re.I,
    )
    offenders = []
    for page in site.rglob("*.html"):
        for m in external.finditer(page.read_text(encoding="utf-8")):
            tag = m.group(0)
            if tag.startswith("<link") and not re.search(
                r"rel=[\"'](?:stylesheet|preload|modulepreload)", tag
            ):
                continue  # plain hyperlinks (canonical, alternate) load nothing
            offenders.append(f"{page.relative_to(site)}: {tag[:120]}")
    assert not offenders, "\n".join(offenders[:20])


def test_analysis_figure_renders_in_headless_chromium(
    server: str, site: Path, tmp_path: Path
) -> None:
    page = _analysis_pages(site)[0]
    n_figures = (
        (site / page / "index.html").read_text(encoding="utf-8").count('class="plotly-graph-div"')
    )
    dom = _chromium(tmp_path, "--dump-dom", f"{server}/{page}")
    assert "js-plotly-plot" in dom, "plotly.js did not run on the analysis page"
    drawn = dom.count('class="main-svg"')
    assert drawn >= n_figures >= 1, f"{drawn} plotly SVG layers for {n_figures} figures"
    assert "Plotly is not defined" not in dom

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "analysis.png"
    shot.unlink(missing_ok=True)
    _chromium(tmp_path, f"--screenshot={shot}", "--hide-scrollbars", f"{server}/{page}")
    assert shot.is_file() and shot.stat().st_size > 10_000, "no screenshot"
    pixels = _png_pixels(shot)
    assert pixels.shape[:2] == (900, 1200)
    distinct, dominant = _colour_stats(pixels)
    assert distinct > 50 and dominant < 0.97, (
        f"blank screenshot? {distinct} colours, top {dominant:.1%}"
    )


def test_maths_is_typeset_offline(server: str, tmp_path: Path) -> None:
    dom = _chromium(tmp_path, "--dump-dom", f"{server}/concepts/maps/")
    assert dom.count("<mjx-container") >= 5, "MathJax did not typeset the maths"
    assert '<g data-mml-node="merror"' not in dom, "MathJax reported a TeX error"


def test_notebook_page_renders_its_figure(server: str, site: Path, tmp_path: Path) -> None:
    page = "notebooks/01_quickstart_edit/"
    assert (site / page / "index.html").is_file()
    dom = _chromium(tmp_path, "--dump-dom", f"{server}/{page}")
    assert 'class="main-svg"' in dom, "the notebook's plotly figure was not drawn"
    assert "<mjx-container" in dom, "the notebook's markdown maths was not typeset"
