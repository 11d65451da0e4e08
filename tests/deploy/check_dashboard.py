#!/usr/bin/env python3
"""The Grafana dashboard (deploy/grafana/chain-gateway.json), without a Grafana:

  check_dashboard.py <dashboard.json>

- It is a dashboard Grafana imports: a title, a uid, panels with a type and a place, the data
  source a variable (so that it works on any Prometheus), a `chain` variable.
- Panels do not overlap on the grid.
- Every query is PromQL that Prometheus parses (`promtool check rules` on the queries as recording
  rules, `$chain` as `.*`).
(That every metric it names is served by a running gateway is Deploy.EveryMetricTheAlertsAndThe-
DashboardNameIsServed's.) Exits 1 with what is wrong.
"""
import json
import os
import subprocess
import sys
import tempfile

problems = []


def check(ok, what):
    if not ok:
        problems.append(what)


def main():
    with open(sys.argv[1]) as f:
        dash = json.load(f)
    check(dash.get("title") and dash.get("uid"), "no title or uid")
    names = [v.get("name") for v in dash.get("templating", {}).get("list", [])]
    check("datasource" in names and "chain" in names, "no datasource or chain variable")
    cells = {}
    queries = []
    for p in dash.get("panels", []):
        title = p.get("title", "?")
        check("type" in p and "gridPos" in p, f"panel {title}: no type or place")
        g = p.get("gridPos", {})
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                check((x, y) not in cells, f"panel {title} overlaps {cells.get((x, y))}")
                cells[(x, y)] = title
        check(g.get("x", 0) + g.get("w", 0) <= 24, f"panel {title}: wider than the grid")
        if p.get("type") == "row":
            continue
        check(p.get("datasource", {}).get("uid") == "${datasource}",
              f"panel {title}: its data source is not the variable")
        check(p.get("targets"), f"panel {title}: no query")
        for t in p.get("targets", []):
            queries.append((title, t.get("expr", "")))
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": expr.replace("$chain", ".*")}
        for i, (_, expr) in enumerate(queries)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump(rules, f)  # JSON is YAML
        path = f.name
    try:
        r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
        check(r.returncode == 0, "a query does not parse:\n" + r.stdout + r.stderr)
    finally:
        os.unlink(path)
    if problems:
        print(f"check_dashboard: {len(problems)} problem(s):")
        for p in problems:
            print("  - " + p)
        return 1
    print(f"check_dashboard: {len(dash['panels'])} panels, {len(queries)} queries that parse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
