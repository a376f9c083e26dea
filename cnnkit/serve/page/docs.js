// /docs: the API described by /openapi.json, rendered here (FastAPI's Swagger UI would load
// its scripts from a CDN; this page needs nothing but this server).
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, cls = "", text = null) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== null) e.textContent = text;
  return e;
}

function resolve(schema, spec) {
  if (schema && schema.$ref) return resolve(spec.components.schemas[schema.$ref.split("/").pop()], spec);
  return schema || {};
}

function typeOf(schema, spec) {
  const s = resolve(schema, spec);
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (s.anyOf) return s.anyOf.map((x) => typeOf(x, spec)).join(" | ");
  if (s.type === "array") return `array of ${typeOf(s.items, spec)}`;
  if (s.type === "object" && s.properties) {
    return "{" + Object.entries(s.properties).map(([k, v]) => `${k}: ${typeOf(v, spec)}`).join(", ") + "}";
  }
  return s.format ? `${s.type} (${s.format})` : (s.type || "any");
}

function operation(path, method, op, spec) {
  const sec = el("section", "panel");
  const h = el("h2");
  h.append(el("code", "", `${method.toUpperCase()} ${path}`), document.createTextNode(`  ${op.summary || ""}`));
  sec.append(h);
  if (op.description) sec.append(el("p", "note", op.description));
  const dl = el("dl", "card");
  for (const p of op.parameters || []) {
    const s = resolve(p.schema, spec);
    const extra = [s.default !== undefined ? `default ${JSON.stringify(s.default)}` : "",
      s.minimum !== undefined ? `≥ ${s.minimum}` : "", s.maximum !== undefined ? `≤ ${s.maximum}` : ""]
      .filter(Boolean).join(", ");
    dl.append(el("dt", "", `${p.name} (${p.in})`),
      el("dd", "", `${typeOf(p.schema, spec)}${extra ? "; " + extra : ""}. ${p.description || s.description || ""}`));
  }
  if (op.requestBody) {
    for (const [type, c] of Object.entries(op.requestBody.content || {})) {
      dl.append(el("dt", "", `body (${type})`), el("dd", "", typeOf(c.schema, spec)));
    }
  }
  for (const [code, r] of Object.entries(op.responses || {})) {
    const c = (r.content || {})["application/json"];
    dl.append(el("dt", "", `${code}`), el("dd", "", `${r.description}${c ? ": " + typeOf(c.schema, spec) : ""}`));
  }
  sec.append(dl);
  return sec;
}

async function start() {
  const spec = await (await fetch("/openapi.json")).json();
  $("title").textContent = `${spec.info.title} — API ${spec.info.version}`;
  $("description").textContent = spec.info.description || "";
  const out = $("paths");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) out.append(operation(path, method, op, spec));
  }
  document.body.dataset.ready = "true";
}

start();
