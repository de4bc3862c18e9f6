"""Render the board as one self-contained HTML file.

No external scripts, fonts or requests: inline CSS, inline SVG sparklines and a few lines of
inline JS (a filter; both in harness.history.page_assets). Every value from results and logs
goes through ``html()``, which escapes.
"""

from __future__ import annotations

import os
import posixpath
from datetime import datetime, timezone
from pathlib import Path

from harness.history import bisectline
from harness.history.bisects import BisectRecord
from harness.history.board import Board, CaseLine, PlatformBoard
from harness.history.html import Markup, html, href, join
from harness.history.nodeboard import node_section
from harness.history.page_assets import NOT_RUN, SCRIPT, STATUS_CLASS, STYLE
from harness.history.queries import Night, Row
from harness.history.rows import NOT_DECISIVE_MARK, verdict
from harness.history.storeread import Detail

SYMBOL = {"passed": "", "xfailed": "x", "failed": "\u2715", "error": "E", "xpassed": "!",
          "skipped": "-"}
PLAIN_CELL = {status: Markup(f"<td class={code}></td>") for status, code in STATUS_CLASS.items()}
NOT_RUN_CELL = Markup(f"<td class={NOT_RUN}></td>")


def rich_cell(line: CaseLine, row: Row) -> bool:
    """A cell written out in full (tooltip, log link, mark): bad, first bad, or output changed.
    Every other cell is its status class alone; the script describes it when pointed at."""
    return (verdict(row.status) == "bad" or row.night in line.drift_nights
            or row.failure_class == NOT_DECISIVE_MARK
            or (line.first_bad is not None and line.first_bad.first_bad.result_id
                == row.result_id) or row.status not in STATUS_CLASS)


class Links:
    """Relative links from the page to files beside the results (logs, annotations)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir.resolve()
        self._dirs: dict[tuple[str, str], str | None] = {}

    def dir(self, night: Night, platform: str) -> str | None:
        """The platform's result directory of a night, relative to the page (cached)."""
        key = (night.run_id, platform)
        if key not in self._dirs:
            run = night.platform_run(platform)
            self._dirs[key] = (os.path.relpath(Path(run.run_dir) / platform, self.out_dir)
                               if run else None)
        return self._dirs[key]

    def worker_log(self, night: Night, platform: str) -> str | None:
        where = self.dir(night, platform)
        return href(f"{where}/worker.log") if where else None

    def annotation(self, night: Night, platform: str) -> str | None:
        run = night.platform_run(platform)
        if run is None or not run.annotation:
            return None
        return href(os.path.relpath(Path(run.run_dir) / run.annotation, self.out_dir))

    def log(self, night: Night, platform: str, detail: Detail | None) -> str | None:
        where = self.dir(night, platform)
        if where is None:
            return None
        name = detail.log_path if detail is not None and detail.log_path else "worker.log"
        return href(posixpath.normpath(f"{where}/{name}"))


def _night_label(night: Night) -> str:
    return f"#{night.build_number}" if night.build_number is not None else night.run_id[-8:]


def _short(commit: str | None) -> str:
    return commit[:10] if commit else "?"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def sparkline(values: list[float | None], width: int = 90, height: int = 18) -> Markup:
    """Inline SVG of timings across the shown nights; gaps where a night has no timing."""
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return Markup("")
    top = max(present) or 1.0
    step = width / max(len(values) - 1, 1)
    segments, current = [], []
    for i, value in enumerate(values):
        if value is None:
            if current:
                segments.append(current)
            current = []
            continue
        current.append(f"{i * step:.1f},{height - 1 - (value / top) * (height - 2):.1f}")
    if current:
        segments.append(current)
    lines = join(html('<polyline points="{}" fill="none" stroke="#57606a" stroke-width="1"/>',
                      " ".join(points)) for points in segments)
    return html('<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
                'xmlns="http://www.w3.org/2000/svg" role="img"><title>{t}</title>{lines}</svg>',
                w=width, h=height, lines=lines,
                t=f"total time, last {len(values)} nights: max {top:.1f}s, "
                  f"latest {_seconds(values[-1])}")


class Renderer:
    def __init__(self, board: Board, details: dict[int, Detail], out_path: Path,
                 drift_requests: dict[tuple[int, int], list[str]] | None = None,
                 generated_at: str | None = None, quarantine: list | None = None,
                 signatures: Markup | None = None,
                 bisects: dict[tuple[str, str], list[BisectRecord]] | None = None):
        self.board, self.details = board, details
        self.quarantine = quarantine or []  # harness.spec.quarantine entries
        self.signatures = signatures or Markup("")  # the triage table (harness.signatures)
        self.bisects = bisects or {}  # (case, platform) -> records, in planned order
        self.drift_requests = drift_requests or {}  # (before, after) result ids -> request ids
        self.links = Links(out_path.parent)
        self.generated_at = generated_at or datetime.now(timezone.utc).isoformat(
            timespec="seconds")
        self.node_lines: list = []  # vllm_tests nodes not passing (history.nodes)
        self.night_by_index = {night.index: night for night in board.nights}
        self.anchor: dict[tuple[str, str], str] = {}  # first-bad cell ids, by (case, platform)
        self.first_shown = board.shown[0].index if board.shown else len(board.nights)

    # --- pieces --------------------------------------------------------------------------
    def cell(self, line: CaseLine, row: Row | None, anchor: str | None) -> Markup:
        if row is None:
            return NOT_RUN_CELL
        if not anchor and not rich_cell(line, row):
            return PLAIN_CELL[row.status]
        night = self.night_by_index[row.night]
        detail = self.details.get(row.result_id)
        classes = [STATUS_CLASS.get(row.status, NOT_RUN)]
        mark = SYMBOL.get(row.status, "?")
        if row.failure_class == NOT_DECISIVE_MARK:
            classes.append("nd")  # a pass whose decisive checks did not apply: not plain green
            mark = "n/a"
        if anchor:
            classes.append("fb")
            mark = "!"
        if row.night in line.drift_nights:
            classes.append("dr")
            mark = mark or "\u25c6"
        title = (f"{line.case_id} on {line.platform}, {night.run_id} ({_night_label(night)}, "
                 f"commit {_short(row.commit)}): {row.status}"
                 + (f" [{row.failure_class}]" if row.failure_class else "")
                 + f", {_seconds(row.total_s)}"
                 + (f"\n{detail.message}" if detail and detail.message else "")
                 + ("\nfirst bad run after the last good one" if anchor else "")
                 + ("\noutput changed since the previous passing night"
                    if row.night in line.drift_nights else ""))
        link = self.links.log(night, line.platform, detail)
        return html('<td class="{}"{} title="{}"><a href="{}">{}</a></td>', " ".join(classes),
                    html(' id="{}"', anchor) if anchor else Markup(""), title, link or "#", mark)

    def first_bad_text(self, line: CaseLine, full: bool = True) -> Markup:
        """"since #N" linking to the first bad run; the builds and commits between, in full."""
        fb = line.first_bad
        if fb is None:
            return Markup("")
        good_build, bad_build = fb.build_range
        good_commit, bad_commit = fb.commit_range
        since = (f"since #{bad_build}" if bad_build is not None
                 else f"since {self.night_by_index[fb.first_bad.night].run_id}")
        between = (f"last good #{good_build}, commits {_short(good_commit)}..{_short(bad_commit)}"
                   if fb.last_good else "never passed in the stored history")
        text = f"{since}; {between}" if full else since
        anchor = self.anchor.get((line.case_id, line.platform))
        if anchor:
            link = f"#{anchor}"
        else:  # first bad before the shown nights: its log
            night = self.night_by_index[fb.first_bad.night]
            link = self.links.log(night, line.platform,
                                  self.details.get(fb.first_bad.result_id)) or "#"
        return html('<a class="flag new" href="{}" title="first bad run; {}">{}</a>', link,
                    between, text)

    def bisect_hint(self, line: CaseLine) -> Markup:
        """The `harness bisect` command for a newly broken case whose last good and first bad
        runs name registry images (harness.bisect_command); nothing when they do not."""
        from harness.bisect_command import range_images, suggest

        fb = line.first_bad
        if not line.newly_broken or fb is None or fb.last_good is None:
            return Markup("")
        good, bad = (self.details.get(row.result_id) for row in (fb.last_good, fb.first_bad))
        images = range_images({"image_digest": good.image_digest if good else None},
                              {"image_digest": bad.image_digest if bad else None})
        command = suggest(line.case_id, line.platform, *images) if images else None
        if command is None:
            return Markup("")
        return html('<div class="bisect">find the first bad image: <code>{}</code></div>',
                    command)

    def autobisect(self, line: CaseLine) -> BisectRecord | None:
        """The auto-bisect record of this break (harness.history.bisectline.pick)."""
        records = self.bisects.get((line.case_id, line.platform))
        if not records or not line.broken_now or line.first_bad is None:
            return None
        index = {night.run_id: night.index for night in self.board.nights}
        return bisectline.pick(records, line.first_bad.first_bad.night, index)

    def line(self, p_index: int, l_index: int, line: CaseLine) -> Markup:
        anchor = None
        fb = line.first_bad
        if fb is not None and any(c is not None and c.result_id == fb.first_bad.result_id
                                  for c in line.cells):
            anchor = f"fb-{p_index}-{l_index}"
            self.anchor[(line.case_id, line.platform)] = anchor
        flags = []
        if line.flaky.flaky:
            rate = line.flaky.fail_rate
            flags.append(html('<span class="flag flaky" title="fail rate {r} over {n} runs">'
                              'flaky</span>', r="-" if rate is None else f"{rate:.0%}",
                              n=line.flaky.runs))
        if line.newly_broken:
            flags.append(Markup('<span class="flag new">new</span>'))
        flags.append(self.quarantine_flag(line))
        if line.broken_now:
            flags.append(self.first_bad_text(line, full=False))
            flags.append(bisectline.flag(self.autobisect(line)))
        if line.drift_nights:
            flags.append(Markup('<span class="flag drift">output changed</span>'))
        classes = "line problem" if line.problem else "line"
        first_bad_id = fb.first_bad.result_id if fb is not None else None
        cells = Markup("".join(self.cell(line, row, anchor if row is not None
                                         and row.result_id == first_bad_id else None)
                               for row in line.cells))
        times = " ".join("-" if c is None or c.total_s is None else f"{c.total_s:.1f}"
                         for c in line.cells)
        return html('<tr class="{cls}" data-case="{case}" data-t="{times}"><th class="case">'
                    '{case}{flags}</th><td class=t></td>{cells}</tr>\n', cls=classes,
                    case=line.case_id, times=times, flags=join(flags), cells=cells)

    def quarantine_flag(self, line: CaseLine) -> Markup:
        """A quarantined case (harness.spec.quarantine) says so, with its link and date."""
        from harness.spec.quarantine import find, today

        entry = find(self.quarantine, line.case_id, line.platform)
        if entry is None:
            return Markup("")
        state = "quarantined" if entry.holds_on(today()) else "quarantine expired"
        return html('<a class="flag quarantined" href="{link}" title="{title}">{state} '
                    '{until}</a>', link=href(entry.link), state=state, until=entry.until.isoformat(),
                    title=entry.reason or entry.link)

    def grid(self, p_index: int, platform: PlatformBoard) -> Markup:
        heads = []
        for night in self.board.shown:
            label = _night_label(night)
            title = (f"{night.run_id}, started {night.started_at or '?'}, "
                     f"commit {_short(night.commit)}")
            log = self.links.worker_log(night, platform.name)
            note = self.links.annotation(night, platform.name)
            build = (html('<a href="{}" title="the build; its annotations are on its page">{}</a>',
                          href(night.build_url), label)
                     if night.build_url else html("{}", label))
            extras = join([html('<br><a href="{}">log</a>', log) if log else Markup(""),
                           html('<br><a href="{}">notes</a>', note) if note else Markup("")])
            where = self.links.dir(night, platform.name)
            heads.append(html('<th class="night" title="{}" data-run="{}" data-label="{}" '
                              'data-commit="{}" data-dir="{}">{}{}</th>', title, night.run_id,
                              label, _short(night.commit), href(where) if where else "",
                              build, extras))
        body = join(self.line(p_index, i, line) for i, line in enumerate(platform.lines))
        return html('<h2 id="platform-{i}">{name}{acc}</h2>\n<table class="grid" id="grid-{i}" '
                    'data-platform="{name}"><thead><tr><th class="case">case</th>'
                    '<th>time</th>{heads}</tr></thead>\n<tbody>\n{body}</tbody></table>\n',
                    i=p_index, name=platform.name,
                    acc=f" ({platform.accelerator})" if platform.accelerator else "",
                    heads=join(heads), body=body)

    def durations(self) -> Markup:
        """The queue's view: per platform, median and p90 job duration per shown night."""
        parts = []
        for platform in self.board.platforms:
            if not any(m is not None for m, _ in platform.durations):
                continue
            heads = join(html("<th>{}</th>", _night_label(n)) for n in self.board.shown)
            rows = []
            for name, pick in (("median", 0), ("p90", 1)):
                values = [d[pick] for d in platform.durations]
                cells = join(html("<td>{}</td>", _seconds(v)) for v in values)
                rows.append(html("<tr><th>{}</th>{}<td>{}</td></tr>", name, cells,
                                 sparkline(values)))
            parts.append(html('<h3>{p}</h3><table class="durations" id="durations-{p}"><thead>'
                              '<tr><th>job duration</th>{h}<th></th></tr></thead><tbody>{r}'
                              '</tbody></table>\n', p=platform.name, h=heads, r=join(rows)))
        if not parts:
            return Markup("")
        return html('<section id="durations"><h2>Job duration per night</h2>{}</section>\n',
                    join(parts))

    def last_night(self, platform: PlatformBoard) -> Markup:
        if platform.latest_night is None:
            return Markup("")
        night = self.night_by_index[platform.latest_night]
        counts = join((html("{} {}", n, status) for status, n in sorted(platform.counts().items())),
                      " \u00b7 ")
        items = []
        broken = sorted((l for l in platform.lines if l.broken_now),
                        key=lambda l: (not l.newly_broken, l.case_id))
        for line in broken:
            detail = self.details.get(line.last.result_id)
            log = self.links.log(night, platform.name, detail)
            tail = (html("<details><summary>log tail</summary><pre>{}</pre></details>",
                         detail.log_tail) if detail and detail.log_tail else Markup(""))
            items.append(html(
                '<li class="broken"><b>{case}</b> {status}{fclass} {fb} '
                '<span class="msg">{msg}</span> {log}{tail}{bisect}</li>',
                case=line.case_id, status=line.last.status,
                fclass=f" [{line.last.failure_class}]" if line.last.failure_class else "",
                fb=join([Markup('<span class="flag new">new</span> ') if line.newly_broken
                         else Markup(""), self.first_bad_text(line)]),
                msg=detail.message if detail else "",
                log=html('<a href="{}">log</a>', log) if log else Markup(""), tail=tail,
                bisect=join([bisectline.line(self.autobisect(line)), self.bisect_hint(line)])))
        for line in (l for l in platform.lines if l.flaky.flaky):
            rate = line.flaky.fail_rate
            items.append(html('<li><b>{}</b> <span class="flag flaky">flaky</span> fail rate {} '
                              'over the last {} runs</li>', line.case_id,
                              "-" if rate is None else f"{rate:.0%}", line.flaky.runs))
        for line in platform.lines:
            for drift in reversed(line.drifts):
                if drift.after.night < self.first_shown:
                    break
                changed = self.drift_requests.get((drift.before.result_id,
                                                   drift.after.result_id), [])
                items.append(html(
                    '<li><b>{}</b> <span class="flag drift">output changed</span> at {}, since {} '
                    '(commits {}..{}){}</li>', line.case_id,
                    _night_label(self.night_by_index[drift.after.night]),
                    _night_label(self.night_by_index[drift.before.night]),
                    _short(drift.before.commit), _short(drift.after.commit),
                    f"; requests: {', '.join(changed)}" if changed else ""))
        listing = (html('<ul class="items">{}</ul>', join(items)) if items
                   else Markup("<p>nothing broken, flaky or changed</p>"))
        return html('<h3>{name}: {run} ({label}, started {started})</h3><p>{counts}</p>{listing}\n',
                    name=platform.name, run=night.run_id, label=_night_label(night),
                    started=night.started_at or "?", counts=counts, listing=listing)

    def parity(self) -> Markup:
        """Per pair of platforms, one row per measure and one column per night (as the grid)."""
        if not self.board.parity:
            return Markup("")
        parts = []
        for pair in self.board.parity:
            a, b = pair.platform_a, pair.platform_b
            measures = [
                ("both good", lambda np: (np.both_good, [])),
                ("both bad", lambda np: (np.both_bad, [])),
                (f"bad on {a} only", lambda np: (len(np.only_a_bad), np.only_a_bad)),
                (f"bad on {b} only", lambda np: (len(np.only_b_bad), np.only_b_bad)),
                ("outputs differ", lambda np: (len(np.outputs_differ), np.outputs_differ)),
                ("ran on one side", lambda np: (len(np.only_on_a) + len(np.only_on_b),
                                                np.only_on_a + np.only_on_b))]
            heads = join(html("<th>{}</th>", _night_label(self.night_by_index[np.night]))
                         for np in pair.nights)
            rows = []
            for name, measure in measures:
                cells = []
                for np in pair.nights:
                    count, cases = measure(np)
                    mismatch = " mm" if count and "only" in name else ""
                    cells.append(html('<td class="num{}" title="{}">{}</td>', mismatch,
                                      ", ".join(cases), count))
                rows.append(html("<tr><th>{}</th>{}</tr>", name, join(cells)))
            latest = pair.nights[-1] if pair.nights else None
            detail = Markup("")
            if latest is not None and latest.mismatches:
                detail = html("<p>latest night: bad on {a} only: {ao}; bad on {b} only: {bo}</p>",
                              a=a, b=b, ao=", ".join(latest.only_a_bad) or "none",
                              bo=", ".join(latest.only_b_bad) or "none")
            parts.append(html(
                '<h3>{a} vs {b}</h3><table class="parity" id="parity-{a}-{b}"><thead><tr>'
                '<th>night</th>{heads}</tr></thead><tbody>{rows}</tbody></table>{detail}\n',
                a=a, b=b, heads=heads, rows=join(rows), detail=detail))
        return html('<section id="parity"><h2>Parity per night</h2>{}</section>\n', join(parts))

    def page(self) -> str:
        board = self.board
        grids = join(self.grid(i, p) for i, p in enumerate(board.platforms))  # sets anchors
        latest = board.latest
        head = (f"{len(board.nights)} nights stored, latest {latest.run_id} "
                f"({_night_label(latest)}, started {latest.started_at or '?'})"
                if latest else "no runs stored")
        legend = join(html('<span><i class="sw {c}"></i>{s}</span>', c=c, s=s)
                      for s, c in STATUS_CLASS.items())
        nav = join((html('<a href="#platform-{}">{}</a>', i, p.name)
                    for i, p in enumerate(board.platforms)), " \u00b7 ")
        return html(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>vLLM nightly regressions</title><style>{style}</style></head><body>\n"
            '<h1>vLLM nightly regressions</h1><p class="meta">{head}; generated {gen}</p>\n'
            '<p class="legend">{legend} <span><b>!</b> first bad run</span>'
            '<span>\u25c6 output changed</span></p><p>{nav}</p>\n'
            '<section id="last-night"><h2>Last night</h2>{last}</section>\n{signatures}'
            '{parity}{nodes}{durations}'
            '<div id="filter"><label>case <input id="filter-text" type="search"></label> '
            '<label><input id="filter-problems" type="checkbox"> only broken, flaky or changed'
            "</label></div>\n{grids}<script>{script}</script></body></html>\n",
            style=STYLE, head=head, gen=self.generated_at, legend=legend, nav=nav,
            last=join(self.last_night(p) for p in board.platforms),
            signatures=self.signatures, parity=self.parity(),
            durations=self.durations(), grids=grids, script=SCRIPT,
            nodes=node_section(self.node_lines))


def render(board: Board, details: dict[int, Detail], out_path: Path,
           drift_requests: dict[tuple[int, int], list[str]] | None = None,
           generated_at: str | None = None, quarantine: list | None = None,
           signatures: Markup | None = None, node_lines: list | None = None,
           bisects: dict[tuple[str, str], list[BisectRecord]] | None = None) -> str:
    renderer = Renderer(board, details, out_path, drift_requests, generated_at, quarantine,
                        signatures, bisects)
    renderer.node_lines = node_lines or []  # vllm_tests nodes not passing (history.nodes)
    return renderer.page()
