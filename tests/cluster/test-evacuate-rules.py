"""Acceptance 3 of `vmhop evacuate`: the agents of h2 and h3 answer
profile overrides (512 MiB of memory each; h2's vmhop does not list the
baseline CPU model). A baseline guest avoids h2, a host-model guest goes
there, and a 1 GiB guest fits nowhere: it is reported with the reason and
keeps running on h1 (PASS), and evacuate exits non-zero. Also the
8x-vCPU-overcommit warning shows in the plan when a target is full of
vCPUs."""
import json

import cluster as C
import vmhoptest as t

MiB = 1 << 20


def override(c, host, models=None, mem=512 * MiB, cores=None, vcpus=None):
    rc, out, err = host.vmhop(["host-profile", "--json"])
    if rc != 0:
        raise t.TestFailure(f"host-profile on {host.name}: {err.strip()}")
    p = json.loads(out)
    p["host"]["mem_total"] = p["host"]["mem_available"] = mem
    if models is not None:
        p["cpu_models"] = models
    if cores is not None:
        p["host"]["cores"] = cores
    if vcpus is not None:
        p["host"]["vcpus_in_use"] = vcpus
    path = host.path("profile-override.json")
    with open(path, "w") as f:
        json.dump(p, f)
    return path, p


def test(c):
    h1, h2, h3 = c.hosts
    h1.start_agent()
    path, p2 = override(c, h2, models=[m for m in json.loads(h2.vmhop(
        ["host-profile", "--json"])[1])["cpu_models"] if m != "baseline"])
    t.check("baseline" not in p2["cpu_models"], f"h2's override lists {p2['cpu_models']}")
    h2.start_agent(["--profile-override", path])
    path3, _ = override(c, h3)
    h3.start_agent(["--profile-override", path3])
    t.check("profile from" in h2.agent_text(), "h2's agent says where its profile comes from")

    picky = h1.run_vm("picky")                                  # baseline, 64M
    plain = h1.run_vm("plain", extra=["--cpu-model", "host"])   # 64M
    huge = h1.run_vm("huge", memory="1G", extra=["--cpu-model", "host"])
    for vm in (picky, plain, huge):
        vm.wait_line(r"^HB seq=3\b")

    args = ["--from", h1.agent_addr, "--to", f"{h2.agent_addr},{h3.agent_addr}",
            "--parallel", "2"]
    rc, dry, out, err = c.evacuate(h1, args + ["--dry-run"])
    t.check(rc == 1 and dry, f"--dry-run with a VM that fits nowhere exits 1 (rc {rc})")
    rc, rep, out, err = c.evacuate(h1, args)
    print(err.rstrip(), flush=True)
    t.check(rc == 1 and rep and not rep["empty"] and rep["remaining"] == 1,
            f"evacuate exits 1 and h1 keeps one VM (rc {rc}, remaining {rep and rep['remaining']})")
    v = {x["name"]: x for x in rep["vms"]}
    t.check(v["picky"]["result"] == "moved" and v["picky"]["target"] == h3.agent_addr,
            f"the baseline guest avoided h2 and moved to h3 ({v['picky']['target']})")
    t.check(f"{h2.agent_addr}: cpu-model: CPU model baseline is not among" in v["picky"]["avoided"]
            and "avoided " + h2.agent_addr in err,
            f"the plan says why h2 was avoided ({v['picky']['avoided']})")
    t.check(v["plain"]["result"] == "moved" and v["plain"]["target"] == h2.agent_addr,
            f"the host-model guest moved to h2 ({v['plain']['target']})")
    t.check(v["huge"]["result"] == "nowhere" and v["huge"]["target"] is None,
            "the 1 GiB guest is reported as fitting nowhere")
    why = v["huge"].get("reason", "")
    t.check("memory" in why and h2.agent_addr in why and h3.agent_addr in why,
            f"with the reason for each target ({why})")
    t.check("huge" in err and "(nowhere)" in err and "still runs 1 VM: huge" in err,
            "the printed plan and the end say so")
    t.check(huge.status() == "running", "the 1 GiB guest keeps running on h1")
    jobs = c.agent_call(h1, "list-jobs")["return"]["jobs"]
    t.check(sorted(j["vm"] for j in jobs) == ["picky", "plain"],
            "no move was even tried for the guest that fits nowhere")

    picky.moved_to(h3)
    plain.moved_to(h2)
    for vm in (picky, plain, huge):
        verdict, line = vm.verdict()
        t.check(verdict == "PASS", f"{vm.name} verifies PASS on {vm.host.name} ({line})")

    # The overcommit warning: h3 claims 1 core with 8 vCPUs in use.
    h3.kill_agent()
    path3, _ = override(c, h3, cores=1, vcpus=8, mem=4096 * MiB)
    h3.start_agent(["--profile-override", path3])
    h1.run_vm("busy", extra=["--cpu-model", "host"]).wait_line(r"^HB seq=1\b")
    rc, dry, out, err = c.evacuate(h1, ["--from", h1.agent_addr, "--to", h3.agent_addr,
                                        "--dry-run"])
    w = dry["vms"][0]["warnings"] if dry and dry["vms"] else ""
    t.check(rc == 0 and "vcpu-overcommit" in w and "more than 8 per core" in w,
            f"a target over 8 vCPUs per core is used with a warning ({w})")
    t.check("warning: vcpu-overcommit" in err, "the printed plan shows the warning")


C.main(3, test)
