"""Passed / failed / skipped per test function (or per test file), from pytest's JUnit XML.

  python summarize.py RESULTS.xml [--per-file]
"""
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict


def _file_of(case) -> str:
    """tests.kernels.core.test_layernorm[.TestX] -> test_layernorm.py (JUnit's classname)."""
    parts = (case.get("classname") or case.get("name") or "").split(".")   # a collection error: name only
    return next((p + ".py" for p in parts if p.startswith("test_")), parts[-1] or "?")


per_file = "--per-file" in sys.argv[2:]
counts: dict[str, Counter] = defaultdict(Counter)
reasons: dict[str, Counter] = defaultdict(Counter)
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    fn = _file_of(case) if per_file else case.get("name", "").split("[", 1)[0]
    outcome = "passed"
    for child in case:
        if child.tag in ("failure", "error"):
            outcome = "failed"
            reasons[fn][(child.get("message") or "")[:160]] += 1
        elif child.tag == "skipped":
            outcome = "skipped"
            reasons[fn]["skip: " + (child.get("message") or "")[:150]] += 1
    counts[fn][outcome] += 1
label = "test file" if per_file else "test function"
print(f"{label:40} {'passed':>7} {'failed':>7} {'skipped':>8}")
for fn in sorted(counts):
    c = counts[fn]
    print(f"{fn:40} {c['passed']:7} {c['failed']:7} {c['skipped']:8}")
tot = sum(counts.values(), Counter())
print(f"{'total':40} {tot['passed']:7} {tot['failed']:7} {tot['skipped']:8}")
for fn in sorted(reasons):
    for msg, n in reasons[fn].most_common(5):
        print(f"  {fn}: {n} x {msg}")
