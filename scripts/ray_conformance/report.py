"""The table of scripts/ray-conformance.sh: per test file, the tests that pass on Ray, of those the
ones that pass on shoal, and the tests counted apart as "internal" (they use Ray internals:
private modules, private attributes, Ray's test-only environment knobs, the dashboard).

usage: report.py OUTDIR TESTDIR FILE...   (OUTDIR holds ray/FILE.xml and shoal/FILE.xml, JUnit
XML written by pytest --junitxml); --failures lists each Ray-passing, non-internal test that
fails on shoal with the first line of its message."""
import ast
import os
import re
import sys
import xml.etree.ElementTree as ET

# reason class -> what in a test's source makes it internal
INTERNAL = [
    ("private module", re.compile(r"ray\._private\.(?!test_utils)|ray\._raylet|ray\._common\.(?!test_utils)"
                                  r"|ray\.worker\b|ray\.state\b|ray_constants|ray\.experimental\.state\b|ObjectRefStreamEndOfStreamError"
                                  # Ray's test helpers that drive its internals (a second driver, the error pubsub)
                                  r"|run_string_as_driver|init_error_pubsub|get_error_message")),
    ("private attribute", re.compile(r"\._(?:pending_submits|on_completed|ray_actor_id|next_sync|next_async|actor_id\b)"
                                     r"|\bcore_worker\b|mocked_worker")),
    ("test-only knob", re.compile(r"RAY_testing_|RAY_max_direct_call|_system_config")),
    ("dashboard/metrics/GCS", re.compile(r"dashboard|webui_url|metrics|autoscaler|\bgcs\b", re.I)),
]


def sources(path):
    """test function name -> its source text (module-level and class methods)."""
    with open(path) as f:
        text = f.read()
    out = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            out[node.name] = ast.get_source_segment(text, node) or ""
    return out


def internal_reason(src):
    for reason, rx in INTERNAL:
        if rx.search(src):
            return reason
    return None


def results(xml):
    """test id -> (outcome, message); outcome is pass, fail, error or skip."""
    out = {}
    if not os.path.exists(xml):
        return out
    for tc in ET.parse(xml).getroot().iter("testcase"):
        name = tc.get("name")
        outcome, msg = "pass", ""
        for kind, o in (("failure", "fail"), ("error", "error"), ("skipped", "skip")):
            e = tc.find(kind)
            if e is not None:
                outcome, msg = o, (e.get("message") or "").strip().splitlines()[0:1]
                msg = msg[0] if msg else ""
                break
        if outcome == "pass" or name not in out:
            out[name] = (outcome, msg)
    return out


def main(argv):
    show_failures = "--failures" in argv
    argv = [a for a in argv if a != "--failures"]
    outdir, testdir, files = argv[0], argv[1], argv[2:]
    rows, tot = [], [0, 0, 0, 0, 0]
    fails = []
    for f in files:
        src = sources(os.path.join(testdir, f))
        ray = results(os.path.join(outdir, "ray", f + ".xml"))
        sh = results(os.path.join(outdir, "shoal", f + ".xml"))
        n_ray = n_shoal = n_int = n_int_shoal = 0
        classes = {}
        for tid, (o, _) in ray.items():
            if o != "pass":
                continue
            base = tid.split("[")[0]
            so, smsg = sh.get(tid, ("missing", "no result on shoal (the run stopped or timed out)"))
            reason = internal_reason(src.get(base, "")) or ("private module" if "InternalOnly" in smsg else None)
            if reason:
                n_int += 1
                n_int_shoal += so == "pass"
                classes[reason] = classes.get(reason, 0) + 1
                continue
            n_ray += 1
            if so == "pass":
                n_shoal += 1
            else:
                fails.append((f, tid, so, smsg))
        n_all = len(ray)
        rows.append((f, n_all, n_ray, n_shoal, n_int, ", ".join(f"{k} {v}" for k, v in sorted(classes.items()))))
        for i, v in enumerate((n_all, n_ray, n_shoal, n_int, n_int_shoal)):
            tot[i] += v
    print("| file | tests | pass on Ray (public API) | of those, pass on shoal | internal (pass on Ray, excluded) |")
    print("|---|---:|---:|---:|---|")
    for f, n_all, n_ray, n_shoal, n_int, cl in rows:
        pct = f" ({100 * n_shoal // n_ray}%)" if n_ray else ""
        print(f"| {f} | {n_all} | {n_ray} | {n_shoal}{pct} | {n_int}{': ' + cl if cl else ''} |")
    pct = f" ({100 * tot[2] // tot[1]}%)" if tot[1] else ""
    print(f"| **all** | {tot[0]} | {tot[1]} | **{tot[2]}{pct}** | {tot[3]} ({tot[4]} of them pass on shoal too) |")
    if show_failures:
        print()
        for f, tid, so, msg in fails:
            print(f"- {f}::{tid}: {so}: {msg[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
