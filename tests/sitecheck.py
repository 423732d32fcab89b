"""Checks of a built Jupyter Book site in headless Chromium, for tests/test_site.py.

Every check returns a list of problems (readable strings, empty when the page is fine), so
that the same functions can be shown to fail on a small synthetic site.

The selectors follow the HTML that myst-nb 1.x writes for notebook outputs (see
myst_nb/core/render.py: render_error, render_stderr), e.g.

    <div class="cell_output docutils container">
      <div class="output traceback highlight-ipythontb notranslate">…Traceback (most recent call last)…</div>
      <div class="output stderr highlight-myst-ansi notranslate">…UserWarning: …</div>

and the book theme's sidebar, ``<nav class="bd-links bd-docs-nav">``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag

import PIL.Image

from ntk_notes import pipeline, plotting

# Known to work headless as root on a machine without a display or internet access.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
]
SIDEBAR_LINKS = "nav.bd-docs-nav a[href]"
OUTPUTS = "div.output"  # every output myst-nb renders carries the class `output`
TRACEBACK = "Traceback (most recent call last)"
STDERR_PROBLEM = re.compile(r"error|warning", re.IGNORECASE)  # also logging's "WARNING:absl:…"
EXCERPT = 200
MAX_SCREENSHOT_HEIGHT = 20000
PHONE_WIDTH = 390  # CSS pixels: an iPhone 12-15
SMALLEST_TEXT_PX = 9.0  # figure text legible on a phone held at reading distance


@dataclass(frozen=True)
class Page:
    name: str  # test id and screenshot name
    path: str  # relative to the site, e.g. "book/intro.html"


def toc_pages(toc_path: Path) -> list[Page]:
    """Every page of a Jupyter Book ``_toc.yml``, in order; the site has <file>.html."""
    files = pipeline.toc_files(toc_path)
    stems = [Path(f).name for f in files]
    names = stems if len(set(stems)) == len(stems) else [f.replace("/", "-") for f in files]
    return [Page(name, f"{f}.html") for name, f in zip(names, files)]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def find_chromium() -> tuple[str, str] | None:
    """Debian's chromium and chromedriver (installed by `python3 tasks.py test`), or the
    Chrome that GitHub's Ubuntu runners carry beside their chromedriver."""
    browser = shutil.which("chromium") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def serve(directory: Path):
    """Serve `directory` on an unused localhost port; yields the base URL ending in '/'."""

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class QuietServer(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            # The browser drops requests it no longer needs when it leaves a page.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    server = QuietServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium(browser: str, driver_path: str):
    """One headless Chromium driven by selenium, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="ntk-notes-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        # An explicit driver path means Selenium Manager never tries to download one.
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        try:
            yield driver
        finally:
            driver.quit()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def excerpt(text: str) -> str:
    """The first ~200 characters of an output, without its rules of dashes, on one line."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip().strip("-")]
    joined = " | ".join(lines)
    return joined if len(joined) <= EXCERPT else joined[:EXCERPT] + "…"


def load(driver, url: str) -> None:
    """Open `url`, wait for it to finish loading, and scroll through it so that lazy images
    load; then wait (at most 10 s) until every local image has loaded or failed."""
    driver.get(url)
    wait_for(lambda: driver.execute_script("return document.readyState") == "complete")
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        let y = 0;
        (function step() {
            window.scrollTo(0, y);
            y += window.innerHeight;
            if (y < document.documentElement.scrollHeight) setTimeout(step, 20); else done();
        })();""")
    # External images (CDNs) may never finish here, without internet: wait for local ones only.
    wait_for(
        lambda: driver.execute_script("""
        return [...document.images]
            .filter(img => img.src.startsWith(location.origin) || img.src.startsWith('data:'))
            .every(img => img.complete);""")
    )
    # Formulas are typeset after the load: wait for MathJax 3 when the page has it.
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;
        typeset ? typeset.then(done, done) : done();""")
    driver.execute_script("window.scrollTo(0, 0)")


def wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def is_local(url: str, base: str) -> bool:
    return url.startswith(base) or url.startswith("data:")


def broken_images(driver, base: str) -> list[str]:
    """Local <img> that did not decode: missing files, corrupt files, empty src."""
    images = driver.execute_script("""
        return [...document.images].map(img => ({
            src: img.currentSrc || img.src, html: img.outerHTML,
            ok: img.complete && img.naturalWidth > 0}));""")
    return [
        f"broken image {image['src'][:EXCERPT] or image['html'][:EXCERPT]}"
        for image in images
        if not image["ok"] and (not image["src"] or is_local(image["src"], base))
    ]


def missing_resources(driver, base: str) -> list[str]:
    """Local images, scripts and stylesheets the page refers to that the server does not have.
    External ones (CDN MathJax, fonts) are not checked: there may be no internet."""
    urls = driver.execute_script("""
        return [...document.images].map(img => img.src)
            .concat([...document.querySelectorAll('script[src]')].map(s => s.src))
            .concat([...document.querySelectorAll('link[rel~="stylesheet"][href]')].map(l => l.href));""")
    local = sorted({urldefrag(url).url for url in urls if url.startswith(base)})
    return [f"HTTP {status} for {url}" for url in local if (status := http_status(url)) != 200]


def error_outputs(driver) -> list[str]:
    """Notebook outputs that show an error: myst-nb's traceback outputs, any output quoting a
    traceback, and stderr that mentions an error or a warning."""
    # textContent, not innerText: outputs folded away by a hide-output toggle count too; the
    # text of <pre> alone where there is one, without the copy button's "Copy to clipboard".
    outputs = driver.execute_script(
        """
        return [...document.querySelectorAll(arguments[0])].map(o => [o.className,
            [...o.querySelectorAll('pre')].map(pre => pre.textContent).join('\\n') || o.textContent]);""",
        OUTPUTS,
    )
    problems = []
    for class_name, text in outputs:
        classes = class_name.split()
        if "traceback" in classes:
            problems.append(f"error output: {excerpt(text)}")
        elif TRACEBACK in text:
            problems.append(f"traceback in a {' '.join(c for c in classes if c != 'output')} output: {excerpt(text)}")
        elif "stderr" in classes and STDERR_PROBLEM.search(text):
            first = next(line for line in text.splitlines() if STDERR_PROBLEM.search(line))
            problems.append(f"stderr output: {excerpt(first)}")
    return problems


def scrolling_code(driver) -> list[str]:
    """Code cells whose source is wider than its box at the window's width (1280 px): the
    reader must scroll sideways to read them."""
    wide = driver.execute_script("""
        return [...document.querySelectorAll('div.cell_input pre')]
            .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
            .map(pre => pre.textContent.split('\\n').reduce((a, b) => b.length > a.length ? b : a, ''));""")
    return [f"code cell scrolls sideways, widest line: {excerpt(line)}" for line in wide]


def uncaptioned_figures(driver) -> list[str]:
    """Figures without a number, a caption or real alt text: each image of a page's content
    (a cell's output, or a figure the reproduction report shows) must sit in a <figure>
    whose caption Sphinx numbered ("Fig. 3"), and its alt text must say what is plotted, not
    be empty or a file name."""
    found = driver.execute_script("""
        return [...document.querySelectorAll('.bd-article img, .cell_output img, figure img')].map(img => {
            const figure = img.closest('figure');
            return {src: img.getAttribute('src') || '', alt: (img.getAttribute('alt') || '').trim(),
                    numbered: !!(figure && figure.querySelector('figcaption .caption-number'))};
        });""")
    problems = []
    for image in found:
        name = image["src"].rsplit("/", 1)[-1][:EXCERPT]
        if not image["numbered"]:
            problems.append(f"figure {name} has no numbered caption")
        if not image["alt"] or re.search(r"\.(png|jpe?g|svg|gif)$|^[0-9a-f]{16,}", image["alt"], re.IGNORECASE):
            problems.append(f"figure {name} has no real alt text ({image['alt']!r})")
    return problems


def unrendered_math(driver) -> list[str]:
    """Formulas MathJax did not typeset (Sphinx wraps each in an element of class `math`;
    MathJax 3 puts an <mjx-container> inside): a missing or broken MathJax leaves raw TeX."""
    raw = driver.execute_script("""
        return [...document.querySelectorAll('.math')]
            .filter(m => !m.querySelector('mjx-container')).map(m => m.textContent);""")
    return [f"formula not typeset: {excerpt(text)}" for text in raw]


def screenshot(driver, target: Path) -> None:
    """The whole page (at most 20000 px high) as a PNG, written atomically."""
    width, height = driver.execute_script("return [window.innerWidth, document.documentElement.scrollHeight];")
    # A viewport as tall as the page: Page.captureScreenshot with captureBeyondViewport
    # instead shifts this theme's layout sideways on long pages.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": min(height, MAX_SCREENSHOT_HEIGHT), "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_bytes(base64.b64decode(shot["data"]))
    partial.replace(target)


def check_page(driver, base: str, page: Page, screenshot_dir: Path | None = None) -> list[str]:
    """Everything wrong with one page of the site served at `base`; saves its screenshot."""
    url = base + page.path
    status = http_status(url)
    if status != 200:
        return [f"{page.path}: HTTP {status} (the page is in _toc.yml but not in the site)"]
    load(driver, url)
    problems = (
        broken_images(driver, base)
        + missing_resources(driver, base)
        + error_outputs(driver)
        + unrendered_math(driver)
        + uncaptioned_figures(driver)
        + scrolling_code(driver)
    )
    if screenshot_dir is not None:
        screenshot(driver, screenshot_dir / f"{page.name}.png")
    return problems


def looks_like_404(title: str) -> bool:
    # http.server answers a missing file with a page titled "Error response".
    return not title.strip() or re.search(r"\b404\b|not found|error response", title, re.IGNORECASE) is not None


def check_navigation(driver, base: str, pages: list[Page]) -> list[str]:
    """Every link of the sidebar on the landing page resolves to a real page, and the sidebar
    links to every page of the table of contents."""
    driver.get(base + "index.html")
    # Jupyter Book's index.html redirects to the root page (a meta refresh): wait for its sidebar.
    find_links = "return [...document.querySelectorAll(arguments[0])].map(a => a.href);"
    wait_for(lambda: driver.execute_script(find_links, SIDEBAR_LINKS))
    links = driver.execute_script(find_links, SIDEBAR_LINKS)
    if not links:
        return [f"no sidebar navigation ({SIDEBAR_LINKS}) on {driver.current_url}"]
    targets = list(dict.fromkeys(urldefrag(link).url for link in links))
    problems = []
    for url in targets:
        if not url.startswith(base):
            continue  # an external link: not checkable without internet
        status = http_status(url)
        if status != 200:
            problems.append(f"sidebar link {url}: HTTP {status}")
            continue
        driver.get(url)
        if looks_like_404(driver.title):
            problems.append(f"sidebar link {url}: the page's title is {driver.title!r}")
    problems += [
        f"the sidebar has no link to {page.path} (in _toc.yml)" for page in pages if base + page.path not in targets
    ]
    return problems


def faint_header_icons(driver, minimum_contrast: float = 3.0) -> list[str]:
    """Icons of the page's header buttons (launch, repository, download) whose colour has
    less than ``minimum_contrast`` (WCAG's ratio; 3 is its floor for icons) against the
    background behind them, in the theme the page shows now."""
    found = driver.execute_script("""
        const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
        const behind = el => {
            for (let e = el; e; e = e.parentElement) {
                const c = rgb(getComputedStyle(e).backgroundColor);
                if (c.length >= 3 && (c.length < 4 || c[3] > 0)) return c;
            }
            return [255, 255, 255];
        };
        // Font Awesome's script replaces each <i> icon by an <svg> drawn in the text colour.
        const buttons = '.article-header-buttons > * > .btn svg, .article-header-buttons > .btn svg';
        return [...document.querySelectorAll(buttons)]
            .filter(i => i.getBoundingClientRect().width > 0)
            .map(i => ({name: i.getAttribute('data-icon') || i.getAttribute('class'),
                        fg: rgb(getComputedStyle(i).color), bg: behind(i)}));""")

    def luminance(colour):
        linear = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in colour[:3]]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    problems = []
    for icon in found:
        light, dark = sorted((luminance(icon["fg"]), luminance(icon["bg"])), reverse=True)
        contrast = (light + 0.05) / (dark + 0.05)
        if contrast < minimum_contrast:
            problems.append(f"header icon {icon['name']} has contrast {contrast:.1f} (needs {minimum_contrast:g})")
    if not found:
        problems.append("no header icons found (.article-header-buttons)")
    return problems


def in_dark_mode(driver, url: str) -> None:
    """Open `url` in the theme's dark mode, as a reader who chose it (pydata-sphinx-theme
    keeps the choice in localStorage)."""
    driver.get(url)
    driver.execute_script("localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark');")
    load(driver, url)
    wait_for(lambda: driver.execute_script("return document.documentElement.dataset.theme") == "dark")


@contextlib.contextmanager
def phone_screen(driver, width: int = PHONE_WIDTH):
    """The browser as a phone `width` CSS pixels wide (at twice as many device pixels) for
    the duration of the block; the window is restored afterwards."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": 844, "deviceScaleFactor": 2, "mobile": True}
    )
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def sideways_overflow(driver, url: str, width: int = PHONE_WIDTH) -> list[str]:
    """Whether `url`, seen on a phone `width` pixels wide, is wider than the screen (the
    whole page scrolls sideways)."""
    with phone_screen(driver, width):
        load(driver, url)
        wide = driver.execute_script("return document.documentElement.scrollWidth")
    return [f"{url} is {wide} px wide on a {width} px screen"] if wide > width + 1 else []


def png_dpi(url: str) -> float | None:
    """The resolution a PNG records (matplotlib writes the figure's dpi), or None."""
    with urllib.request.urlopen(url, timeout=10) as response:
        image = PIL.Image.open(io.BytesIO(response.read()))
    dpi = image.info.get("dpi")
    return None if dpi is None else float(dpi[0])


def small_figure_text(driver, url: str, width: int = PHONE_WIDTH, smallest_px: float = SMALLEST_TEXT_PX) -> list[str]:
    """Figures of `url` whose smallest text renders under `smallest_px` CSS pixels on a phone
    `width` pixels wide. No book figure has text under ``plotting.SMALLEST_TEXT_PT``
    (``chapter.figure`` refuses it), at the dpi its PNG records, so a figure shown at
    `shown` of its `natural` pixels sets that text at SMALLEST_TEXT_PT / 72 x dpi x shown / natural."""
    with phone_screen(driver, width):
        load(driver, url)
        images = driver.execute_script(
            "return Array.from(document.querySelectorAll('figure img'))"
            ".map(i => [i.currentSrc, i.getBoundingClientRect().width, i.naturalWidth]);"
        )
    problems = []
    for src, shown, natural in images:
        name = src.rsplit("/", 1)[-1]
        dpi = png_dpi(src)
        if dpi is None or not natural:
            problems.append(f"figure {name} records no dpi, so its text size is unknown")
            continue
        size = plotting.SMALLEST_TEXT_PT / 72 * dpi * shown / natural
        if size < smallest_px:
            problems.append(
                f"figure {name}: its {plotting.SMALLEST_TEXT_PT:g} pt text is {size:.1f} px on a {width} px "
                f"screen (shown {shown:.0f} of {natural} px wide); at least {smallest_px:g} px is legible"
            )
    return problems


def pdf_problems(url: str, min_pages: int, min_images: int) -> list[str]:
    """What is wrong with the PDF at `url`: not a whole PDF, fewer than `min_pages` pages or
    fewer than `min_images` images (the figures). Counted from the file's page and image
    objects, which Chromium writes uncompressed."""
    with urllib.request.urlopen(url, timeout=30) as response:
        data = response.read()
    if not data.startswith(b"%PDF-") or b"%%EOF" not in data[-1024:]:
        return [f"{url} is not a whole PDF (it starts {data[:8]!r})"]
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    images = len(re.findall(rb"/Subtype\s*/Image\b", data))
    problems = []
    if pages < min_pages:
        problems.append(f"{url} has {pages} pages, fewer than {min_pages}")
    if images < min_images:
        problems.append(f"{url} holds {images} images, fewer than the {min_images} figures of the book")
    return problems
