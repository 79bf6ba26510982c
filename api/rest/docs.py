"""``GET /docs``: an HTML API reference rendered from the OpenAPI document.

Self-contained on purpose: inline CSS, no scripts, nothing from a CDN, so it works on a
machine with no internet and shows exactly what ``/openapi.json`` says.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-top:1rem}
.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.patch{color:#a60}.delete{color:#c22}.put{color:#808}
code,pre{font:13px ui-monospace,monospace;background:#f6f6f6}pre{padding:.5rem;overflow:auto}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
nav a{margin-right:1rem}
"""


def _schema(schema: Any) -> str:
    return f"<pre>{escape(json.dumps(schema, indent=2, ensure_ascii=False))}</pre>"


def _link(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[1]
        return f'<a href="#schema-{escape(name)}"><code>{escape(name)}</code></a>'
    return f"<code>{escape(json.dumps(schema, ensure_ascii=False))}</code>"


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    parts = [
        f'<div class="op" id="{escape(op["operationId"])}">',
        f'<div><span class="m {method}">{method}</span> <code>{escape(path)}</code> — '
        f"{escape(op['summary'])} <small><code>{escape(op['operationId'])}</code></small></div>",
    ]
    if op.get("description"):
        parts.append(f"<p>{escape(op['description'])}</p>")
    if op["parameters"]:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else ''}</td><td>{_link(p.get('schema', {}))}"
            f"</td><td>{escape(p.get('description', ''))}</td></tr>"
            for p in op["parameters"]
        )
        parts.append(
            "<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th>"
            f"<th></th></tr>{rows}</table>"
        )
    body = op.get("requestBody")
    if body:
        parts.append(f"<p>Body: {_link(body['content']['application/json']['schema'])}</p>")
    answers = []
    for status, response in op["responses"].items():
        content = response.get("content", {})
        schema = next(iter(content.values()))["schema"] if content else None
        answers.append(
            f"<tr><td>{escape(status)}</td><td>{escape(response['description'])}</td>"
            f"<td>{_link(schema) if schema else ''}</td></tr>"
        )
    parts.append(f"<table><tr><th>status</th><th></th><th>body</th></tr>{''.join(answers)}</table>")
    parts.append("</div>")
    return "".join(parts)


def render(doc: dict[str, Any]) -> str:
    """The whole reference page for an OpenAPI document."""
    info = doc["info"]
    groups: dict[str, list[str]] = {tag["name"]: [] for tag in doc.get("tags", [])}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            groups.setdefault(op["tags"][0], []).append(_operation(method, path, op))
    described = {tag["name"]: tag.get("description", "") for tag in doc.get("tags", [])}
    ops = [
        f'<h3 id="tag-{escape(tag)}">{escape(tag)}</h3><p>{escape(described.get(tag, ""))}</p>'
        + "".join(items)
        for tag, items in groups.items()
        if items
    ]
    nav = "".join(f'<a href="#tag-{escape(tag)}">{escape(tag)}</a>' for tag in groups)
    components = "".join(
        f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>{_schema(schema)}'
        for name, schema in sorted(doc["components"]["schemas"].items())
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info['title'])} API</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(info['title'])} {escape(info['version'])}</h1>"
        f"<p>{escape(info['description'])} Machine-readable: "
        '<a href="/openapi.json">/openapi.json</a>. Authenticate with <code>X-API-Key</code> or '
        "<code>Authorization: Bearer</code>. Errors are "
        '<code>{"error": {"code", "message", "details"}}</code>.</p>'
        f'<nav>{nav}<a href="#schemas">Schemas</a></nav>'
        f'<h2 id="operations">Operations</h2>{"".join(ops)}'
        f'<h2 id="schemas">Schemas</h2>{components}</body></html>'
    )
