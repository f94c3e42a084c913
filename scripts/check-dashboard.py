#!/usr/bin/env python3
"""Check deploy/grafana/dashboard.json loads and only queries metrics that exist.

* the file is valid JSON with the fields Grafana needs (title, uid, panels with unique ids,
  type, title and gridPos);
* every non-row panel has at least one query, and every query names at least one metric;
* every metric a query names is a family in src/telemetry.rs (`names::*`, histograms with their
  _bucket/_sum/_count series) or Prometheus' own `up`;
* with --rules-out FILE, writes every query as a recording rule (Grafana's $__rate_interval
  replaced by 5m) so `promtool check rules FILE` proves each one is valid PromQL.

Standard library only. Exit 0 when everything holds, 1 with one line per problem otherwise.
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan",
}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def telemetry_families():
    text = (ROOT / "src/telemetry.rs").read_text()
    return set(re.findall(r'pub const [A-Z_]+: &str = "(reconciler_[a-z_]+)"', text))


def metric_names(expr):
    """The metric names a PromQL expression selects (good enough for dashboard queries)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors
    e = re.sub(r"\$\{?\w+\}?", "", e)  # Grafana variables
    e = GROUPING.sub("", e)
    names = []
    for m in IDENT.finditer(e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_KEYWORDS:
            continue  # a function call or a keyword
        if m.start() > 0 and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue  # exponent of a number literal
        names.append(word)
    return names


def family_of(name, families):
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return None


def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dashboard", nargs="?", default=str(ROOT / "deploy/grafana/dashboard.json"))
    parser.add_argument("--rules-out", help="write the queries as Prometheus recording rules here")
    args = parser.parse_args()

    problems = []
    try:
        dash = json.loads(Path(args.dashboard).read_text())
    except (OSError, ValueError) as e:
        print(f"check-dashboard: {args.dashboard}: not loadable JSON: {e}")
        return 1
    for key in ("title", "uid", "panels", "schemaVersion"):
        if key not in dash:
            problems.append(f"dashboard has no {key!r}")
    families = telemetry_families()
    if len(families) < 10:
        problems.append(f"found only {len(families)} metric families in src/telemetry.rs")
    ids, used, rules = set(), set(), []
    for p in walk(dash.get("panels", [])):
        title = p.get("title", "?")
        for key in ("id", "type", "title", "gridPos"):
            if key not in p:
                problems.append(f"panel {title!r} has no {key!r}")
        if p.get("id") in ids:
            problems.append(f"panel {title!r}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        if p.get("type") in ("row", "text"):
            continue
        exprs = [t.get("expr", "") for t in p.get("targets", [])]
        if not exprs or not all(e.strip() for e in exprs):
            problems.append(f"panel {title!r} has a missing or empty query")
        for expr in exprs:
            names = metric_names(expr)
            if not names:
                problems.append(f"panel {title!r}: query names no metric: {expr}")
            for name in names:
                family = "up" if name == "up" else family_of(name, families)
                if family is None:
                    problems.append(f"panel {title!r}: {name} is not a metric in src/telemetry.rs")
                else:
                    used.add(family)
            rules.append({"record": f"dashboard:panel_{p.get('id')}:{len(rules)}",
                          "expr": expr.replace("$__rate_interval", "5m")})
    if args.rules_out:
        Path(args.rules_out).write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}, indent=2))
    for problem in problems:
        print(f"check-dashboard: {problem}")
    if problems:
        return 1
    unused = sorted(families - used)
    print(f"check-dashboard: {len(rules)} queries in {len(ids)} panels, all on known metrics"
          + (f" (not charted: {', '.join(unused)})" if unused else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
