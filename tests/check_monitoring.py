#!/usr/bin/env python3
"""check_monitoring.py — ctest test_monitoring_files (label unit): the
monitoring files of monitoring/ are well formed.

  * grafana-dashboard.json parses, asks for its data source as the import
    input DS_PROMETHEUS, every panel and query uses it, panel ids are unique;
  * every PromQL expression of the dashboard parses: with Grafana's
    variables replaced ($__rate_interval -> 5m, $instance -> .*) they are
    written as recording rules to a scratch file for `promtool check rules`;
  * `promtool check rules monitoring/vaegan-alerts.yml` passes;
  * `promtool test rules monitoring/vaegan-alerts.test.yml` passes, and that
    file has, for every alert of the rules, a case where it fires and one
    where it must not.

promtool comes with Debian's prometheus package (scripts/deps.sh installs
it).  Without it the test fails when CI is set and is skipped otherwise
(exit 77, ctest's SKIP_RETURN_CODE).  That the daemon exports every metric
named here is test_monitoring's job (an integration test).

    check_monitoring.py SOURCE_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def dashboard_exprs(path):
    """Checks the dashboard's structure; returns its (panel title, expr) pairs."""
    with open(path) as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as e:
            fail(f"{path}: not JSON: {e}")
    inputs = [i.get("name") for i in d.get("__inputs", []) if i.get("type") == "datasource"]
    if inputs != ["DS_PROMETHEUS"]:
        fail(f"{path}: __inputs should declare the one datasource DS_PROMETHEUS, has {inputs}")
    ids, exprs = set(), []
    want = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for p in d.get("panels", []):
        if p.get("id") in ids:
            fail(f"{path}: panel id {p.get('id')} used twice")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        title = p.get("title", "?")
        if p.get("datasource") != want:
            fail(f"{path}: panel {title!r}: datasource {p.get('datasource')} is not {want}")
        if not p.get("targets"):
            fail(f"{path}: panel {title!r} has no query")
        for t in p["targets"]:
            if t.get("datasource") != want or not t.get("expr"):
                fail(f"{path}: panel {title!r}: a query without expr or with another datasource: {t}")
            exprs.append((title, t["expr"]))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query" and v.get("datasource") != want:
            fail(f"{path}: variable {v.get('name')}: datasource {v.get('datasource')} is not {want}")
    print(f"{path}: {len(ids)} panels, {len(exprs)} queries, datasource input DS_PROMETHEUS")
    return exprs


def run(cmd, cwd):
    print("$ " + " ".join(cmd))
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    print((r.stdout + r.stderr).rstrip())
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited with {r.returncode}")


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("VG_SOURCE_DIR", ".")
    mon = os.path.join(src, "monitoring")
    rules = os.path.join(mon, "vaegan-alerts.yml")
    tests = os.path.join(mon, "vaegan-alerts.test.yml")
    exprs = dashboard_exprs(os.path.join(mon, "grafana-dashboard.json"))

    # every alert has a firing case and a quiet one
    with open(rules) as f:
        alerts = re.findall(r"^\s*- alert:\s*(\w+)\s*$", f.read(), re.M)
    with open(tests) as f:
        t = f.read()
    for a in alerts:
        quiet = re.search(rf"alertname:\s*{a}\s*\n\s*exp_alerts:\s*\[\]", t)
        fires = re.search(rf"alertname:\s*{a}\s*\n\s*exp_alerts:\s*\n\s*- exp_labels:", t)
        if not quiet or not fires:
            fail(f"{tests}: alert {a} needs a case where it fires and one with exp_alerts: [] "
                 f"(has fires={bool(fires)}, quiet={bool(quiet)})")
    print(f"{tests}: every alert of {rules} ({len(alerts)}: {', '.join(alerts)}) fires in one case "
          "and stays quiet in another")

    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not promtool:
        msg = "promtool not found (Debian package prometheus; scripts/deps.sh installs it)"
        if os.environ.get("CI"):
            fail(msg + ": required on CI")
        print("SKIP: " + msg + "; the rules are not checked")
        sys.exit(SKIP)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dashboard-exprs.yml")
        with open(path, "w") as f:
            f.write("# the queries of grafana-dashboard.json as recording rules, for promtool to parse\n"
                    "groups:\n  - name: dashboard\n    rules:\n")
            for k, (title, e) in enumerate(exprs):
                e = e.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$job", ".*")
                if "$" in e:
                    fail(f"dashboard panel {title!r}: unknown variable in {e}")
                f.write(f"      - record: dashboard:query_{k}\n        expr: {json.dumps(e)}\n")
        print(f"the dashboard's {len(exprs)} queries:")
        run([promtool, "check", "rules", path], tmp)
    run([promtool, "check", "rules", rules], mon)
    run([promtool, "test", "rules", tests], mon)
    print("OK")


if __name__ == "__main__":
    main()
