"""Acceptance 5 and the agent's protocol: a client without a certificate,
with one from another CA, an expired one, or (under --tls-allow) with a subject not
allowed, is refused by `vmhop agent`, which logs why; `vmhop evacuate` with
such a certificate exits 2 naming the agent. A good client gets answers,
and bad requests get one-line errors without harming the agent. Also the
agent's usage errors."""
import json
import signal
import socket
import time

import cluster as C
import vmhoptest as t


def refused(c, h, who, label, log_words):
    before = h.agent_text()
    rc, out, err = c.agent_lines(h, ['{"execute": "ping"}'], who=who)
    t.check(rc != 0 and not out.strip(), f"{label}: the agent refuses the client "
            f"({err.strip().splitlines()[-1] if err.strip() else ''})")
    new = h.agent_text()[len(before):]
    t.check(all(w in new for w in log_words), f"{label}: the agent logs why ({new.strip()})")


def test(c):
    h1, = c.hosts
    f = c.pki

    # Usage errors.
    rc, out, err = h1.vmhop(["agent", "--run-dir", h1.run_dir])
    t.check(rc == 2 and "missing: --listen URI, --tls-ca FILE, --tls-cert FILE, --tls-key FILE" in err,
            f"missing options are named ({err.strip()})")
    tls = ["--tls-ca", f("ca.pem"), "--tls-cert", f("dest.pem"), "--tls-key", f("dest.key")]
    rc, out, err = h1.vmhop(["agent", "--listen", f"tcp:{h1.addr}:0", "--run-dir", h1.run_dir] + tls)
    t.check(rc == 1 and "tls: only" in err, f"a plaintext listener is refused ({err.strip()})")
    rc, out, err = h1.vmhop(["agent", "--listen", "tls:0.0.0.0:0", "--run-dir", h1.run_dir] + tls)
    t.check(rc == 1 and "own address" in err, f"a wildcard address is refused ({err.strip()})")
    rc, out, err = h1.vmhop(["agent", "--listen", f"tls:{h1.addr}:0", "--run-dir", "/nonexistent"] + tls)
    t.check(rc == 2 and "not a directory" in err, f"a missing run directory is refused ({err.strip()})")
    rc, out, err = h1.vmhop(["agent", "--help"])
    t.check(rc == 0 and "--profile-override" in out, "agent --help")

    h1.start_agent()
    r = c.agent_call(h1, "ping")
    t.check(r["return"]["address"] == h1.addr, f"a client with a certificate of the CA is served ({r})")

    # 5. Refusals.
    refused(c, h1, None, "no certificate", ["refused a client", "no certificate"])
    refused(c, h1, "other", "a certificate from another CA",
            ["refused a client", "not signed by the CA"])
    refused(c, h1, "expired", "an expired certificate", ["refused a client", "expired"])
    rc, out, err = h1.vmhop(["evacuate", "--from", h1.agent_addr, "--to", "10.77.0.9",
                             "--tls-ca", f("ca.pem"), "--tls-cert", f("other.pem"),
                             "--tls-key", f("other.key")])
    t.check(rc == 2 and f"agent {h1.agent_addr}" in err,
            f"evacuate with a foreign certificate exits 2 naming the agent ({err.strip()})")
    t.check(c.agent_call(h1, "ping")["return"]["address"] == h1.addr,
            "the agent serves good clients after the refusals")

    # Protocol errors on one connection, which stays usable.
    lines = ["not json", '{"execute": 5}', '{"execute": "ping", "bogus": 1}',
             '{"execute": "nope", "id": 7}',
             '{"execute": "list-vms", "arguments": {"x": 1}}',
             '{"execute": "prepare-incoming", "arguments": {"name": "../etc"}}',
             '{"execute": "prepare-incoming", "arguments": {}}',
             '{"execute": "migrate-vm", "arguments": {"vm": "ghost", "uri": "tls:10.77.0.9:1"}}',
             '{"execute": "query", "arguments": {"id": 999}}',
             '{"execute": "host-profile", "arguments": {"vm": {"memory": "x"}}}',
             '{"execute": "list-vms", "id": "last"}']
    rc, out, err = c.agent_lines(h1, lines)
    replies = [json.loads(x) for x in out.splitlines()]
    t.check(rc == 0 and len(replies) == len(lines), f"one reply per line ({len(replies)})")
    cls = [r.get("error", {}).get("class") for r in replies]
    t.check(cls[:3] == ["InvalidRequest"] * 3, f"malformed requests: InvalidRequest ({cls[:3]})")
    t.check(cls[3] == "CommandNotFound" and replies[3]["id"] == 7,
            "an unknown command: CommandNotFound, with the id")
    t.check(cls[4:7] == ["InvalidParameter"] * 3,
            f"bad arguments and names: InvalidParameter ({[r['error']['desc'] for r in replies[4:7]]})")
    t.check(cls[7] == "GenericError" and "no VM ghost here" in replies[7]["error"]["desc"],
            f"moving a VM that is not here ({replies[7]['error']['desc']})")
    t.check(cls[8] == "GenericError" and "no job 999" in replies[8]["error"]["desc"],
            "querying an unknown job")
    t.check(cls[9] == "InvalidParameter", f"a bad VM description ({replies[9]})")
    t.check(replies[10]["return"]["vms"] == [] and replies[10]["id"] == "last",
            "after all that, list-vms answers: no VMs")

    # A VM appears in list-vms with its size, state and disks.
    vm = h1.run_vm("one", memory="96M")
    vm.wait_line(r"^HB seq=1\b")
    vms = c.agent_call(h1, "list-vms")["return"]["vms"]
    t.check(len(vms) == 1 and vms[0]["name"] == "one" and vms[0]["memory"] == 96 << 20 and
            vms[0]["cpus"] == 1 and vms[0]["status"] == "running" and vms[0]["disks"] == [],
            f"list-vms shows the VM ({ {k: vms[0][k] for k in ('name', 'memory', 'cpus', 'status')} })")
    prof = c.agent_call(h1, "host-profile")["return"]
    t.check(prof["host"]["vcpus_in_use"] == 1, "host-profile counts the vCPUs of the VMs here")

    # Receivers: a name in use is refused, a stale socket is replaced, a
    # receiver can be cancelled.
    r = c.agent_call(h1, "prepare-incoming", {"name": "one"})
    t.check("already runs here" in r.get("error", {}).get("desc", ""),
            f"prepare-incoming for a VM that runs here is refused ({r})")
    s = socket.socket(socket.AF_UNIX)
    s.bind(h1.path("stale.sock"))
    s.close()
    t.check([v["name"] for v in c.agent_call(h1, "list-vms")["return"]["vms"]] == ["one"],
            "list-vms skips a socket nobody answers on")
    r = c.agent_call(h1, "prepare-incoming", {"name": "stale"})["return"]
    t.check(r["uri"].startswith(f"tls:{h1.addr}:") and "stale control socket" in h1.agent_text(),
            f"a stale socket is replaced by a receiver listening on {r['uri']}")
    t.check("error" not in c.agent_call(h1, "cancel", {"id": r["id"]}), "the receiver is cancelled")
    deadline = time.monotonic() + 30
    while (q := c.agent_call(h1, "query", {"id": r["id"]})["return"])["state"] != "failed":
        if time.monotonic() > deadline:
            raise t.TestFailure(f"the cancelled receiver does not end ({q})")
        time.sleep(0.1)
    t.check(q["kind"] == "incoming" and q["error"] == "cancelled",
            f"query: the receiver job failed, cancelled ({q['error']})")

    # --tls-allow: only the named subject.
    h1.kill_agent(signal.SIGTERM)
    t.check(h1.agent.returncode == 0, "the agent exits 0 on SIGTERM")
    t.check(vm.status() == "running", "the VM keeps running when the agent stops")
    h1.start_agent(["--tls-allow", "vmhop-src"])
    refused(c, h1, "rogue", "a subject not in --tls-allow", ["refused a client", "vmhop-rogue"])
    t.check(c.agent_call(h1, "ping")["return"]["address"] == h1.addr,
            "the allowed subject is served")


C.main(1, test)
