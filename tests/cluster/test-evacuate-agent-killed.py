"""Acceptance 4 of `vmhop evacuate`: the agent of the target a move goes to
is killed (SIGKILL) in the middle of that move. evacuate notices, cancels
the move at the source before its commit, and the guest keeps running on
h1 (PASS); the other guests move to the other target and verify PASS; the
report names the failure and evacuate exits non-zero."""
import json
import signal
import subprocess
import time

import cluster as C
import vmhoptest as t


def test(c):
    h1, h2, h3 = c.hosts
    for h in c.hosts:
        h.start_agent()
    # A guest that dirties memory faster than --max-bandwidth lets it go:
    # its move stays in pre-copy until something ends it.
    slow = h1.run_vm("slow", memory="128M", cmdline="seconds=0 dirty=48M rate=64M verify=1 hb=100")
    small = [h1.run_vm(f"small{i}", cmdline="seconds=0 dirty=1M rate=1M verify=1 hb=100")
             for i in range(2)]
    for vm in [slow] + small:
        vm.wait_line(r"^HB seq=3\b")

    argv = h1.argv([t.VMHOP, "evacuate", "--json"] + c.client_tls() +
                   ["--from", h1.agent_addr, "--to", f"{h2.agent_addr},{h3.agent_addr}",
                    "--parallel", "2", "--per-target", "1", "--max-bandwidth", "16M"])
    ev = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL)
    c.procs.append(ev)
    deadline = time.monotonic() + 60
    while True:
        m = slow.ctl("query-migrate").get("return", {})
        if m.get("status") == "active" and m.get("bytes_sent", 0) > 0:
            break
        if ev.poll() is not None or time.monotonic() > deadline:
            raise t.TestFailure(f"the slow guest's move never became active ({m})")
        time.sleep(0.05)
    t.check(True, f"the slow guest is moving to h2 (round {m.get('rounds')}, "
            f"{m.get('bytes_sent')} bytes sent)")
    h2.kill_agent(signal.SIGKILL)
    t.check(True, "h2's agent killed with SIGKILL mid-migration")

    try:
        out, err = ev.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        raise t.TestFailure("evacuate did not end after the target agent died")
    print(err.rstrip(), flush=True)
    rep = json.loads(out.strip().splitlines()[-1])
    t.check(ev.returncode == 1 and not rep["empty"] and rep["remaining"] == 1,
            f"evacuate exits 1 with one VM left on h1 (rc {ev.returncode})")
    v = {x["name"]: x for x in rep["vms"]}
    t.check(v["slow"]["target"] == h2.agent_addr and v["slow"]["result"] == "failed",
            "the move to h2 is reported failed")
    t.check("agent on " + h2.agent_addr in v["slow"].get("reason", "") and
            "stopped answering" in v["slow"]["reason"],
            f"the report names the failure ({v['slow'].get('reason')})")
    t.check(all(v[f"small{i}"]["result"] == "moved" and v[f"small{i}"]["target"] == h3.agent_addr
                for i in range(2)), "the other guests moved to h3")
    t.check(slow.status() == "running", "the slow guest keeps running on h1")
    mig = slow.ctl("query-migrate")["return"]
    t.check(mig["status"] == "failed" and "cancel" in mig.get("error", ""),
            f"its migration was cancelled at the source ({mig.get('error')})")

    for vm in small:
        vm.moved_to(h3)
    for vm in [slow] + small:
        verdict, line = vm.verdict()
        t.check(verdict == "PASS", f"{vm.name} verifies PASS on {vm.host.name} ({line})")


C.main(3, test)
