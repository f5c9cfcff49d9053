"""Issue 2, acceptance 1: the test guest boots with 2 vCPUs and 1 GiB, both
vCPUs run the memory workload, heartbeats appear, VERDICT PASS, exit 0."""
import vmhoptest as t


def test(ctx):
    vm = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "1G", "--name", "smp",
                     "--cmdline", "seconds=3 dirty=64M rate=100M hb=100"], control=False)
    rc = vm.wait_exit()
    start = vm.wait_line(r"^VMHOP-GUEST start cpus=(\d+) mem_mib=(\d+)")
    t.check(start.group(1) == "2", "the guest found 2 vCPUs")
    t.check(abs(int(start.group(2)) - 1024) <= 2, f"the guest sees ~1024 MiB (reported {start.group(2)})")
    hbs = vm.heartbeats()
    t.check(len(hbs) >= 10, f"heartbeats on the serial console ({len(hbs)} over ~3 s)")
    t.check(hbs == list(range(1, len(hbs) + 1)), "heartbeat sequence numbers are consecutive from 1")
    verdict = vm.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"guest verdict PASS ({verdict.group(0)})")
    t.check("cpus=2" in verdict.group(2), "both vCPUs ran the workload")
    t.check(rc == 0, f"vmhop run exits 0 after the guest powers off (rc={rc})")


t.main(test)
