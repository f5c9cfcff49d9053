#!/usr/bin/env python3
"""Prints the Check runners' summary lines and a final 'N passed, N failed'.

A Check program counts its individual checks; any other test (an end-to-end
script) counts as one. Skips are reported apart and never hide a failure."""
import os
import re
import sys

CHECK_RE = re.compile(r"^(\d+)%: Checks: (\d+), Failures: (\d+), Errors: (\d+)")


def main():
    build = sys.argv[1]
    extra = sys.argv[2] if len(sys.argv) > 2 else None
    passed = failed = skipped = 0
    for root, _dirs, files in os.walk(build):
        for name in sorted(files):
            if not name.endswith(".trs"):
                continue
            trs = os.path.join(root, name)
            log = trs[:-4] + ".log"
            results = [l.split(":", 2)[2].strip() for l in open(trs)
                       if l.startswith(":test-result:")]
            check_line = None
            if os.path.exists(log):
                for line in open(log, errors="replace"):
                    m = CHECK_RE.match(line)
                    if m:
                        check_line = m
            test = os.path.relpath(log, build)
            if check_line and all(r in ("PASS", "FAIL", "ERROR") for r in results):
                checks, fails, errs = (int(check_line.group(i)) for i in (2, 3, 4))
                print(f"{test}: {check_line.group(0)}")
                passed += checks - fails - errs
                failed += fails + errs
                # A crash after the summary still fails the program.
                if "PASS" not in results and fails + errs == 0:
                    failed += 1
                continue
            for r in results:
                if r in ("PASS", "XFAIL"):
                    passed += 1
                elif r == "SKIP":
                    skipped += 1
                else:
                    failed += 1
    if extra and os.path.exists(extra):
        for line in open(extra):
            if line.startswith("PASS:"):
                passed += 1
            elif line.startswith("FAIL:"):
                failed += 1
    tail = f", {skipped} skipped" if skipped else ""
    print(f"{passed} passed, {failed} failed{tail}")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
