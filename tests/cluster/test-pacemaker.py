"""Acceptance 6: a real three-node Pacemaker + Corosync cluster in
namespaces (pcmk.py), a vmhop VM as resource ocf:vmhop:vmhop with
allow-migrate=true. Putting its node in standby live-migrates it (migrate_to
on the source through the vmhop agents, migrate_from on the target); the
heartbeats go on with the next number, monitor reports it running on the
new node, and the guest verifies PASS there when the cluster stops it."""
import os
import re
import time

import cluster as C
import pcmk
import vmhoptest as t

NODES = {}


def node_setup(h):
    NODES[h.name] = pcmk.PcmkNode(h, os.path.join(t.SRCDIR, "contrib", "ocf", "vmhop"))
    return NODES[h.name].mounts()


def hb(path):
    try:
        with open(path, errors="replace") as f:
            return [int(m.group(1)) for m in (re.match(r"^HB seq=(\d+)", x) for x in f) if m]
    except FileNotFoundError:
        return []


def wait_for(what, fn, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise t.TestFailure(f"no {what} within {timeout}s")
        time.sleep(0.5)


def test(c):
    pcmk.need_pacemaker()
    nodes = [NODES[h.name] for h in c.hosts]
    h1 = c.hosts[0]
    run_dir = os.path.join(c.local, "run")   # the same path on every node, each its own
    for h, n in zip(c.hosts, nodes):
        os.makedirs(os.path.join(h.store, "run"))
        n.write_config(c.hosts)
        h.start_agent(run_dir=run_dir)
    for n in nodes:
        n.start()
    out = pcmk.wait_online(nodes[0], 3)
    t.check(True, "corosync and pacemaker run on h1, h2, h3: "
            + " ".join(x.strip() for x in out.splitlines() if "Online" in x))

    f = c.pki
    agents = " ".join(f"{h.name}={h.agent_addr}" for h in c.hosts)
    params = (f'name=vm1 kernel="{t.GUEST}" memory=64M cpus=1 '
              f'cmdline="seconds=0 dirty=4M rate=4M verify=1 hb=100" run_dir="{run_dir}" '
              f'binary="{t.VMHOP}" agents="{agents}" tls_ca="{f("ca.pem")}" '
              f'tls_cert="{f("src.pem")}" tls_key="{f("src.key")}" shutdown_wait=20')
    n1 = nodes[0]
    n1.sh("crm configure property stonith-enabled=false")
    n1.sh(f"crm configure primitive vm1 ocf:vmhop:vmhop params {params} "
          "meta allow-migrate=true op monitor interval=2s timeout=20s "
          "op migrate_to timeout=120s op stop timeout=60s")
    n1.sh("crm configure location vm1-prefers-h1 vm1 50: h1")
    t.check(wait_for("vm1 on h1", lambda: pcmk.where(n1, "vm1") == "h1"),
            "Pacemaker starts vm1 on h1")
    serial1 = os.path.join(h1.store, "run", "vm1.serial")
    wait_for("heartbeats on h1", lambda: len(hb(serial1)) > 5, 60)

    n1.sh("crm node standby h1")
    dest = wait_for("vm1 away from h1",
                    lambda: (lambda w: w if w and w != "h1" else None)(pcmk.where(n1, "vm1")))
    t.check(True, f"h1 in standby: vm1 now runs on {dest}")
    hd = next(h for h in c.hosts if h.name == dest)
    nd = NODES[dest]
    log = nd.tail("log", "pacemaker.log", 400) + n1.tail("log", "pacemaker.log", 400)
    t.check("migrate_to" in log and "migrate_from" in log,
            "the move was a migration (migrate_to, migrate_from in the logs)")
    jobs = c.agent_call(h1, "list-jobs")["return"]["jobs"]
    t.check(any(j["vm"] == "vm1" and j["state"] == "completed" and j["kind"] == "outgoing"
                for j in jobs), "h1's agent live-migrated vm1 (a completed outgoing job)")
    serial2 = os.path.join(hd.store, "run", "vm1.serial")
    before = hb(serial1)
    wait_for("heartbeats on the new node", lambda: len(hb(serial2)) > 3, 60)
    after = hb(serial2)
    t.check(after[0] == before[-1] + 1 or after[0] == before[-1],
            f"heartbeats go on with the next number ({before[-1]} on h1, {after[0]} on {dest})")
    env = " ".join(f"OCF_RESKEY_{k}={v}" for k, v in
                   (("name", "vm1"), ("kernel", t.GUEST), ("run_dir", run_dir),
                    ("binary", t.VMHOP)))
    agent = os.path.join(pcmk.OCF_DIR, "vmhop", "vmhop")
    rc = nd.sh(f"{env} {agent} monitor; echo rc=$?", check=False)
    t.check("rc=0" in rc, f"monitor on {dest} reports vm1 running ({rc.strip()})")
    rc = n1.sh(f"{env} {agent} monitor; echo rc=$?", check=False)
    t.check("rc=7" in rc, f"monitor on h1 reports it not running ({rc.strip()})")

    n1.sh("crm resource stop vm1")
    wait_for("the VERDICT", lambda: any(l.startswith("VERDICT") for l in open(serial2)), 90)
    line = next(l for l in open(serial2) if l.startswith("VERDICT")).strip()
    t.check(line.startswith("VERDICT PASS"), f"vm1 verifies PASS on {dest} ({line})")


def test_dumping(c):
    try:
        test(c)
    except t.TestFailure:
        for name, n in NODES.items():
            print(f"--- {name}: crm_mon", flush=True)
            print(n.sh("crm_mon -1 -r 2>&1 || true", check=False), flush=True)
            print(f"--- {name}: pacemaker.log (vm1)", flush=True)
            lines = [x for x in n.tail("log", "pacemaker.log", 3000).splitlines()
                     if "vm1" in x or "error" in x.lower()]
            print("\n".join(lines[-25:]), flush=True)
            runlog = os.path.join(n.host.store, "run", "vm1.log")
            if os.path.exists(runlog):
                print(f"--- {name}: vm1.log\n" + open(runlog).read()[-2000:], flush=True)
        raise


C.main(3, test_dumping, node_setup=node_setup)
