#!/usr/bin/env python3
"""List the tests that did not run, from ctest's JUnit report, and fail CI on them.

usage: test-summary.py JUNIT_XML

Three kinds of skip hide inside a green `ctest`:
  - a ctest test skipped or not run (SKIP_RETURN_CODE, a failed fixture, disabled);
  - a cmocka case that called skip() ("[  SKIPPED ] name" in its output);
  - a Python unittest case that called skipTest() ("name (...) ... skipped 'why'").
Each is printed by name with its reason, after the ctest summary.

Exit status: 0, or 1 when CI=true (or OPSLINE_STRICT_SKIPS=1) and anything skipped.
CI has what every skip in this suite waits for (../shared, root, moto, boto3, the test
plugins), so there a skip is a failure that would otherwise pass unnoticed. A developer
without ../shared still gets exit 0, and the list says what did not run.
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

CMOCKA_SKIP = re.compile(r"^\[  SKIPPED \] (\S+)\s*$")
CMOCKA_SKIP_COUNT = re.compile(r"^\[  SKIPPED \] \d+ test\(s\)")
# unittest -v: "test_x (module.Class.test_x) ... skipped 'why'"; warnings printed by the
# test itself can push "skipped 'why'" onto a later line of its own.
UNITTEST_CASE = re.compile(r"^(test\w*) \([\w.]+\)(?: .*)? \.\.\. ")
UNITTEST_SKIP = re.compile(r"(?:^|\.\.\. )skipped '(.*)'$")


def inner_skips(output):
    """(case, reason) for every skipped case inside one ctest test's output."""
    found, seen, current = [], set(), None
    lines = output.splitlines()
    for i, line in enumerate(lines):
        m = CMOCKA_SKIP.match(line)
        if m and not CMOCKA_SKIP_COUNT.match(line) and m.group(1) not in seen:
            seen.add(m.group(1))
            # cmocka prints the test's own message (print_message) just before.
            why = lines[i - 1].strip() if i > 0 and not lines[i - 1].startswith("[") else ""
            found.append((m.group(1), why or "skip() called"))
            continue
        m = UNITTEST_CASE.match(line)
        if m:
            current = m.group(1)
        m = UNITTEST_SKIP.search(line)
        if m and current and current not in seen:
            seen.add(current)
            found.append((current, m.group(1)))
    return found


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        root = ET.parse(argv[1]).getroot()
    except (OSError, ET.ParseError) as exc:
        print(f"test-summary: cannot read {argv[1]}: {exc}", file=sys.stderr)
        return 1
    skipped = []  # (test, case or None, reason)
    for case in root.iter("testcase"):
        name = case.get("name")
        status = case.get("status", "run")
        out = case.findtext("system-out") or ""
        if status in ("notrun", "disabled"):
            why = case.find("skipped")
            reason = why.get("message") if why is not None else status
            last = [ln for ln in out.splitlines() if ln.strip()]
            if last:
                reason = f"{reason}: {last[-1].strip()}"
            skipped.append((name, None, reason))
        for sub, reason in inner_skips(out):
            skipped.append((name, sub, reason))

    strict = os.environ.get("CI", "").lower() in ("true", "1") or \
        os.environ.get("OPSLINE_STRICT_SKIPS") == "1"
    print()
    if not skipped:
        print("Skipped tests: none")
        return 0
    print(f"Skipped tests ({len(skipped)}):")
    for test, sub, reason in skipped:
        print(f"  SKIPPED {test}{' > ' + sub if sub else ''}: {reason}")
    if strict:
        print("test-summary: CI has every prerequisite these tests wait for (../shared, root, "
              "moto, boto3), so a skip here hides a failure: failing the run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
