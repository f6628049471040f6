"""The event log's navigation, Save / Clear and the Classes page (HTML), issue 15.

- The pager under the Filterable Event Log: First / Previous / Next / Last by
  keyset on the sequence number (`order=oldest` for the first page and Next,
  `before_seq` for Previous, nothing for Last), the filters kept in the URL so
  a page can be bookmarked and reloaded.
- Save Log links (text as the VPN 3000 writes it, CSV) of the filtered range;
  a link to Clear Log, which asks first.
- Configuration | System | Events | Classes: each class's kept and shown
  (console) severities, changed at run time.

Every value goes through `pages.h()`; no inline script or style (the CSP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from vpnhub.eventlog import CLASSES, MAX_SEVERITY, Record
from vpnhub.manager import human
from vpnhub.manager.pages import h

# query parameters that choose a page, not the range: dropped from Save links
PAGE_KEYS = ("before_seq", "after_seq", "order", "limit")


def _pairs(query: Mapping[str, str | list[str]], drop: Sequence[str]) -> list[tuple[str, str]]:
    return [(k, v) for k, vs in query.items() if k not in drop
            for v in ([vs] if isinstance(vs, str) else vs)]


def pager(query: Mapping[str, str | list[str]], records: Sequence[Record], older: bool,
          newer: bool) -> str:
    """First / Previous / Next / Last; a link is plain text where there is no such page."""
    rest = _pairs(query, ("before_seq", "after_seq", "order"))

    def link(extra: list[tuple[str, str]], label: str, key: str, live: bool) -> str:
        if not live:
            return f'<span class="{key} off" aria-disabled="true">{label}</span>'
        return (f'<a href="/events?{h(urlencode(rest + extra))}" class="{key}"'
                f' id="events-{key}">{label}</a>')

    first = records[0].seq if records else 0
    last = records[-1].seq if records else 0
    # grouped as every count on the console (human.py): "#9,501 to #10,000"
    span = f"#{human.count(first)} to #{human.count(last)}" if records else "no events"
    parts = [link([("order", "oldest")], "&laquo; First", "first", older),
             link([("before_seq", str(first))], "&lsaquo; Previous", "prev", older),
             f'<span class="count">{h(span)}</span>',
             link([("after_seq", str(last)), ("order", "oldest")], "Next &rsaquo;", "next",
                  newer),
             link([], "Last &raquo;", "last", newer)]
    return f'<p class="pager" id="events-pager">{" ".join(parts)}</p>'


def tools(query: Mapping[str, str | list[str]], admin: bool) -> str:
    """Save Log (the filtered range, every page of it) and Clear Log, under the pager."""
    rest = _pairs(query, PAGE_KEYS)

    def save(fmt: str, label: str) -> str:
        target = urlencode([*rest, ("format", fmt)])
        return (f'<a href="/api/v1/events/save?{h(target)}" class="save-{fmt}"'
                f' id="save-{fmt}" download>{label}</a>')

    clear = ' <a href="/events/clear" id="clear-log">Clear Log</a>' if admin else ""
    return (f'<p class="event-tools" id="event-tools">Save Log: {save("text", "text")}'
            f' {save("csv", "CSV")}{clear}'
            ' <a href="/config/events/classes" id="classes-link">Event Classes</a></p>')


def clear_page(csrf: str, count: str) -> str:
    """The question Clear Log asks first (the POST needs confirm=yes)."""
    return (
        "<h1>Monitoring | Filterable Event Log | Clear Log</h1>"
        f"<p>Delete every record of the event log ({h(count)})? This cannot be undone;"
        " one record stays, saying who cleared the log, from where, and how many records"
        " went. Save the log first if you need it.</p>"
        '<form method="post" action="/events/clear" id="clear-form">'
        f'<input type="hidden" name="csrf" value="{h(csrf)}">'
        '<input type="hidden" name="confirm" value="yes">'
        '<button type="submit" id="clear-confirm">Clear Log</button> '
        '<a href="/events" id="clear-cancel">Cancel</a></form>')


def severity_range(n: int) -> str:
    """A severity as the range it admits, as the VPN 3000 shows it ("None", "1", "1-5")."""
    return "None" if n == 0 else "1" if n == 1 else f"1-{n}"


def _select(name: str, chosen: int) -> str:
    opts = "".join(f'<option value="{n}"{" selected" if n == chosen else ""}>'
                   f"{severity_range(n)}</option>" for n in range(0, MAX_SEVERITY + 1))
    return f'<select name="{h(name)}" id="{h(name)}">{opts}</select>'


def classes_page(levels: Mapping[str, tuple[int, int]], overridden: Mapping[str, object],
                 csrf: str, admin: bool, message: str = "") -> str:
    """Each class with its kept and shown severity ranges; admins change them here."""
    rows = []
    for name, (console, keep) in levels.items():
        where = "set here" if name in overridden else "configuration"
        if admin:
            kept, shown = _select(f"keep.{name}", keep), _select(f"console.{name}", console)
        else:
            kept, shown = h(severity_range(keep)), h(severity_range(console))
        rows.append(f'<tr data-class="{h(name)}"><th>{h(name)}</th><td>{kept}</td>'
                    f"<td>{shown}</td><td>{where}</td>"
                    f'<td class="text">{h(CLASSES.get(name, ""))}</td></tr>')
    note = f'<p class="ok" role="status">{h(message)}</p>' if message else ""
    table = ('<div class="scroll"><table class="grid" id="classes-table"><thead><tr>'
             "<th>Class</th><th>Severity to Log (kept)</th><th>Severity to Console (shown)"
             "</th><th>From</th><th>Covers</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table></div>")
    hint = ('<p class="hint">A change applies from the next event and is kept across'
            " restarts, over the configuration file's [log.classes] (the defaults).</p>")
    if not admin:
        return "<h1>Configuration | System | Events | Classes</h1>" + note + hint + table
    return ("<h1>Configuration | System | Events | Classes</h1>" + note + hint
            + '<form method="post" action="/config/events/classes" id="classes-form">'
            f'<input type="hidden" name="csrf" value="{h(csrf)}">' + table
            + '<button type="submit" id="classes-apply">Apply</button></form>')
