"""The HTML of a run report: one self-contained page (inline CSS, images as base64 data URIs,
no script, no network), every string from the run escaped."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from nanovla.report.gather import DatasetSummary, RunSummary
from nanovla.report.rollouts import Rollout

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: right; }
th { background: #eef; } td.name, th.name { text-align: left; }
pre { background: #f6f6f6; padding: 0.7em; overflow-x: auto; white-space: pre-wrap; }
.missing { background: #fff4d6; border: 1px solid #e0b84c; padding: 0.5em 1em; }
.rollouts td { vertical-align: top; text-align: left; }
figure { display: inline-block; margin: 0.3em; width: 270px; }
figcaption { font-size: 0.85em; }
.success { color: #060; font-weight: bold; } .failure { color: #b00; font-weight: bold; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def rate_cell(rate: float, interval: list[float] | None) -> str:
    """`0.88 [0.76, 0.94]`: a success rate and its 95% Wilson interval."""
    if not interval or len(interval) != 2:
        return f"{rate:.2f}"
    return f"{rate:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def section_missing(summary: RunSummary) -> str:
    if not summary.missing:
        return ""
    items = "".join(f"<li>{esc(line)}</li>" for line in summary.missing)
    return (
        f'<div class="missing" id="missing"><b>Not in this run directory:</b><ul>{items}</ul></div>'
    )


def section_command(summary: RunSummary) -> str:
    parts = ["<h2>Command</h2>"]
    if summary.command_line:
        parts.append(f'<pre id="command">{esc(summary.command_line)}</pre>')
    if summary.command is not None:
        config = json.dumps(summary.command, indent=2, ensure_ascii=False)
        parts.append(
            "<details><summary>resolved configuration (train_command.json)</summary>"
            f'<pre id="config">{esc(config)}</pre></details>'
        )
    if len(parts) == 1:
        parts.append("<p>not recorded</p>")
    return "".join(parts)


def section_dataset(dataset: DatasetSummary | None) -> str:
    if dataset is None:
        return "<h2>Dataset</h2><p>not available</p>"
    rows = [
        ("path", dataset.path),
        ("episodes", f"{dataset.episodes:,}"),
        (
            "frames",
            f"{dataset.frames:,} ({dataset.frames / max(dataset.episodes, 1):.1f} per episode, {dataset.fps:g} fps)",
        ),  # fmt: skip
        ("distinct instructions (tasks)", f"{dataset.tasks:,}"),
        ("task families", ", ".join(dataset.families) or "not recorded"),
        ("instruction templates", dataset.instructions or "not recorded"),
    ]
    rows += [(f"episodes in {lang}", f"{n:,}") for lang, n in dataset.episodes_per_language.items()]
    table = "".join(f'<tr><td class="name">{esc(k)}</td><td class="name">{esc(v)}</td></tr>' for k, v in rows)  # fmt: skip
    examples = "".join(
        f"<h3>{esc(language)} instructions</h3><ul>"
        + "".join(f'<li lang="{"ko" if language == "Korean" else "en"}">{esc(t)}</li>' for t in texts)
        + "</ul>"
        for language, texts in dataset.examples.items()
    )  # fmt: skip
    return f'<h2>Dataset</h2><table id="dataset">{table}</table>{examples}'


def section_curves(summary: RunSummary, png: bytes | None) -> str:
    if png is None:
        return "<h2>Training curves</h2><p>no logged steps</p>"
    last = summary.metrics[-1]["step"] if summary.metrics else 0
    return (
        f"<h2>Training curves</h2><p>{len(summary.metrics)} logged rows up to step {last}, "
        f"from logs/metrics.jsonl</p>"
        f'<img id="curves" alt="training curves" src="{data_uri(png, "image/png")}">'
    )


def success_table(result: dict[str, Any]) -> str:
    """The success table: a row per split, a column per family, the mean with its interval."""
    families = [str(f) for f in result.get("families", [])]
    head = "".join(f"<th>{esc(f)}</th>" for f in families)
    rows = []
    for split, s in result.get("splits", {}).items():
        cells = "".join(
            f"<td>{rate_cell(s['per_task'][f], s.get('per_task_ci95', {}).get(f))}</td>"
            if f in s.get("per_task", {})
            else "<td>-</td>"
            for f in families
        )
        mean = rate_cell(s["success"], s.get("ci95"))
        count = f"{s.get('successes', '?')}/{s.get('episodes', '?')}"
        templates = esc(s.get("templates", ""))
        rows.append(
            f'<tr><td class="name">{esc(split)}</td><td class="name">{templates}</td>{cells}'
            f"<td><b>{mean}</b></td><td>{count}</td></tr>"
        )
    return (
        '<table id="success-table"><tr><th class="name">split</th><th class="name">templates'
        f"</th>{head}<th>mean [95% Wilson CI]</th><th>successes / episodes</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def task_table(result: dict[str, Any]) -> str:
    """Meta-World's eval.json (`nanovla metaworld`): a row per task, then the mean."""
    details = result.get("tasks") if isinstance(result.get("tasks"), dict) else {}
    rows = []
    for task, rate in result["per_task"].items():
        detail = details.get(task, {})
        count = f"{detail.get('successes', '?')}/{detail.get('episodes', '?')}"
        rows.append(
            f'<tr><td class="name">{esc(task)}</td><td class="name">'
            f"{esc(detail.get('instruction', ''))}</td><td>{rate_cell(rate, detail.get('ci95'))}"
            f"</td><td>{count}</td></tr>"
        )
    mean = rate_cell(result.get("success", 0.0), result.get("ci95"))
    rows.append(
        f'<tr><td class="name"><b>mean</b></td><td></td><td><b>{mean}</b></td>'
        f"<td>{result.get('successes', '?')}/{result.get('episodes', '?')}</td></tr>"
    )
    return (
        '<table id="success-table"><tr><th class="name">task</th><th class="name">instruction'
        "</th><th>success [95% Wilson CI]</th><th>successes / episodes</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def section_eval(result: dict[str, Any] | None) -> str:
    if result is None:
        return "<h2>Evaluation</h2><p>no eval.json: not evaluated yet</p>"
    facts = (
        f"{esc(result.get('episodes_per_task', '?'))} episodes per family per split, fixed "
        f'seeded initial states, evaluation seed <b id="eval-seed">{esc(result.get("seed", "?"))}</b>'
        f", target combinations: {esc(result.get('targets', 'all'))}"
    )
    timing = result.get("timing_s")
    if isinstance(timing, dict):
        facts += "; wall time " + ", ".join(f"{esc(k)} {esc(v)} s" for k, v in timing.items())
    try:
        splits = isinstance(result.get("splits"), dict)
        table = task_table(result) if not splits and "per_task" in result else success_table(result)
    except (KeyError, TypeError, ValueError) as error:
        table = f"<p>eval.json has no readable success table ({esc(error)})</p>"
    return f"<h2>Evaluation</h2><p>{facts}</p>{table}"


def figure(rollout: Rollout) -> str:
    outcome = "success" if rollout.success else "failure"
    instruction = (
        f"&ldquo;{esc(rollout.instruction)}&rdquo;"
        if rollout.instruction
        else "(instruction in the strip under the frames)"
    )
    return (
        f'<figure><img alt="{esc(rollout.family)} episode {rollout.index}" '
        f'src="{data_uri(rollout.path.read_bytes(), "image/gif")}"><figcaption>'
        f'<span class="{outcome}">{outcome}</span>, episode {rollout.index}: {instruction}'
        "</figcaption></figure>"
    )


def section_rollouts(rollouts: list[Rollout]) -> str:
    if not rollouts:
        return "<h2>Rollouts</h2><p>no rollout GIFs in videos/</p>"
    rows = []
    for family in dict.fromkeys(r.family for r in rollouts):
        mine = [r for r in rollouts if r.family == family]
        columns = [
            "".join(figure(r) for r in mine if r.success == wanted) or "<i>none recorded</i>"
            for wanted in (True, False)
        ]
        rows.append(f'<tr><td class="name">{esc(family)}</td><td>{columns[0]}</td><td>{columns[1]}</td></tr>')  # fmt: skip
    return (
        "<h2>Rollouts</h2><p>The first episodes of each family with seen instructions, as the "
        "evaluation recorded them; the strip under the last frame says the outcome.</p>"
        '<table class="rollouts"><tr><th class="name">family</th><th class="name">successes</th>'
        '<th class="name">failures</th></tr>' + "".join(rows) + "</table>"
    )


def render(summary: RunSummary, curves_png: bytes | None, rollouts: list[Rollout]) -> str:
    """The whole page as a string."""
    title = f"nanovla run {Path(summary.run).name}"
    body = "".join(
        [
            f"<h1>{esc(title)}</h1><p>run directory <code>{esc(summary.run)}</code></p>",
            section_missing(summary),
            section_command(summary),
            section_dataset(summary.dataset),
            section_curves(summary, curves_png),
            section_eval(summary.eval),
            section_rollouts(rollouts),
        ]
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
