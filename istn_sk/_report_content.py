"""What :mod:`istn_sk.report` shows: gathered from a run folder and/or an adapter and its data."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _report_html as html
from .report import (
    _CAPTIONS,
    HARMONISATION_NAME,
    PROTOCOL_TABLES,
    RUN_CONFIG,
    SUMMARY_NAME,
    _scalar_history,
    _split,
    data_summary,
    harmonisation_measures,
    software_versions,
)

#: History keys that are not curves (besides integer counts and flags).
NOT_CURVES = ("dur",)
#: Images of the explanation figure drawn from an adapter.
EXPLAINED = 8


@dataclass
class Content:
    """Everything a report page shows; ``None`` or empty where nothing is known."""

    title: str = "istn-sk report"
    subtitle: str = "an istn-sk report"
    settings: Mapping[str, Any] | None = None
    data: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    figures: list[tuple[str, bytes, str]] = field(default_factory=list)   # caption, PNG, alt
    curves_png: bytes | None = None
    tables: list[tuple[str, Any]] = field(default_factory=list)   # caption, DataFrame
    harmonisation: Any = None
    versions: dict[str, str] | None = None
    versions_note: str = ""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: could not read it ({error})") from error


def _from_run(content: Content, run_dir: Path) -> None:
    import pandas as pd

    if not (run_dir / RUN_CONFIG).is_file():
        raise FileNotFoundError(f"{run_dir} is not an istn-sk run folder (no {RUN_CONFIG} in it)")
    content.settings = _read_json(run_dir / RUN_CONFIG)
    summary = _read_json(run_dir / SUMMARY_NAME) if (run_dir / SUMMARY_NAME).is_file() else {}
    command = summary.get("command")
    content.title = f"istn-sk {command or 'run'}: {run_dir.resolve().name}"
    content.subtitle = (f"run folder {run_dir.resolve()}"
                        + (f" · istn-sk {command}" if command else "")
                        + (f" · written {summary['written']}" if summary.get("written") else ""))
    if summary.get("data"):
        content.data = pd.DataFrame(summary["data"])
    if summary.get("versions"):
        content.versions = dict(summary["versions"])
        content.versions_note = "Recorded when the run was made."
    if (run_dir / "history.json").is_file():
        content.history = list(_read_json(run_dir / "history.json"))
    for png in sorted((run_dir / "report").glob("*.png")):
        if png.stem.endswith("-curves"):
            if not content.history:
                content.curves_png = png.read_bytes()
            continue
        caption = _CAPTIONS.get(png.stem, f"report/{png.name}")
        content.figures.append((caption, png.read_bytes(), png.stem))
    for name, what in PROTOCOL_TABLES.items():
        if (run_dir / name).is_file():
            content.tables.append((f"{name}: {what}", pd.read_csv(run_dir / name)))
    if (run_dir / HARMONISATION_NAME).is_file():
        content.harmonisation = pd.read_csv(run_dir / HARMONISATION_NAME)


def _plain(value: Any) -> Any:
    """A parameter value as shown: plain data as it is, an object by its class name."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(
            item is None or isinstance(item, (str, bool, int, float)) for item in value):
        return list(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, type):
        return value.__name__
    return f"{type(value).__name__}(…)"


def _params(estimator) -> dict[str, Any]:
    return {key: _plain(value) for key, value in sorted(estimator.get_params(deep=False).items())
            if not key.startswith("_")}


def collect(*, adapter=None, source=None, target=None, run_dir: str | os.PathLike | None = None,
            table=None, harmonisation=None, settings: Mapping[str, Any] | None = None) -> Content:
    """Gather the page's content; a run folder's files first, then the objects given."""
    import pandas as pd

    content = Content()
    if run_dir is not None:
        _from_run(content, Path(run_dir))
    elif adapter is not None:
        content.title = f"istn-sk report: {type(adapter).__name__}"
        content.subtitle = f"a fitted {type(adapter).__name__} and its data, from Python"
    if settings is not None:
        content.settings = dict(settings)
    elif content.settings is None and adapter is not None:
        content.settings = _params(adapter)
        task = getattr(adapter, "task_", None)
        if task is not None:
            content.settings.update({f"task__{k}": v for k, v in _params(task).items()})
    if content.data is None and (source is not None or target is not None):
        content.data = data_summary({name: data for name, data in
                                     (("source (S)", source), ("target (T)", target))
                                     if data is not None})
    if not content.history and content.curves_png is None and adapter is not None:
        content.history = _scalar_history(getattr(adapter, "history_", None) or [])
    if adapter is not None and source is not None and not content.figures:
        from .figures import explanation_grid

        parts = adapter.explain(_split(source)[0][:EXPLAINED])
        shown = None if target is None else _split(target)[0][:EXPLAINED]
        content.figures.append((_CAPTIONS["explanation"],
                                html.figure_png(explanation_grid(parts, shown)), "explanation"))
    if table is not None:
        content.tables.append(("the protocol table", pd.DataFrame(table)))
    if isinstance(harmonisation, Mapping):
        harmonisation = pd.DataFrame({"measure": list(harmonisation),
                                      "value": list(harmonisation.values())})
    complete = all(part is not None for part in (adapter, source, target))
    if harmonisation is True and not complete:
        raise ValueError("harmonisation=True computes the measures from adapter, source and "
                         "target: give all three")
    if (harmonisation is True or (harmonisation is None and content.harmonisation is None
            and complete)):
        harmonisation = harmonisation_measures(adapter, source, target)
    if harmonisation is not None and not isinstance(harmonisation, bool):
        content.harmonisation = pd.DataFrame(harmonisation)
    if content.versions is None:
        content.versions = software_versions()
        content.versions_note = "Of the Python that built this page."
    return content


def _curve_keys(rows: list[dict[str, Any]]) -> list[str]:
    return [key for key in dict.fromkeys(k for row in rows for k in row)
            if key not in NOT_CURVES and all(isinstance(row.get(key, 0.0), float) for row in rows)]


def _curves_section(content: Content) -> str:
    import pandas as pd

    from .figures import learning_curves

    if content.curves_png is not None:
        return html.image(content.curves_png, "Learning curves (report/history-curves.png).",
                          alt="learning curves")
    if not content.history:
        return html.note("No training history in this run (evaluate and protocol runs train "
                         "nothing they keep).")
    keys = _curve_keys(content.history)
    body = ""
    try:
        figure = learning_curves(content.history, keys)
        body += html.image(html.figure_png(figure),
                           "Every loss term per epoch (top) and the validation scores (below, "
                           "when validated).", alt="learning curves")
    except ValueError as error:
        body += html.note(f"No curve to draw: {error}.")
    columns = ["epoch", *[key for key in keys if key != "epoch"]]
    frame = pd.DataFrame(content.history)
    frame = frame[[column for column in columns if column in frame]]
    return body + html.collapsible(f"Per-epoch values ({len(frame)} epochs)",
                                   html.frame_table(frame))


def _tables_section(content: Content) -> str:
    from .figures import protocol_bars

    if not content.tables:
        return html.note("No protocol table in this run: `istn-sk evaluate` and "
                         "`istn-sk protocol` write one.")
    body = ""
    for caption, frame in content.tables:
        body += f"<h3>{html.text(caption)}</h3>" + html.frame_table(frame)
        try:
            bars = html.figure_png(protocol_bars(frame))
        except (ValueError, KeyError, TypeError):
            continue
        body += html.image(bars, f"The scores of {caption.split(':')[0]} per model and "
                                 "evaluated set.", alt="protocol bars")
    return body


def render(content: Content, *, title: str | None = None) -> str:
    """The page of ``content``."""
    sections = [html.Section("settings", "Settings", html.mapping_tables(content.settings)
                             if content.settings else html.note("No settings recorded."))]
    data = (html.frame_table(content.data) if content.data is not None and len(content.data)
            else html.note("No data summary recorded in this run."))
    sections.append(html.Section("data", "Data", data))
    sections.append(html.Section("curves", "Learning curves", _curves_section(content)))
    figures = "".join(html.image(png, caption, alt=alt) for caption, png, alt in content.figures)
    sections.append(html.Section("figures", "Explanation figures",
                                 figures or html.note("No explanation figure in this run.")))
    sections.append(html.Section("protocol", "Protocol table", _tables_section(content)))
    harmonised = (html.note("S vs T: the unmodified source images against the target images; "
                            "S2T vs T: after the adapter.")
                  + html.frame_table(content.harmonisation)
                  if content.harmonisation is not None
                  else html.note("No harmonisation measures computed for this run."))
    sections.append(html.Section("harmonisation", "Harmonisation measures", harmonised))
    versions = html.note(content.versions_note) + html.mapping_table(
        content.versions or {}, css="settings", headers=("software", "version"))
    sections.append(html.Section("versions", "Software versions", versions))
    from ._version import __version__

    return html.page(title or content.title, content.subtitle, sections,
                     f"Written by istn-sk {__version__}; self-contained (no external files).")
