"""The HTML report: inlined images, escaping, missing pictures, the table of contents, tables; and the page in a
real headless Chromium (every image loads, no console errors, a non-blank screenshot)."""
from __future__ import annotations

import base64
import logging
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from raylessons.report import Report, format_cell

DATA_URI = re.compile(r'src="data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)"')


class Tags(HTMLParser):
    """Every start tag of a page as (tag, attrs), and the text inside each tag name seen."""

    def __init__(self, page: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.text: dict[str, list[str]] = {}
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "br", "hr", "link", "input"):  # void elements have no end tag
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.stack:
            del self.stack[len(self.stack) - 1 - self.stack[::-1].index(tag):]

    def handle_data(self, data):
        if self.stack:
            self.text.setdefault(self.stack[-1], []).append(data)

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


def png(path: Path, size=(64, 48), color=(200, 40, 40), fmt="PNG") -> Path:
    """A small picture with a stripe, so its bytes are not trivially uniform."""
    im = Image.new("RGB", size, color)
    im.paste((20, 20, 160), (0, 0, size[0] // 3, size[1]))
    im.save(path, fmt)
    return path


# ----- unit tests (no browser)
def test_images_are_inlined_as_data_uris_of_the_files_bytes(tmp_path):
    a, b = png(tmp_path / "a.png"), png(tmp_path / "b.jpg", fmt="JPEG")
    report = Report("pics")
    report.section("Both").image(a, "a png").image(b, "a jpeg")
    page = report.write(tmp_path / "out" / "report.html").read_text()
    found = DATA_URI.findall(page)
    assert [m for m, _ in found] == ["image/png", "image/jpeg"]
    assert [base64.b64decode(d) for _, d in found] == [a.read_bytes(), b.read_bytes()]
    # nothing outside the page: every src is a data URI, every link an anchor in it, no scripts or stylesheets
    tags = Tags(page)
    assert all(a["src"].startswith("data:") for a in tags.all("img"))
    assert all(a["href"].startswith("#") for a in tags.all("a"))
    assert not tags.all("script") and not tags.all("link")


def test_images_are_read_when_the_report_is_written(tmp_path):
    path = tmp_path / "later.png"
    report = Report("t")
    report.section("s").image(path, "drawn after being added")
    png(path)
    assert base64.b64decode(DATA_URI.findall(report.render())[0][1]) == path.read_bytes()


def test_every_string_is_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    report = Report(f"title {evil}")
    section = report.section(f"section {evil}", intro=f"intro {evil}")
    section.image(png(tmp_path / "a.png"), f"caption {evil}")
    section.table([{f"col {evil}": f"cell {evil}"}], f"table {evil}")
    section.text(f"GET /x -> {evil} & done", f"text {evil}")
    section.note(f"note {evil}")
    section.image(tmp_path / f"nope{evil}.png", "missing")
    page = report.render()
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") == 14  # titles, caption: twice
    assert "&amp; done" in page
    tags = Tags(page)
    assert "".join(tags.text["pre"]) == f"GET /x -> {evil} & done"  # the text reads back exactly
    assert [a["alt"] for a in tags.all("img")] == [f"caption {evil}"]


def test_a_missing_image_leaves_a_note_and_the_rest_renders(tmp_path, caplog):
    good, gone = png(tmp_path / "good.png"), tmp_path / "plots" / "gone.png"
    report = Report("t")
    report.section("First").image(good, "before").image(gone, "the failed plot").image(good, "after")
    report.section("Second").table([{"a": 1}]).image(None, "no path at all")
    with caplog.at_level(logging.WARNING, logger="raylessons"):
        page = report.write(tmp_path / "report.html").read_text()
    assert f"missing: {gone}" in page and "missing: None" in page
    assert page.count("<img") == 2 and "the failed plot" in page and "after" in page
    assert '<section id="second">' in page and "<td class=num>1</td>" in page
    assert str(gone) in caplog.text


def test_the_contents_link_every_section_by_a_unique_id(tmp_path):
    report = Report("t")
    titles = ["Planet", "Planet sweep (Ray Tune, ASHA)", "Planet", "Ray Serve: one application, four routes",
              "Résumé / ???", "!!!"]
    for title in titles:
        report.section(title).note("x")
    tags = Tags(report.render())
    ids = [a["id"] for a in tags.all("section")]
    links = [a["href"] for a in tags.all("a")]
    assert links == [f"#{i}" for i in ids] and len(set(ids)) == len(titles)
    assert ids[:4] == ["planet", "planet-sweep-ray-tune-asha", "planet-2", "ray-serve-one-application-four-routes"]
    assert all(re.fullmatch(r"[a-z0-9-]+", i) for i in ids)
    assert tags.text["a"] == titles and tags.text["h2"] == titles


def test_tables_keep_row_and_column_order_and_format_numbers():
    rows = [{"workflow": "planet", "metric": 0.123456789, "n": 12345678},
            {"workflow": "camvid", "metric": 12345.678, "seconds": 3.0, "ok": True},
            {"workflow": "head pose", "metric": float("nan"), "n": None}]
    report = Report("t")
    report.section("s").table(rows, "summary")
    tags = Tags(report.render())
    assert tags.text["th"] == ["workflow", "metric", "n", "seconds", "ok"]
    assert tags.text["caption"] == ["summary"]
    page = report.render()
    body = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1])
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in body]
    assert cells == [["planet", "0.1235", "12345678", "", ""],
                     ["camvid", "1.235e+04", "", "3", "True"],
                     ["head pose", "nan", "", "", ""]]


def test_dataframes_render_their_columns_in_order_without_the_index():
    pd = pytest.importorskip("pandas")
    import numpy as np

    df = pd.DataFrame({"text": ["xxbos a <b>", "xxbos c"], "target": ["pos", "neg"],
                       "p": np.array([0.98766, 1 / 3], dtype=np.float32)}, index=[10, 20])
    report = Report("t")
    report.section("s").table(df)
    tags = Tags(report.render())
    assert tags.text["th"] == ["text", "target", "p"]
    assert tags.text["td"] == ["xxbos a <b>", "pos", "0.9877", "xxbos c", "neg", "0.3333"]


def test_format_cell():
    import numpy as np

    assert [format_cell(v) for v in (0.5, 1e-7, 123456.0, np.float32(2 / 3), np.int64(7), 3, False, None, "s")] == \
        ["0.5", "1e-07", "1.235e+05", "0.6667", "7", "3", "False", "", "s"]


# ----- the page in a real headless browser (conftest's `chromium_page`)
def test_the_report_renders_in_headless_chromium(tmp_path, chromium_page):
    import numpy as np

    from raylessons.recorder import _pyplot, _save

    plt = _pyplot()
    images = []
    for i, kind in enumerate(("losses", "lr_find")):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        x = np.linspace(0, 4, 100)
        ax.plot(x, np.exp(-x * (i + 1)) + 0.05 * np.sin(8 * x), label="train")
        ax.set(title=kind, xlabel="iterations", ylabel="loss")
        ax.legend()
        images.append(_save(fig, tmp_path / f"{kind}.png"))
    images.append(png(tmp_path / "wide.png", size=(2400, 300)))  # wider than the page: must be scaled down
    images.append(png(tmp_path / "photo.jpg", size=(320, 240), color=(40, 160, 60), fmt="JPEG"))

    report = Report("raylessons demo: <the browser test>")
    first = report.section("Planet: multi-label tagging", intro="generated chips")
    first.note("Validation F2 (fbeta, threshold 0.2): 0.9123.")
    first.image(images[0], "loss curves").image(images[1], "learn.lr_find()")
    first.image(tmp_path / "never-drawn.png", "a plot that failed")
    second = report.section("CamVid & head pose")
    second.image(images[2], "a wide picture").image(images[3], "a JPEG")
    second.table([{"text": "xxbos a <great> film " * 8, "target": "pos", "p": 0.98765}], "show_batch()")
    serve = report.section("Ray Serve")
    serve.text('POST http://127.0.0.1:8199/sentiment\n{"label": "pos", "probability": 0.97}', "the HTTP answers")
    report.section("Summary").table([{"workflow": w, "metric": m} for w, m in (("planet", 0.91), ("camvid", 0.8))])
    page_file = report.write(tmp_path / "report.html")
    shot = tmp_path / "report-screenshot.png"

    page, errors, requests = chromium_page(page_file)
    loaded = page.evaluate("""() => Array.from(document.images, i => ({
        complete: i.complete, width: i.naturalWidth, right: i.getBoundingClientRect().right}))""")
    layout = page.evaluate("""() => ({
        main: document.querySelector('main').getBoundingClientRect().toJSON(),
        links: Array.from(document.querySelectorAll('nav a'),
                          a => !!document.getElementById(a.getAttribute('href').slice(1))),
        missing: Array.from(document.querySelectorAll('.missing'), e => e.textContent)})""")
    page.screenshot(path=str(shot), full_page=True)

    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # nothing fetched from outside
    assert len(loaded) == len(images) and all(i["complete"] and i["width"] > 0 for i in loaded), loaded
    assert [i["width"] for i in loaded] == [Image.open(f).width for f in images]
    assert layout["main"]["width"] <= 1100 and all(i["right"] <= layout["main"]["right"] + 1 for i in loaded)
    assert layout["links"] == [True] * 4
    assert layout["missing"] == [f"missing: {tmp_path / 'never-drawn.png'}"]

    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(shot) as im:
        im.verify()
    with Image.open(shot) as im:
        assert im.width == 1280 and 1500 < im.height < 20_000, im.size
        grey = im.convert("L")
        lo, hi = grey.getextrema()
        dark = sum(grey.histogram()[:200]) / (im.width * im.height)
    assert hi - lo > 150 and dark > 0.02, (lo, hi, dark)  # text and pictures on the page, not a blank sheet
    assert shot.stat().st_size > 20_000
