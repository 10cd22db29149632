"""Graph drawings in the docs: sharp SVG, readable at the column width, each a link to its full size.

- :func:`graphviz_scraper`, a sphinx-gallery image scraper: a code block of
  the gallery whose last expression is a Graphviz drawing (what
  ``fg.viz.draw`` returns; in Jupyter the same line shows the drawing inline)
  gets that drawing as an SVG figure. A drawing too wide for the text column
  to show its records' text at body size fails the build, with a hint to
  draw it top to bottom (``rankdir="TB"``).
- Every SVG image on a page that is not already a link becomes a link to the
  file itself, so a click shows the drawing at full size (Sphinx does this
  for PNGs only when they are scaled).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.util import logging
from sphinx.util.osutil import relative_uri

logger = logging.getLogger(__name__)

# The text column of the furo theme is 46em (736 px at its 16 px body text;
# docs/check_browser.py measures both), and Graphviz writes 14 pt text in an
# SVG whose width is in pt. Shrunk into the column, a drawing w pt wide shows
# that text at 14 * 736 / w px, so it is at least body size only while
# w <= 644; a narrower drawing keeps its natural size (14 pt = 18.7 px).
COLUMN_PX = 736
BODY_PX = 16
MAX_WIDTH_PT = 14 * COLUMN_PX / BODY_PX

# the value of a block's last expression, which sphinx-gallery keeps under
# this name for its own repr capture; remembered per example so that a later
# block that ends with no expression does not draw the same object again
_LAST = "___"
_drawn: dict[str, int] = {}


def _is_graphviz(obj: Any) -> bool:
    return type(obj).__module__.startswith("graphviz.") and hasattr(obj, "pipe") and hasattr(obj, "source")


def _svg_size(svg: str) -> tuple[float, float]:
    m = re.search(r'<svg[^>]*\bwidth="([\d.]+)pt"[^>]*\bheight="([\d.]+)pt"', svg)
    return (float(m.group(1)), float(m.group(2))) if m else (0.0, 0.0)


def graphviz_scraper(block: Any, block_vars: dict[str, Any], gallery_conf: dict[str, Any]) -> str:
    """Save the Graphviz drawing a code block ends with as an SVG, and return the rST that shows it."""
    obj = block_vars["example_globals"].get(_LAST)
    src = str(block_vars["src_file"])
    if not _is_graphviz(obj) or _drawn.get(src) == id(obj):
        return ""
    _drawn[src] = id(obj)
    svg = obj.pipe(format="svg", encoding="utf-8")
    width, _ = _svg_size(svg)
    name = Path(src).name
    if width > MAX_WIDTH_PT:
        px = 14 * COLUMN_PX / width
        logger.warning(
            f"{name}: a graph drawing is {width:.0f} pt wide, so the text column would show its "
            f"records' text at {px:.1f} px (body text is {BODY_PX} px); draw it top to bottom "
            f'(fg.viz.draw(..., rankdir="TB")) or split it',
            location=(src, getattr(block, "lineno", None)),
        )
    path = Path(next(block_vars["image_path_iterator"])).with_suffix(".svg")
    path.write_text(svg, encoding="utf-8")
    rel = posixpath.relpath(path.as_posix(), Path(gallery_conf["src_dir"]).as_posix())
    alt = f"graph drawing {path.stem[-3:]} of {name}"
    return f"\n\n.. image:: /{rel}\n   :alt: {alt}\n   :class: sphx-glr-single-img fungrad-graph\n\n"


def link_svg_images(app: Any, doctree: nodes.document, docname: str) -> None:
    """Make each SVG image that is not already a link into a link to its own file."""
    if app.builder.format != "html":
        return
    imgdir = relative_uri(app.builder.get_target_uri(docname), "_images")
    for img in list(doctree.findall(nodes.image)):
        uri = img["uri"]
        if not uri.endswith(".svg") or "/thumb/" in uri or isinstance(img.parent, nodes.reference):
            continue
        if uri not in app.env.images:
            continue
        ref = nodes.reference("", "", internal=True, refuri=posixpath.join(imgdir, app.env.images[uri][1]))
        ref["classes"].append("fungrad-zoom")
        img.replace_self(ref)
        ref.append(img)


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-resolved", link_svg_images)
    app.add_css_file("fungrad.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
