"""The pieces every HTML page of cnnkit's is made of (a run's report.html, `cnnkit compare`, a
study's report.html): tables, notes, images as PNG data: URIs, colour maps, mosaics, bar charts
in SVG, and the page itself with its inline CSS. Everything a page shows is inside it, so it
opens offline, mails as one attachment and makes no request at all; its Content-Security-Policy
forbids any, so a slip shows as a console error rather than a silent fetch. No script. Every
string that reaches the page is escaped here.
"""
from __future__ import annotations

import base64
import io
import math
from html import escape
from pathlib import Path

import numpy as np


def table(head: list[str], rows: list[list], cls: str = "") -> str:
    """Cells are escaped unless given as `Raw` (HTML this module built)."""
    def cell(v, tag):
        return f"<{tag}>{v if isinstance(v, Raw) else escape(str(v))}</{tag}>"

    return (f'<table class="{cls}"><thead><tr>{"".join(cell(h, "th") for h in head)}</tr></thead>'
            "<tbody>" + "".join("<tr>" + "".join(cell(v, "td") for v in r) + "</tr>" for r in rows)
            + "</tbody></table>")


class Raw(str):
    """HTML built here, passed through `table` as it is."""


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W), (H, W, 1) or (H, W, 3) as PNG bytes."""
    from PIL import Image

    pixels = np.ascontiguousarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1
                                  else pixels)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def img(pixels: np.ndarray, alt: str, side: int = 64) -> str:
    """An <img> whose longer side shows at about `side` CSS pixels: a small image is enlarged
    by a whole factor (crisp pixels), a large one shrunk before encoding (a small file)."""
    h, w = pixels.shape[:2]
    if max(h, w) > side:
        from PIL import Image

        im = Image.fromarray(pixels[..., 0] if pixels.shape[-1:] == (1,) else pixels)
        im.thumbnail((side, side))
        pixels = np.asarray(im)
        h, w = pixels.shape[:2]
    k = max(1, round(side / max(h, w)))
    return png_tag(png(pixels), alt, w * k, h * k)


def png_tag(data: bytes, alt: str, width: int | None = None, height: int | None = None) -> str:
    """An <img> of PNG bytes, at their own size unless given one."""
    if width is None:
        from cnnkit.data.images import pillow_open

        width, height = pillow_open(io.BytesIO(data)).size
    return (f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}" '
            f'alt="{escape(alt)}" width="{width}" height="{height}">')


def figure(image_html: str, caption: str) -> str:
    return f"<figure>{image_html}<figcaption>{escape(caption)}</figcaption></figure>"


def colormap(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colour map."""
    import matplotlib

    return (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def mosaic(tiles: np.ndarray, ncols: int) -> np.ndarray:
    """RGB tiles (n, h, w, 3) in rows of `ncols`, one white pixel between them."""
    n, h, w = tiles.shape[:3]
    rows = math.ceil(n / ncols)
    out = np.full((rows * (h + 1) - 1, ncols * (w + 1) - 1, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tile
    return out


def bars_svg(values: list, label: str, fmt: str) -> str:
    """A small bar chart of one number per epoch, as inline SVG."""
    vals = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
    top = max(vals + [0.0]) or 1.0
    w, h, left, bottom = 320, 120, 8, 18
    step = (w - 2 * left) / max(len(vals), 1)
    tall = [v / top * (h - 40) for v in vals]
    bars = "".join(f'<rect x="{left + (i + 0.1) * step:.1f}" y="{h - bottom - t:.1f}" '
                   f'width="{step * 0.8:.1f}" height="{t:.1f}" fill="#4c78a8">'
                   f"<title>epoch {i + 1}: {fmt.format(v)}</title></rect>"
                   for i, (v, t) in enumerate(zip(vals, tall)))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
            f'aria-label="{escape(label)}" font-size="11" font-family="sans-serif">'
            f'<text x="{left}" y="13">{escape(label)} (max {fmt.format(top)})</text>{bars}'
            f'<text x="{left}" y="{h - 4}">1</text>'
            f'<text x="{w - left}" y="{h - 4}" text-anchor="end">epoch {len(vals)}</text></svg>')


# -- the page ----------------------------------------------------------------------------------
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:#202124;margin:0 auto;max-width:1100px;padding:0 24px 48px}
header{border-bottom:1px solid #dadce0;margin-bottom:8px}
h1{font-size:24px;margin:20px 0 4px} h2{font-size:20px;margin:32px 0 8px;
 border-bottom:1px solid #dadce0} h3{font-size:15px;margin:20px 0 6px}
nav a{margin-right:14px;color:#1a73e8;text-decoration:none} .path{color:#5f6368;font-size:13px}
h1,.path,td{overflow-wrap:anywhere} .headline{font-size:16px} .note{color:#5f6368;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:4px 0}
th,td{padding:3px 10px;border-bottom:1px solid #eceff1;text-align:left;vertical-align:top}
table.num td+td,table.num th+th{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;overflow-wrap:normal}
table.doctor td:first-child{white-space:nowrap;overflow-wrap:normal}
table.facts thead{display:none} table.facts td:first-child{color:#5f6368}
table.cm td,table.cm th{padding:0;border:0;font-size:12px;text-align:center;vertical-align:middle}
table.cm th{padding:2px 4px;max-width:72px}
table.cm td:first-child{text-align:right;padding-right:6px}
table.cm span{display:block;min-width:42px;line-height:26px;font-variant-numeric:tabular-nums}
table.cm span.diag{outline:1px solid #0b3d91;outline-offset:-1px}
img{image-rendering:pixelated;vertical-align:top;max-width:100%;height:auto}
.grid{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0 8px 8px 0;display:inline-block;vertical-align:top;text-align:center}
figcaption{font-size:12px;color:#3c4043;max-width:150px;margin:auto}
.diagram{overflow-x:auto} .side{max-width:520px}
.row{display:flex;gap:32px;flex-wrap:wrap;margin:8px 0;align-items:flex-start}
.preds{display:flex;flex-wrap:wrap;gap:14px}
.pred{display:flex;gap:8px;align-items:center;border:1px solid #eceff1;padding:6px;width:330px}
.pred figure{flex:none;width:96px} .bars{flex:1;min-width:0;font-size:12px}
.bar{display:flex;align-items:center;gap:6px;height:19px}
.bar .label{width:80px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar .track{flex:1;min-width:60px;background:#f1f3f4;height:11px}
.bar .value{width:32px;text-align:right}
.bar .track span{display:block;height:100%;background:#9aa0a6}
.bar.right .track span{background:#1a73e8} .bar.wrong .track span{background:#d93025}
.bar.true .track span{background:#188038} .bar.true .label,.bar.right .label{font-weight:600}
dl.options{columns:3 240px;font-size:13px;margin:4px 0}
dl.options div{display:flex;gap:8px;break-inside:avoid;border-bottom:1px solid #eceff1;
 padding:2px 0}
dl.options dt{color:#5f6368;min-width:110px} dl.options dd{margin:0;word-break:break-word}
details summary{cursor:pointer;color:#1a73e8;margin:8px 0}
"""


def page(title: str, run_dir: Path | None, headline_html: str, sections: list,
         kind: str = "Run report") -> str:
    nav = "".join(f'<a href="#{sid}">{escape(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{escape(name)}</h2>{html}</section>'
                   for sid, name, html in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            # nothing may load from anywhere: images are data: URIs, styles inline, no script
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{kind}: {escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{kind}: {escape(title)}</h1>"
            + (f'<div class="path">{escape(str(run_dir.resolve()))}</div>' if run_dir else "")
            + headline_html + f"<nav>{nav}</nav></header>{body}</body></html>\n")
