"""The OCF resource agent contrib/ocf/vmhop on its own: meta-data is valid
XML naming every action, validate-all refuses bad parameters with the OCF
codes, and resource-agents' ocf-tester (start, monitor, probe, stop, double
start and stop, migrate_to/migrate_from present) passes against a real
test guest in a namespace host. The live migration itself is in
test-pacemaker.py."""
import os
import re
import shutil
import subprocess
import sys
import xml.dom.minidom

import cluster as C
import vmhoptest as t

AGENT = os.path.join(t.SRCDIR, "contrib", "ocf", "vmhop")


def ocf(h, action, **params):
    env = " ".join(f"OCF_RESKEY_{k}='{v}'" for k, v in params.items())
    p = subprocess.run(h.argv(["sh", "-c", f"{env} sh {AGENT} {action}"]), capture_output=True,
                       text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test(c):
    if not shutil.which("ocf-tester"):
        print("SKIP: ocf-tester (Debian's resource-agents) is not installed", flush=True)
        print("!" * 72, flush=True)
        sys.exit(77)
    h, = c.hosts
    rc, out, err = ocf(h, "meta-data")
    doc = xml.dom.minidom.parseString(out)
    actions = {a.getAttribute("name") for a in doc.getElementsByTagName("action")}
    t.check(rc == 0 and {"start", "stop", "monitor", "migrate_to", "migrate_from", "meta-data",
                         "validate-all"} <= actions, f"meta-data lists the actions ({sorted(actions)})")
    base = {"name": "t1", "kernel": t.GUEST, "memory": "64M", "run_dir": h.run_dir,
            "binary": t.VMHOP, "cmdline": "seconds=0 hb=100", "shutdown_wait": "10"}
    rc, _, err = ocf(h, "validate-all", **dict(base, name="../x"))
    t.check(rc == 6 and "letters, digits" in err, f"a bad name: OCF_ERR_CONFIGURED ({err.strip()})")
    rc, _, err = ocf(h, "validate-all", **dict(base, kernel="/nonexistent"))
    t.check(rc == 5 and "not readable" in err, f"a missing kernel: OCF_ERR_INSTALLED ({err.strip()})")
    rc, _, err = ocf(h, "validate-all", **dict(base, binary="/nonexistent/vmhop"))
    t.check(rc == 5, f"a missing vmhop binary: OCF_ERR_INSTALLED ({err.strip()})")
    rc, _, err = ocf(h, "monitor", **base)
    t.check(rc == 7, "monitor of a VM that does not run: OCF_NOT_RUNNING")
    rc, _, err = ocf(h, "migrate_to", **base)
    t.check(rc == 2 and "without a target" in err, f"migrate_to without a target: OCF_ERR_ARGS")

    args = ["ocf-tester", "-n", "t1"]
    for k, v in base.items():
        args += ["-o", f"{k}={v}"]
    p = subprocess.run(h.argv(args + [AGENT]), capture_output=True, text=True, timeout=300)
    print(p.stdout.strip(), flush=True)
    t.check(p.returncode == 0 and "passed all tests" in p.stdout,
            f"ocf-tester passes ({p.stderr.strip()[-300:]})")
    t.check(not os.path.exists(h.path("t1.sock")), "nothing runs after ocf-tester")
    hbs = re.findall(r"^VERDICT (\w+)", open(h.path("t1.serial")).read(), re.M)
    t.check(hbs and all(v == "PASS" for v in hbs),
            f"each stop powered the guest off cleanly ({len(hbs)} verdicts, all PASS)")


C.main(1, test)
