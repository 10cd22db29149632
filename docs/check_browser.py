"""Check the built HTML docs in a real browser: headless Chromium, driven by Selenium.

Opens every page of the site from disk (file:// URLs, as a reader who
follows the README does) and, once the page's scripts have run, checks that:

- no raw TeX is left in the visible text (``\\(``, ``\\[``, ``$$``,
  ``\\begin{``): MathJax, shipped with the docs, has rendered every formula;
- every image has loaded, with a non-zero natural size;
- the browser console has no errors (SEVERE entries);
- no link, script or stylesheet points to a local file that does not exist;
- each Graphviz drawing shows its smallest text at least as large as the
  page's body text, at the width of the text column;

and that the search page finds "topological". It saves screenshots of a few
key pages, prints the page count, the run time and the size of a record's
text in the backprop chapter's neuron graph, and exits 1 with the list of
problems if there is any.

    python docs/check_browser.py [docs/_build/html] [--screenshots DIR]

Needs ``pip install selenium`` and Chromium with its driver (Debian:
``apt-get install chromium chromium-driver``). No network is used.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

SKIP_DIRS = {"_static", "_sources", "_images", "_downloads"}
SCREENSHOTS = {
    "index.html": "index.png",
    "tutorial/backprop.html": "tutorial-backprop.png",
    "auto_examples/plot_graph.html": "gallery-plot-graph.png",
    "api.html": "api.png",
}
# the record whose text size the report states: the neuron drawn with its gradients
MEASURE_PAGE, MEASURE_IMAGE = "tutorial/backprop.html", "sphx_glr_plot_graph_003.svg"
SEARCH_WORD = "topological"
RAW_TEX = re.compile(r"\\\(|\\\[|\$\$|\\begin\{")
WIDTH, HEIGHT = 1280, 900

# Runs in the page once it has loaded: waits for MathJax and for every image,
# then reports what the checks need.
INSPECT_JS = r"""
const done = arguments[arguments.length - 1];
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const imgs = Array.from(document.images);
  for (const img of imgs) { if (img.loading === "lazy") img.loading = "eager"; }
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(ok => {
    img.addEventListener("load", ok); img.addEventListener("error", ok); setTimeout(ok, 5000);
  })));
  // visible text outside code, scripts and rendered maths
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "NOSCRIPT", "TEXTAREA", "MJX-CONTAINER"]);
  const parts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let hidden = false;
    for (let e = n.parentElement; e; e = e.parentElement) {
      if (skip.has(e.tagName)) { hidden = true; break; }
    }
    if (hidden) continue;
    const el = n.parentElement;
    if (!el || el.getClientRects().length === 0) continue;
    const st = getComputedStyle(el);
    if (st.visibility === "hidden" || st.display === "none") continue;
    parts.push(n.textContent);
  }
  const article = document.querySelector("article") || document.body;
  const body = article.querySelector("section > p") || article;
  const bodyPx = parseFloat(getComputedStyle(body).fontSize);
  done({
    text: parts.join(" "),
    images: imgs.map(img => ({
      src: img.currentSrc || img.src, complete: img.complete,
      w: img.naturalWidth, h: img.naturalHeight,
      shown: img.getBoundingClientRect().width,
      visible: img.getClientRects().length > 0,
    })),
    links: Array.from(document.querySelectorAll("a[href], link[href], script[src]"))
      .map(e => e.href || e.src),
    bodyPx: bodyPx,
    columnPx: article.getBoundingClientRect().width,
    mathjax: !!(window.MathJax && MathJax.startup),
    maths: document.querySelectorAll("mjx-container").length,
  });
})().catch(e => done({error: String(e)}));
"""

SEARCH_JS = r"""
const done = arguments[arguments.length - 1];
const t0 = Date.now();
(function poll() {
  const items = document.querySelectorAll("#search-results ul.search li");
  const summary = document.querySelector("#search-results .search-summary, #search-results p");
  // the results come in one by one; the summary line appears when the search is done
  if ((summary && /finished|did not match|no results/i.test(summary.textContent))
      || Date.now() - t0 > 15000) {
    done({count: items.length, summary: summary ? summary.textContent : ""});
  } else {
    setTimeout(poll, 100);
  }
})();
"""


def _driver(chromium: str, chromedriver: str, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
        "--hide-scrollbars", "--force-device-scale-factor=1",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    d.set_page_load_timeout(60)
    d.set_script_timeout(60)
    return d


def _local_path(url: str) -> Path | None:
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return Path(unquote(parts.path))


def _svg_text_sizes(path: Path) -> tuple[float, list[float]]:
    """The viewBox width of a Graphviz SVG and the font sizes of its text (None if not Graphviz's)."""
    svg = path.read_text(encoding="utf-8", errors="replace")
    if "Generated by graphviz" not in svg:
        return 0.0, []
    vb = re.search(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) [\d.]+"', svg)
    sizes = [float(s) for s in re.findall(r'font-size="([\d.]+)"', svg)]
    return (float(vb.group(1)) if vb else 0.0), sizes


def _screenshot(driver, path: Path) -> None:
    h = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 8000)")
    driver.set_window_size(WIDTH, max(HEIGHT, int(h)))
    time.sleep(0.2)
    driver.save_screenshot(str(path))
    driver.set_window_size(WIDTH, HEIGHT)


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("site", nargs="?", default=str(here / "_build" / "html"), help="the built HTML (default: %(default)s)")
    ap.add_argument("--screenshots", default=str(here / "_build" / "screenshots"), help="where to save screenshots (default: %(default)s)")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    args = ap.parse_args(argv)

    site = Path(args.site).resolve()
    shots = Path(args.screenshots).resolve()
    if not (site / "index.html").is_file():
        print(f"check_browser: no built site at {site} (build it with sphinx -b html first)", file=sys.stderr)
        return 2
    shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not (set(p.relative_to(site).parts[:-1]) & SKIP_DIRS)
    )
    start = time.monotonic()
    problems: list[str] = []
    measured: dict[str, float] = {}
    profile = tempfile.mkdtemp(prefix="fungrad-chromium-")
    driver = _driver(args.chromium, args.chromedriver, profile)
    try:
        for rel in pages:
            url = (site / rel).as_uri()
            driver.get(url)
            info = driver.execute_async_script(INSPECT_JS)
            if "error" in info:
                problems.append(f"{rel}: the page's check script failed: {info['error']}")
                continue
            m = RAW_TEX.search(info["text"])
            if m:
                ctx = info["text"][max(0, m.start() - 40) : m.end() + 40].replace("\n", " ")
                problems.append(f"{rel}: raw TeX in the visible text: ...{ctx}...")
            for img in info["images"]:
                if not img["complete"] or not img["w"] or not img["h"]:
                    problems.append(f"{rel}: image did not load: {img['src']}")
            for link in info["links"]:
                p = _local_path(link)
                if p is not None and not p.exists():
                    problems.append(f"{rel}: link to a missing file: {os.path.relpath(p, site)}")
            for img in info["images"]:
                p = _local_path(img["src"])
                # (a gallery thumbnail is a preview, not a figure to read)
                if p is None or p.suffix != ".svg" or not p.exists() or not img["visible"] or p.stem.endswith("_thumb"):
                    continue
                vbw, sizes = _svg_text_sizes(p)
                if not vbw or not sizes:
                    continue
                px = min(sizes) * img["shown"] / vbw
                if rel == MEASURE_PAGE and p.name == MEASURE_IMAGE:
                    measured = {"px": px, "body": info["bodyPx"], "shown": img["shown"], "viewbox": vbw, "font": min(sizes), "column": info["columnPx"]}
                if px + 0.05 < info["bodyPx"]:
                    problems.append(
                        f"{rel}: graph {p.name} shows its text at {px:.1f} px, smaller than the "
                        f"{info['bodyPx']:.0f} px body text (drawn {img['shown']:.0f} px wide, {vbw:.0f} pt of drawing)"
                    )
            for entry in driver.get_log("browser"):
                if entry.get("level") == "SEVERE":
                    problems.append(f"{rel}: console error: {entry.get('message', '')[:300]}")
            if rel in SCREENSHOTS:
                _screenshot(driver, shots / SCREENSHOTS[rel])

        # the search page, with a query
        driver.get((site / "search.html").as_uri() + f"?q={SEARCH_WORD}")
        found = driver.execute_async_script(SEARCH_JS)
        if not found["count"]:
            problems.append(f"search.html: no results for {SEARCH_WORD!r} ({found['summary'].strip()[:120]!r})")
        for entry in driver.get_log("browser"):
            if entry.get("level") == "SEVERE":
                problems.append(f"search.html?q={SEARCH_WORD}: console error: {entry.get('message', '')[:300]}")
        _screenshot(driver, shots / "search.png")
        # the neuron graph alone, at the width the chapter shows it
        driver.get((site / MEASURE_PAGE).as_uri())
        driver.execute_async_script(INSPECT_JS)
        el = driver.find_elements("css selector", f"img[src$='{MEASURE_IMAGE}']")
        if el:
            driver.execute_script("arguments[0].scrollIntoView()", el[0])
            el[0].screenshot(str(shots / "backprop-neuron-graph.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

    elapsed = time.monotonic() - start
    print(f"check_browser: {len(pages)} pages and the search for {SEARCH_WORD!r} ({found['count']} results) in {elapsed:.1f} s")
    if measured:
        print(
            "check_browser: the backprop neuron graph's record text shows at "
            f"{measured['px']:.1f} px ({measured['font']:.0f} pt text, {measured['viewbox']:.0f} pt drawing shown "
            f"{measured['shown']:.0f} px wide in a {measured['column']:.0f} px column); body text is {measured['body']:.0f} px"
        )
    else:
        problems.append(f"{MEASURE_PAGE}: the neuron graph {MEASURE_IMAGE} was not found to measure")
    print(f"check_browser: screenshots in {shots}")
    if problems:
        print(f"check_browser: {len(problems)} problems:")
        for p in problems:
            print("  " + p)
        return 1
    print("check_browser: all pages passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
