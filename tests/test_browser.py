"""The built book as a reader meets it: every page opened in headless Chromium.

Runs after a book build (``make book-test`` calls it on the smoke build; set ``NTPRL_BOOK_HTML``
to check another build) and fails on what a reader would see as broken: raw MyST or LaTeX in
the visible text, a broken internal link or anchor, an image that does not load, a JavaScript
error, an exercise solution visible without opening its dropdown, a chapter without a figure,
code or output cut off at the page's edge, a path of the machine that built it (a warning).
A screenshot of each page goes to ``<html>/../screenshots/``.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; without them
it skips, saying what to install. Marked ``browser``: the unit-test run leaves it out.
"""

import os
import pathlib
import re
import shutil
import urllib.parse

import pytest
from test_book import PAGE_WIDTH

ROOT = pathlib.Path(__file__).resolve().parents[1]
HTML = pathlib.Path(os.environ.get("NTPRL_BOOK_HTML", ROOT / "_build/smoke/_build/html"))
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}

pytestmark = pytest.mark.browser


def pages() -> list[pathlib.Path]:
    if not HTML.is_dir():
        return []
    return sorted(p for p in HTML.rglob("*.html") if p.name not in SKIP_PAGES
                  and not any(part.startswith("_") for part in p.relative_to(HTML).parts))


# shown code (not hide-input; solutions too) wider than its box: the box width, longest line
CUT_OFF_CODE = """
return [...document.querySelectorAll(
    'div.cell:not(.tag_hide-input):not(.tag_remove-input) div.cell_input pre')]
  .filter(p => p.clientWidth > 0 && p.scrollWidth > p.clientWidth + 1)
  .map(p => [p.clientWidth, p.textContent.split('\\n')
    .reduce((a, b) => (b.length > a.length ? b : a), '')]);
"""


# output wider than its box (printed text wraps, book/_static/code.css; shown source must fit)
CUT_OFF_OUTPUT = """
return [...document.querySelectorAll('div.cell div.cell_output pre')]
  .filter(p => p.clientWidth > 0 && p.scrollWidth > p.clientWidth + 1)
  .map(p => [p.clientWidth, p.textContent.split('\\n')
    .reduce((a, b) => (b.length > a.length ? b : a), '').slice(0, 100)]);
"""


# tables wider than the text column (the theme then hides their right side in a scroll box)
WIDE_TABLES = """
return [...document.querySelectorAll('article table')].filter(t => t.offsetParent !== null)
  .map(t => [Math.round(t.getBoundingClientRect().width),
             Math.round(t.parentElement.getBoundingClientRect().width),
             t.innerText.split('\\n')[0].slice(0, 60)])
  .filter(([w, room]) => w > room + 1);
"""


@pytest.fixture(scope="module")
def driver():
    if not HTML.is_dir():
        pytest.skip(f"no built book at {HTML}: run `make book-test` first")
    # Debian's chromium, or the Google Chrome and ChromeDriver of GitHub's Ubuntu runners
    chromium = next(filter(None, map(shutil.which, (
        "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"))), None)
    chromedriver = shutil.which("chromedriver") or shutil.which(
        "chromedriver", path=os.environ.get("CHROMEWEBDRIVER", ""))
    if not (chromium and chromedriver):
        why = "Chromium is not installed: `apt-get install chromium chromium-driver`"
        if os.environ.get("NTPRL_REQUIRE_BROWSER") == "1":  # CI: a skip would hide the check
            pytest.fail(why)
        pytest.skip(why)
    webdriver = pytest.importorskip("selenium.webdriver", reason="`pip install selenium`")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600",
                "--allow-file-access-from-files", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(chromedriver))
    d.set_page_load_timeout(60)
    d.set_script_timeout(60)
    yield d
    d.quit()


# the text a reader sees, without code, outputs and rendered math
VISIBLE_TEXT = """
const root = document.querySelector('main') || document.body;
if (!root) return '';
const copy = root.cloneNode(true);
copy.querySelectorAll('mjx-container, .math, script, style, pre, code, .cell_output, '
  + '.highlight, .MathJax, mjx-assistive-mml, .headerlink').forEach(e => e.remove());
return copy.innerText;
"""
BROKEN_IMAGES = """
return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
  .map(i => i.getAttribute('src'));
"""
REMOTE = re.compile(r"^https?://")  # a remote image (the Colab badge) needs the network
VISIBLE_SOLUTIONS = """
return Array.from(document.querySelectorAll('.solution')).filter(e => {
  if (e.closest('details:not([open])')) return false;
  // the title ("Solution to Exercise 1") shows; the body must stay folded until clicked
  return Array.from(e.children).some(c => !c.classList.contains('admonition-title')
                                          && c.offsetHeight > 0);
}).map(e => (e.id || e.className));
"""
# Wait for MathJax to typeset the page: "typeset", "absent" (the page loads it from the web, which
# an offline machine cannot reach: `make book-test` points the smoke build at a local copy when
# npm can fetch one) or "timeout"
MATHJAX_STATE = """
const done = arguments[arguments.length - 1];
const local = Array.from(document.scripts).some(s => /^file:.*mathjax/i.test(s.src));
if (!local) { done('absent'); return; }
const start = Date.now();
(function wait() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise)
    MathJax.startup.promise.then(() => done('typeset'), e => done('error: ' + e));
  else if (Date.now() - start > 30000) done('timeout');
  else setTimeout(wait, 100);
})();
"""
# math left as TeX source, TeX that MathJax could not read (its error boxes) and unknown
# macros (which MathJax shows as their own name in red)
UNTYPESET_MATH = """
const math = Array.from(document.querySelectorAll('.math'));
return math.filter(e => !e.querySelector('mjx-container'))
  .map(e => 'not typeset: ' + e.textContent.slice(0, 60)).concat(
  Array.from(document.querySelectorAll('mjx-merror')).map(e => 'TeX error: '
    + (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80)),
  Array.from(document.querySelectorAll('mjx-container [style*="color: red"]'))
    .map(e => 'unknown TeX macro, in: ' + (e.closest('p, li, td, dd, div') || e)
      .innerText.replace(/\\s+/g, ' ').slice(0, 80)));
"""
# a resource from the web that an offline machine cannot load (MathJax from its CDN): the
# environment, not the book; and the theme's own notice on file:// pages (no stored mode)
OFFLINE = re.compile(r"^https?://\S+ - Failed to load resource: net::ERR_")
THEME_NOISE = re.compile(r"Got invalid theme mode")
RAW = [r"\{cite\}", r"\{doc\}", r"\{ref\}", r"\{numref\}", r"^:::", r"\$\$", r"\\\(",
       r"\{solution-start\}", r"\{exercise\}"]


def test_the_book_was_built():
    if not HTML.is_dir():
        pytest.skip(f"no built book at {HTML}: run `make book-test` first")
    assert (HTML / "book" / "intro.html").exists() or (HTML / "index.html").exists()
    assert len([p for p in pages() if "chapters" in p.parts]) >= 6


def test_math_is_checked_with_a_local_mathjax():
    """The smoke build's MathJax is a file that exists; a skip says when the page checks ran
    without typesetting the math."""
    if not HTML.is_dir():
        pytest.skip(f"no built book at {HTML}: run `make book-test` first")
    page = HTML / "chapters" / "02_ntp_on_mixtures.html"
    local = re.search(r'<script[^>]+src="(file:[^"]*mathjax[^"]*)"', page.read_text())
    if not local:
        pytest.skip("the build loads MathJax from the web: math not checked offline "
                    "(`make mathjax` needs npm)")
    assert pathlib.Path(urllib.parse.urlparse(local.group(1)).path).is_file(), local.group(1)


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(HTML)))
def test_page_reads_clean_in_a_browser(driver, page):
    rel = page.relative_to(HTML)
    driver.get(page.as_uri())
    driver.execute_script("return document.readyState")
    mathjax = driver.execute_async_script(MATHJAX_STATE)
    shots = HTML.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body ? document.body.scrollHeight : 0")
    driver.set_window_size(1280, min(max(height, 800), 12000))
    driver.save_screenshot(str(shots / (str(rel).replace("/", "__").replace(".html", ".png"))))
    problems = []
    if mathjax != "absent":  # a local MathJax: every formula must come out typeset
        problems += ([f"MathJax: {mathjax}"] if mathjax != "typeset"
                     else driver.execute_script(UNTYPESET_MATH))
    text = driver.execute_script(VISIBLE_TEXT)

    def near(m):
        return repr(text[max(0, m.start() - 40):m.end() + 40])

    for pat in RAW:
        problems += [f"raw markup {m.group(0)!r} near {near(m)}"
                     for m in re.finditer(pat, text, re.M)]
    # a warning's traceback or a path of the machine that built the page
    problems += [f"a machine path on the page near {near(m)}"
                 for m in re.finditer(r"site-packages|/(?:home|Users|work|root)/\w", text)]
    # a lone $ that is not a price or a shell variable
    problems += [f"stray '$' near {near(m)}"
                 for m in re.finditer(r"(?<![\w\\])\$(?![\d{A-Z_])", text)]
    broken = driver.execute_script(BROKEN_IMAGES)
    problems += [f"image does not load: {src}" for src in broken if not REMOTE.match(src or "")]
    errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"
              and not OFFLINE.search(e["message"]) and not THEME_NOISE.search(e["message"])]
    problems += [f"console error: {m}" for m in errors]
    problems += [f"solution visible without its dropdown: {s}"
                 for s in driver.execute_script(VISIBLE_SOLUTIONS)]
    problems += [f"table wider than the page ({w} px in {room} px): {head!r}"
                 for w, room, head in driver.execute_script(WIDE_TABLES)]
    if "chapters" in rel.parts:
        n_fig = driver.execute_script(
            "return document.querySelectorAll('.cell_output img, figure img').length")
        if not n_fig:
            problems.append("a chapter without a figure")
        # a code line of PAGE_WIDTH characters (what tests/test_book.py allows) is not cut off
        problems += [f"code cut off at {w} px wide: {line!r}"
                     for w, line in driver.execute_script(CUT_OFF_CODE)
                     if len(line) <= PAGE_WIDTH]
        problems += [f"output cut off at {w} px wide: {line!r}"
                     for w, line in driver.execute_script(CUT_OFF_OUTPUT)]
    # internal links and anchors, relative to where the browser is (index.html redirects)
    here = pathlib.Path(urllib.parse.unquote(urllib.parse.urlparse(driver.current_url).path))
    for href in driver.execute_script(
            "return Array.from(document.querySelectorAll('a[href]')).map(a => "
            "a.getAttribute('href'))"):
        parsed = urllib.parse.urlparse(href)
        if parsed.scheme or href.startswith("//") or href.startswith("mailto:"):
            continue
        target = (here.parent / urllib.parse.unquote(parsed.path)).resolve() if parsed.path \
            else here
        if not target.exists():
            problems.append(f"broken link: {href}")
        elif parsed.fragment and target.suffix == ".html":
            ids = set(re.findall(r'id="([^"]+)"', target.read_text(errors="replace")))
            if urllib.parse.unquote(parsed.fragment) not in ids:
                problems.append(f"broken anchor: {href}")
    assert not problems, f"{rel}:\n  " + "\n  ".join(dict.fromkeys(problems))
