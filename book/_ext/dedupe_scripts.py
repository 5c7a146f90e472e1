"""A tiny Sphinx extension: each page loads every script once.

Jupyter Book 1.x registers sphinx-thebe's configuration script twice, so every page declared
``const THEBE_JS_URL`` twice and the browser's console showed a SyntaxError (found by
``tests/test_browser.py``). This drops repeated script entries, keeping the first.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for js in context.get("script_files", []):
        attrs = getattr(js, "attributes", {}) or {}
        key = (str(getattr(js, "filename", js) or ""), attrs.get("body"))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    if "script_files" in context:
        context["script_files"][:] = kept


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
