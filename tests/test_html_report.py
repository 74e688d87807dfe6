"""report.html: written by fit/evaluate, rebuilt by `istn-sk report RUN_DIR`, built from Python;
self-contained and escaped, and rendered by a real headless Chromium without errors."""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run

from istn_sk import ISTNAdapter, make_shifted_shapes
from istn_sk.report import write_html_report

TINY = ["--nf", "2", "--batch-size", "8", "--random-state", "0", "-q"]
SECTIONS = ["Settings", "Data", "Learning curves", "Explanation figures", "Protocol table",
            "Harmonisation measures", "Software versions"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


class _Page(HTMLParser):
    """Tags, attributes, ``<h2>`` texts, table rows and text of a page."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.headings: list[str] = []
        self.title = ""
        self._in: str | None = None
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(sorted(name for name, _ in attrs))))
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        if tag in ("h2", "title"):
            self._in = tag

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self.headings.append(data)
        elif self._in == "title":
            self.title += data


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shapes_manifest):
    """A tiny fit (with a task model, validated) and an evaluate run of its models."""
    folder = tmp_path_factory.mktemp("report-runs")
    shapes = shapes_manifest(tmp_path_factory.mktemp("shapes"), train_of_12=8)
    run("fit", "--train-set", shapes, "--train-where", "split=train", "--label-key", "label",
        "--source-site", "A", "--target-site", "B", "--model-type", "classifier",
        "--max-epochs", "2", "--test-set", shapes, "--test-where", "split=test", *TINY,
        "-o", folder / "fit")
    run("evaluate", "--task-model", folder / "fit" / "task.pt", "--test-set", shapes,
        "--test-where", "split=test", "--label-key", "label", "-q", "-o", folder / "evaluate")
    return folder


@pytest.fixture(scope="module")
def python_report(tmp_path_factory):
    """The one-call report of a fitted adapter, its data and a protocol table."""
    X, y, domain = make_shifted_shapes(24, (12, 12), shift=2.0, random_state=0)
    adapter = ISTNAdapter(nf=2, max_epochs=1, batch_size=8, random_state=0).fit(
        X, sample_domain=domain)
    table = pd.DataFrame({"model": ["T_S", "T_S2T"], "evaluated_on": ["T", "T"],
                          "accuracy": [0.5, 0.75]})
    return write_html_report(tmp_path_factory.mktemp("python") / "report.html", adapter=adapter,
                             source=(X[domain > 0], y[domain > 0]), target=X[domain < 0],
                             table=table)


def _page(path: Path) -> _Page:
    return _Page(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["fit", "evaluate"])
def test_fit_and_evaluate_write_a_self_contained_report(runs, name):
    markup = (runs / name / "report.html").read_text(encoding="utf-8")
    page = _Page(markup)
    assert page.title == f"istn-sk {name}: {name}"
    assert page.headings == SECTIONS
    links = [value for tag, attr, value in page.attributes if attr in ("src", "href")]
    assert links and all(value.startswith(("data:", "#")) for value in links)
    assert not any(tag in ("script", "iframe", "object") for tag, _ in page.tags)
    assert "http://" not in markup and "https://" not in markup
    summary = json.loads((runs / name / "report" / "summary.json").read_text())
    assert summary["command"] == name and summary["versions"]["istn-sk"]
    assert {row["domain"] for row in summary["data"]} == (
        {"source (A)", "target (B)"} if name == "fit" else {"test (A)", "test (B)"})


def test_fit_report_shows_curves_explanation_and_harmonisation(runs):
    markup = (runs / "fit" / "report.html").read_text(encoding="utf-8")
    images = [value for tag, attr, value in _Page(markup).attributes if tag == "img"
              and attr == "alt"]
    assert images == ["learning curves", "explanation"]
    for term in ("gan_loss", "task_loss", "valid_accuracy", "intensity distance to T",
                 "folding fraction", "0: 3, 1: 3, 2: 2"):
        assert term in markup, term
    measures = pd.read_csv(runs / "fit" / "harmonisation.csv")
    assert list(measures.columns) == ["measure", "S vs T", "S2T vs T", "n"]


def test_report_rebuilds_the_same_page_and_escapes_settings(runs, tmp_path):
    folder = tmp_path / "fit"
    shutil.copytree(runs / "fit", folder)
    before = _page(folder / "report.html")
    (folder / "report.html").unlink()
    result = run("report", folder)
    assert result.output.strip() == f"wrote {folder / 'report.html'}"
    assert _page(folder / "report.html").tags == before.tags
    config = json.loads((folder / "config.json").read_text())
    config["note"] = '<script>alert("x")</script>'
    (folder / "config.json").write_text(json.dumps(config))
    run("report", folder)
    markup = (folder / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in markup
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in markup


def test_report_refuses_what_is_not_a_run_folder(tmp_path):
    for folder, why in ((tmp_path / "missing", "does not exist"),
                        (tmp_path, "holds no config.json")):
        result = run("report", folder, ok=False)
        assert result.exit_code == 1
        assert result.output.strip().splitlines() == [
            f"Error: {folder} is not an istn-sk run folder ({why})"]
    assert not (tmp_path / "missing").exists() and not (tmp_path / "report.html").exists()


def test_one_python_call_reports_an_adapter_and_its_data(python_report):
    markup = python_report.read_text(encoding="utf-8")
    page = _Page(markup)
    assert page.headings == SECTIONS and page.title == "istn-sk report: ISTNAdapter"
    assert [v for t, a, v in page.attributes if t == "img" and a == "alt"] == [
        "learning curves", "explanation", "protocol bars"]
    for term in ("source (S)", "target (T)", "T_S2T", "intensity distance to T", "max_epochs"):
        assert term in markup, term


# ---------------------------------------------------------------- a real headless Chromium

def _chromium() -> str | None:
    for candidate in (os.environ.get("ISTN_SK_CHROMIUM"), "chromium", "chromium-browser",
                      "/usr/bin/chromium"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by playwright; skipped (or, with
    ISTN_SK_REQUIRE_BROWSER=1, failed) when either is missing."""
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
    executable = _chromium()
    if executable is None:
        missing.append("a chromium executable (apt-get install chromium)")
    if missing:
        reason = "the browser test needs " + " and ".join(missing)
        if os.environ.get("ISTN_SK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and ISTN_SK_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _render(browser, path: Path) -> dict:
    """Load ``path`` from file:// and return what the page shows and what went wrong."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    response = page.goto(path.resolve().as_uri(), wait_until="load")
    shown = page.evaluate("""() => ({
        title: document.title,
        headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
        images: [...document.images].map(i => [i.alt, i.complete, i.naturalWidth]),
        rows: [...document.querySelectorAll('#protocol table.data tbody tr')]
            .map(r => [...r.cells].map(c => c.textContent)),
        width: document.documentElement.scrollWidth})""")
    page.close()
    return {"ok": response is not None and response.ok, "problems": problems,
            "requests": requests, **shown}


@pytest.mark.parametrize("which", ["fit", "evaluate", "python"])
def test_the_report_renders_in_headless_chromium(browser, runs, python_report, which):
    path = python_report if which == "python" else runs / which / "report.html"
    shown = _render(browser, path)
    assert shown["ok"] and shown["problems"] == []
    assert shown["headings"] == SECTIONS and shown["title"].startswith("istn-sk ")
    assert all(url.startswith(("file://", "data:")) for url in shown["requests"])
    assert shown["images"] and all(complete and width > 0
                                   for _, complete, width in shown["images"]), shown["images"]
    if which == "evaluate":
        expected = pd.read_csv(runs / "evaluate" / "evaluation.csv")
        assert [row[:2] for row in shown["rows"]] == expected[["model", "evaluated_on"]].astype(
            str).values.tolist()
    if which == "python":
        assert [row[:3] for row in shown["rows"]] == [["T_S", "T", "0.5"], ["T_S2T", "T", "0.75"]]
    assert shown["width"] <= 1200   # nothing wider than the window: no horizontal scrolling


def test_python_report_ignores_nan_and_unlabelled(tmp_path):
    X = np.zeros((4, 1, 6, 6), dtype=np.float32)
    X[0, 0, 0, 0] = np.nan
    path = write_html_report(tmp_path / "r.html", source=(X, [0.5, np.nan, 2.0, 3.0]),
                             harmonisation={"my measure": 0.25})
    markup = path.read_text(encoding="utf-8")
    assert "3 labels" not in markup and "0.5: 1" in markup and "my measure" in markup
