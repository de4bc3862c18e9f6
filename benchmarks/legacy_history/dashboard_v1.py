"""[The baseline: harness/history/dashboard.py as it was before issue 14 (commit b00817f), kept callable
for benchmarks/bench_history.py to measure today's implementation against.]

Render the board as one self-contained HTML file.

No external scripts, fonts or requests: inline CSS, inline SVG sparklines and a few lines of
inline JS (a filter). Every value from results and logs goes through ``html()``, which escapes.
"""

from __future__ import annotations

import os
import posixpath
from datetime import datetime, timezone
from pathlib import Path

from harness.history.board import Board, CaseLine, PlatformBoard
from harness.history.html import Markup, html, href, join
from harness.history.queries import Night, Row
from legacy_history.store_v1 import Detail

STYLE = Markup("""
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#1b1f24}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 6px}h3{font-size:14px;margin:12px 0 4px}
.meta{color:#57606a}.legend span{display:inline-block;margin-right:10px}
.sw{display:inline-block;width:11px;height:11px;vertical-align:middle;margin-right:3px;border:1px solid #0002}
table.grid{border-collapse:collapse}
table.grid th,table.grid td{border:1px solid #d0d7de;padding:0}
table.grid thead th{font-weight:normal;font-size:10px;padding:2px;white-space:nowrap;vertical-align:bottom}
table.grid th.case{text-align:left;padding:1px 6px;font-weight:normal;white-space:nowrap;position:sticky;left:0;background:#fff}
td.c{width:18px;height:18px;text-align:center;font-size:11px;line-height:18px}
td.c a{display:block;color:inherit;text-decoration:none}
.s-passed{background:#2da44e;color:#fff}.s-xfailed{background:#8fd19e}
.s-failed{background:#cf222e;color:#fff}.s-error{background:#bc4c00;color:#fff}
.s-xpassed{background:#d4a72c}.s-skipped{background:#d0d7de}.s-none{background:#fff}
td.fb{outline:3px solid #000;outline-offset:-3px}
.flag{font-size:11px;border-radius:3px;padding:0 4px;margin-left:4px}
.flaky{background:#fff8c5;border:1px solid #d4a72c}.new{background:#ffebe9;border:1px solid #cf222e}
.drift{background:#ddf4ff;border:1px solid #54aeff}
ul.items{margin:4px 0 8px;padding-left:18px}ul.items li{margin:2px 0}
pre{background:#f6f8fa;padding:6px;margin:4px 0;max-width:100ch;overflow:auto;font-size:11px}
table.parity{border-collapse:collapse;font-size:11px}table.parity td,table.parity th{border:1px solid #d0d7de;padding:1px 4px;text-align:right;white-space:nowrap}
table.parity td.mm{background:#ffebe9;font-weight:bold}
.spark{vertical-align:middle}tr.hidden{display:none}
#filter{margin:8px 0}
""")

# Filter rows by case name, or to the rows with a problem. Guards every lookup: no errors.
SCRIPT = Markup("""
(function(){
  var box=document.getElementById('filter-text'),only=document.getElementById('filter-problems');
  if(!box||!only)return;
  function apply(){
    var text=box.value.toLowerCase(),rows=document.querySelectorAll('tr.line');
    for(var i=0;i<rows.length;i++){
      var r=rows[i],name=(r.getAttribute('data-case')||'').toLowerCase();
      var hide=(text&&name.indexOf(text)<0)||(only.checked&&!r.classList.contains('problem'));
      r.classList.toggle('hidden',!!hide);
    }
  }
  box.addEventListener('input',apply);only.addEventListener('change',apply);
  document.documentElement.setAttribute('data-js','ok');  // reached only if nothing threw
})();
""")

SYMBOL = {"passed": "", "xfailed": "x", "failed": "\u2715", "error": "E", "xpassed": "!",
          "skipped": "-"}


class Links:
    """Relative links from the page to files beside the results (logs, annotations)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir.resolve()
        self._dirs: dict[tuple[str, str], str | None] = {}

    def _dir(self, night: Night, platform: str) -> str | None:
        """The platform's result directory of a night, relative to the page (cached)."""
        key = (night.run_id, platform)
        if key not in self._dirs:
            run = night.platform_run(platform)
            self._dirs[key] = (os.path.relpath(Path(run.run_dir) / platform, self.out_dir)
                               if run else None)
        return self._dirs[key]

    def worker_log(self, night: Night, platform: str) -> str | None:
        where = self._dir(night, platform)
        return href(f"{where}/worker.log") if where else None

    def annotation(self, night: Night, platform: str) -> str | None:
        run = night.platform_run(platform)
        if run is None or not run.annotation:
            return None
        return href(os.path.relpath(Path(run.run_dir) / run.annotation, self.out_dir))

    def log(self, night: Night, platform: str, detail: Detail | None) -> str | None:
        where = self._dir(night, platform)
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
                 generated_at: str | None = None):
        self.board, self.details = board, details
        self.drift_requests = drift_requests or {}  # (before, after) result ids -> request ids
        self.links = Links(out_path.parent)
        self.generated_at = generated_at or datetime.now(timezone.utc).isoformat(
            timespec="seconds")
        self.night_by_index = {night.index: night for night in board.nights}
        self.anchor: dict[tuple[str, str], str] = {}  # first-bad cell ids, by (case, platform)
        self.first_shown = board.shown[0].index if board.shown else len(board.nights)

    # --- pieces --------------------------------------------------------------------------
    def cell(self, line: CaseLine, row: Row | None, anchor: str | None) -> Markup:
        if row is None:
            return Markup('<td class="c s-none" title="not run"></td>')
        night = self.night_by_index[row.night]
        detail = self.details.get(row.result_id)
        classes = ["c", f"s-{row.status}"]
        mark = SYMBOL.get(row.status, "?")
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
        # One format per cell: the grid has tens of thousands of them.
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

    def line(self, p_index: int, l_index: int, line: CaseLine) -> Markup:
        anchor = None
        fb = line.first_bad
        if fb is not None and any(c is not None and c.night == fb.first_bad.night
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
        if line.broken_now:
            flags.append(self.first_bad_text(line, full=False))
        if line.drift_nights:
            flags.append(Markup('<span class="flag drift">output changed</span>'))
        classes = "line problem" if line.problem else "line"
        cells = join(self.cell(line, row, anchor if row is not None and fb is not None
                               and row.night == fb.first_bad.night else None)
                     for row in line.cells)
        spark = sparkline([c.total_s if c is not None else None for c in line.cells])
        return html('<tr class="{cls}" data-case="{case}"><th class="case" scope="row">{case}'
                    '{flags}</th><td>{spark}</td>{cells}</tr>\n', cls=classes, case=line.case_id,
                    flags=join(flags), spark=spark, cells=cells)

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
            heads.append(html('<th class="night" title="{}">{}{}</th>', title, build, extras))
        body = join(self.line(p_index, i, line) for i, line in enumerate(platform.lines))
        return html('<h2 id="platform-{i}">{name}{acc}</h2>\n<table class="grid" id="grid-{i}" '
                    'data-platform="{name}"><thead><tr><th class="case">case</th>'
                    '<th>time</th>{heads}</tr></thead>\n<tbody>\n{body}</tbody></table>\n',
                    i=p_index, name=platform.name,
                    acc=f" ({platform.accelerator})" if platform.accelerator else "",
                    heads=join(heads), body=body)

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
                '<span class="msg">{msg}</span> {log}{tail}</li>',
                case=line.case_id, status=line.last.status,
                fclass=f" [{line.last.failure_class}]" if line.last.failure_class else "",
                fb=join([Markup('<span class="flag new">new</span> ') if line.newly_broken
                         else Markup(""), self.first_bad_text(line)]),
                msg=detail.message if detail else "",
                log=html('<a href="{}">log</a>', log) if log else Markup(""), tail=tail))
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
                    cells.append(html('<td class="n{}" title="{}">{}</td>', mismatch,
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
        legend = join(html('<span><i class="sw s-{s}"></i>{s}</span>', s=s) for s in SYMBOL)
        nav = join((html('<a href="#platform-{}">{}</a>', i, p.name)
                    for i, p in enumerate(board.platforms)), " \u00b7 ")
        return html(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>vLLM nightly regressions</title><style>{style}</style></head><body>\n"
            '<h1>vLLM nightly regressions</h1><p class="meta">{head}; generated {gen}</p>\n'
            '<p class="legend">{legend} <span><b>!</b> first bad run</span>'
            '<span>\u25c6 output changed</span></p><p>{nav}</p>\n'
            '<section id="last-night"><h2>Last night</h2>{last}</section>\n{parity}'
            '<div id="filter"><label>case <input id="filter-text" type="search"></label> '
            '<label><input id="filter-problems" type="checkbox"> only broken, flaky or changed'
            "</label></div>\n{grids}<script>{script}</script></body></html>\n",
            style=STYLE, head=head, gen=self.generated_at, legend=legend, nav=nav,
            last=join(self.last_night(p) for p in board.platforms), parity=self.parity(),
            grids=grids, script=SCRIPT)


def render(board: Board, details: dict[int, Detail], out_path: Path,
           drift_requests: dict[tuple[int, int], list[str]] | None = None,
           generated_at: str | None = None) -> str:
    return Renderer(board, details, out_path, drift_requests, generated_at).page()
