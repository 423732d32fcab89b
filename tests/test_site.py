"""The built site opened in headless Chromium: every page of _toc.yml loads with no broken
image, no error output and no figure without a numbered caption and alt text, fits a 390 px
phone screen with figure text of at least 9 px, keeps its header icons visible in dark
mode, the sidebar links resolve, the start page links the book's PDF, and each page's
screenshot is saved to _build/screenshots/. The site is _build/html (or
$NTK_NOTES_SITE): build it first with `python3 tasks.py book`. Without the site or Chromium
these tests skip, and fail under CI.

The last tests run the same checks on a small synthetic site, to show that they can fail."""

import os
import struct
import zlib
from pathlib import Path

import pytest
import sitecheck
from sitecheck import Page

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("NTK_NOTES_SITE", ROOT / "_build" / "html")).resolve()
# The table of contents the site was built from: <book>/_build/html -> <book>/_toc.yml.
TOC = SITE.parents[1] / "_toc.yml" if (SITE.parents[1] / "_toc.yml").is_file() else ROOT / "_toc.yml"
PAGES = sitecheck.toc_pages(TOC)


def unavailable(reason: str):
    """Skip on a developer's machine; under CI a missing prerequisite is a failure."""
    if sitecheck.in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    found = sitecheck.find_chromium()
    if found is None:
        unavailable(
            "chromium and chromedriver are not installed (python3 tasks.py test installs them "
            "with apt-get on Debian/Ubuntu)"
        )
    with sitecheck.chromium(*found) as driver:
        yield driver


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").is_file():
        unavailable(f"build the site first: python3 tasks.py book (no {SITE / 'index.html'})")
    with sitecheck.serve(SITE) as url:
        yield url


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_page_renders_without_broken_images_or_errors(page, site_url, browser):
    problems = sitecheck.check_page(browser, site_url, page, screenshot_dir=SITE.parent / "screenshots")
    assert not problems, f"{page.path}:\n  " + "\n  ".join(problems)


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_page_fits_a_phone_screen_with_legible_figures(page, site_url, browser):
    url = site_url + page.path
    assert sitecheck.sideways_overflow(browser, url) + sitecheck.small_figure_text(browser, url) == []


@pytest.mark.browser
def test_header_icons_stay_visible_in_dark_mode(site_url, browser):
    chapter = next(page for page in PAGES if page.path.endswith("ntk_in_practice.html"))
    sitecheck.in_dark_mode(browser, site_url + chapter.path)
    assert browser.execute_script("return document.documentElement.dataset.theme") == "dark"
    assert sitecheck.faint_header_icons(browser) == []
    screenshot = SITE.parent / "screenshots" / f"{chapter.name}-dark.png"
    sitecheck.screenshot(browser, screenshot)


@pytest.mark.browser
def test_the_start_page_links_a_pdf_of_the_whole_book(site_url, browser):
    start = next(page for page in PAGES if page.name == "start")
    sitecheck.load(browser, site_url + start.path)
    links = browser.execute_script("return [...document.querySelectorAll(\"a[href$='.pdf']\")].map(a => a.href)")
    assert len(links) == 1, f"the start page should link one PDF, found {links}"
    # Every page and every figure of the chapters is in it (figures at least once: the
    # report's copies may share their image with the chapter's).
    figures = sum(source.read_text().count("{glue:figure}") for source in (ROOT / "book").glob("*.py"))
    assert sitecheck.pdf_problems(links[0], min_pages=len(PAGES), min_images=figures) == []


@pytest.mark.browser
def test_sidebar_links_resolve_and_cover_the_toc(site_url, browser):
    problems = sitecheck.check_navigation(browser, site_url, PAGES)
    assert not problems, "sidebar navigation:\n  " + "\n  ".join(problems)


# --- The checks fail where they should: a synthetic site with one defect per page. ---


def png(width: int = 4, height: int = 3, dpi: float | None = None) -> bytes:
    """A valid grey RGB PNG, recording `dpi` as matplotlib does (pixels per metre)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * 3 * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + (b"" if dpi is None else chunk(b"pHYs", struct.pack(">IIB", *[round(dpi / 0.0254)] * 2, 1)))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def html(body: str, title: str = "A page", stylesheets: tuple = ("style.css",)) -> str:
    links = "".join(f'<link rel="stylesheet" href="{sheet}">' for sheet in stylesheets)
    return (
        f'<!DOCTYPE html><html><head><title>{title}</title><meta name="viewport" content="width=device-width">'
        f"{links}</head><body>{body}</body></html>"
    )


def cell_output(output: str) -> str:
    return f'<div class="cell docutils container"><div class="cell_output docutils container">{output}</div></div>'


# Copied from what myst-nb 1.4 renders for a ZeroDivisionError output and a warning on stderr.
ERROR_OUTPUT = cell_output(
    '<div class="output traceback highlight-ipythontb notranslate"><div class="highlight"><pre><span></span>'
    '<span class="gt">---------------------------------------------------------------------------</span>\n'
    '<span class="ne">ZeroDivisionError</span><span class="g g-Whitespace">                         </span>'
    "Traceback (most recent call last)\n"
    '<span class="n">Cell</span> <span class="n">In</span><span class="p">[</span><span class="mi">2</span>'
    '<span class="p">],</span> <span class="n">line</span> <span class="mi">1</span>\n'
    '<span class="ne">----&gt; </span><span class="mi">1</span> <span class="mi">1</span>'
    '<span class="o">/</span><span class="mi">0</span>\n\n'
    '<span class="ne">ZeroDivisionError</span>: division by zero\n</pre></div>\n</div>'
)
STDERR_WARNING = cell_output(
    '<div class="output stderr highlight-myst-ansi notranslate"><div class="highlight"><pre><span></span>'
    "/tmp/x.py:2: UserWarning: careful\n  warnings.warn('careful')\n</pre></div>\n</div>"
)
STDOUT_AND_PROGRESS = cell_output(
    '<div class="output stream highlight-myst-ansi notranslate"><div class="highlight"><pre>accuracy 0.93\n'
    '</pre></div></div><div class="output stderr highlight-myst-ansi notranslate"><div class="highlight">'
    "<pre>100%|##########| 20/20 [00:01&lt;00:00]\n</pre></div></div>"
)
# What myst-nb 1.4 renders for a {glue:figure} with :name: and :alt:.
CAPTIONED_FIGURE = (
    '<figure class="align-default" id="fig-a"><img alt="Accuracy against epsilon, one line per attack" '
    'src="good.png"><figcaption><p><span class="caption-number">Fig. 1 </span>'
    '<span class="caption-text">Accuracy under attack.</span></p></figcaption></figure>'
)
WIDE_FIGURE = '<article class="bd-article">' + CAPTIONED_FIGURE.replace("good.png", "wide.png") + "</article>"
SIDEBAR = (
    '<nav class="bd-links bd-docs-nav"><ul><li><a class="reference internal" href="#">Home</a></li>'
    '<li><a class="reference internal" href="clean.html">Clean</a></li>'
    '<li><a class="reference internal" href="gone.html">Gone</a></li>'
    '<li><a class="reference internal" href="moved.html">Moved</a></li></ul></nav>'
)


@pytest.fixture(scope="module")
def synthetic_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("synthetic-site")
    files = {
        "index.html": html(SIDEBAR, title="Home"),
        "clean.html": html(CAPTIONED_FIGURE + STDOUT_AND_PROGRESS),
        "uncaptioned.html": html(cell_output('<img src="good.png" alt="good.png">')),
        "broken.html": html(
            '<img src="missing.png"><img src="corrupt.png"><img src="good.png">'
            '<link rel="stylesheet" href="missing.css">'
        ),
        "error.html": html(ERROR_OUTPUT),
        "stderr.html": html(STDERR_WARNING),
        "moved.html": html("This page has moved.", title="404 Page not found"),
        # Sphinx's markup for inline math, with no MathJax to typeset it.
        "math.html": html(r'<p>Kernel regression <span class="math notranslate nohighlight">\(f_\infty\)</span>.</p>'),
        "wide.html": html(
            '<div class="cell docutils container"><div class="cell_input docutils container">'
            '<div class="highlight"><pre style="overflow-x: auto; width: 300px">'
            + "x = 1\n"
            + "y = "
            + "1 + " * 60
            + "1\n</pre></div></div></div>"
        ),
        "wide-table.html": html("<table><tr>" + "<td>0.123456</td>" * 80 + "</tr></table>"),
        "faint-icons.html": html(
            '<div style="background: #222"><div class="article-header-buttons">'
            '<a class="btn"><svg data-icon="rocket" width="16" height="16" style="color: #333"></svg></a>'
            '<a class="btn"><svg data-icon="github" width="16" height="16" style="color: #ddd"></svg></a></div></div>'
        ),
        # A 1600 px figure at 110 dpi, shrunk to the screen as the theme does (labels ~3 px),
        # then under the book's own phone stylesheet.
        "wide-figure.html": html(WIDE_FIGURE),
        "wide-figure-styled.html": html(WIDE_FIGURE, stylesheets=("style.css", "narrow_screens.css")),
        "narrow_screens.css": (ROOT / "_static" / "narrow_screens.css").read_text(),
        "style.css": "body { font-family: sans-serif; } img { max-width: 100%; height: auto; }",
    }
    for name, text in files.items():
        (site / name).write_text(text)
    (site / "good.png").write_bytes(png())
    (site / "wide.png").write_bytes(png(1600, 400, dpi=110))
    (site / "corrupt.png").write_bytes(png()[:20] + b"not a png at all")
    with sitecheck.serve(site) as url:
        yield url


def check(browser, url, name):
    return sitecheck.check_page(browser, url, Page(name, f"{name}.html"))


@pytest.mark.browser
def test_a_clean_page_has_no_problem(synthetic_site, browser):
    assert check(browser, synthetic_site, "clean") == []


@pytest.mark.browser
def test_an_uncaptioned_figure_and_a_file_name_for_alt_text_are_reported(synthetic_site, browser):
    assert check(browser, synthetic_site, "uncaptioned") == [
        "figure good.png has no numbered caption",
        "figure good.png has no real alt text ('good.png')",
    ]


@pytest.mark.browser
def test_a_page_wider_than_a_phone_and_a_faint_icon_are_reported(synthetic_site, browser):
    assert sitecheck.sideways_overflow(browser, synthetic_site + "clean.html") == []
    [wide] = sitecheck.sideways_overflow(browser, synthetic_site + "wide-table.html")
    assert "on a 390 px screen" in wide
    sitecheck.load(browser, synthetic_site + "faint-icons.html")
    [faint] = sitecheck.faint_header_icons(browser)
    assert faint.startswith("header icon rocket has contrast 1.")


@pytest.mark.browser
def test_figure_text_too_small_on_a_phone_is_reported_and_the_book_stylesheet_fixes_it(synthetic_site, browser):
    [small] = sitecheck.small_figure_text(browser, synthetic_site + "wide-figure.html")
    assert small.startswith("figure wide.png: its 10 pt text is ") and "on a 390 px screen" in small, small
    styled = synthetic_site + "wide-figure-styled.html"
    assert sitecheck.small_figure_text(browser, styled) == []
    assert sitecheck.sideways_overflow(browser, styled) == []  # the figure scrolls in its own box


@pytest.mark.browser
def test_broken_images_and_missing_stylesheets_are_reported(synthetic_site, browser):
    problems = check(browser, synthetic_site, "broken")
    assert sorted(problems) == [
        f"HTTP 404 for {synthetic_site}missing.css",
        f"HTTP 404 for {synthetic_site}missing.png",
        f"broken image {synthetic_site}corrupt.png",
        f"broken image {synthetic_site}missing.png",
    ]


@pytest.mark.browser
def test_an_error_output_is_reported_with_its_text(synthetic_site, browser):
    [problem] = check(browser, synthetic_site, "error")
    assert problem.startswith("error output: ZeroDivisionError Traceback (most recent call last)")
    assert "ZeroDivisionError: division by zero" in problem


@pytest.mark.browser
def test_a_warning_on_stderr_is_reported(synthetic_site, browser):
    assert check(browser, synthetic_site, "stderr") == ["stderr output: /tmp/x.py:2: UserWarning: careful"]


@pytest.mark.browser
def test_a_code_cell_that_scrolls_sideways_is_reported(synthetic_site, browser):
    problems = check(browser, synthetic_site, "wide")
    assert len(problems) == 1 and "scrolls sideways" in problems[0] and "1 + 1" in problems[0], problems


@pytest.mark.browser
def test_a_formula_left_as_raw_tex_is_reported(synthetic_site, browser):
    assert check(browser, synthetic_site, "math") == [r"formula not typeset: \(f_\infty\)"]


@pytest.mark.browser
def test_a_page_missing_from_the_site_is_reported(synthetic_site, browser):
    [problem] = check(browser, synthetic_site, "absent")
    assert "absent.html: HTTP 404" in problem


@pytest.mark.browser
def test_sidebar_links_to_missing_pages_are_reported(synthetic_site, browser):
    pages = [Page("clean", "clean.html"), Page("error", "error.html")]
    problems = sitecheck.check_navigation(browser, synthetic_site, pages)
    assert problems == [
        f"sidebar link {synthetic_site}gone.html: HTTP 404",
        f"sidebar link {synthetic_site}moved.html: the page's title is '404 Page not found'",
        "the sidebar has no link to error.html (in _toc.yml)",
    ]


def test_toc_pages_walks_parts_chapters_and_sections(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: A\n    chapters:\n"
        "      - file: book/one.md\n        sections:\n          - file: book/one_a\n"
        "      - url: https://example.org\n        title: elsewhere\n"
    )
    assert sitecheck.toc_pages(toc) == [
        Page("intro", "book/intro.html"),
        Page("one", "book/one.html"),
        Page("one_a", "book/one_a.html"),
    ]
