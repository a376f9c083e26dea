// The top-k bars and the one element helper, shared by `cnnkit serve`'s page and the static
// page `cnnkit export --format web` writes: both pages show a prediction the same way.
"use strict";

function el(tag, cls = "", text = null) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== null) e.textContent = text;
  return e;
}

function bar(t, top) {
  const row = el("div", "bar" + (top ? " top" : ""));
  row.dataset.class = t.class;
  const label = el("span", "label", t.class);
  label.title = t.class;
  const track = el("span", "track");
  const fill = el("span", "fill");
  fill.style.width = `${(100 * t.probability).toFixed(1)}%`;
  track.append(fill);
  row.append(label, track, el("span", "value", `${(100 * t.probability).toFixed(1)}%`));
  return row;
}
