"""Issue 2, acceptance 3: pause stops heartbeats, resume restarts them,
query-status answers while paused, garbage gets an error and the VM runs on;
shutdown asks the guest, quit stops at once."""
import time

import vmhoptest as t


def test(ctx):
    vm = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "256M", "--name", "ctl-test",
                     "--cmdline", "seconds=0 dirty=32M rate=50M hb=50"])
    vm.wait_line(r"^HB seq=3\b")
    st = vm.ctl("query-status")
    t.check(st.get("return", {}).get("status") == "running", f"query-status says running ({st})")

    r = vm.ctl("pause")
    t.check("return" in r, f"pause accepted ({r})")
    n = len(vm.heartbeats())
    time.sleep(1.0)
    t.check(len(vm.heartbeats()) == n, "no heartbeat while paused (1 s at 50 ms period)")
    st = vm.ctl("query-status")
    t.check(st.get("return", {}).get("status") == "paused", f"query-status answers while paused ({st})")

    for garbage in (b"{{{ not json\n", b"[1,2,3]\n", b'{"execute": 5}\n', b'{"execute":"no-such-command"}\n'):
        r = vm.ctl_raw(garbage)
        t.check("error" in r and r["error"].get("desc"), f"garbage {garbage!r} gets an error: {r['error']}")
    st = vm.ctl("query-status")
    t.check(st.get("return", {}).get("status") == "paused", "still paused after garbage")

    r = vm.ctl("resume")
    t.check("return" in r, "resume accepted")
    vm.wait_line(r"^HB seq=", after=n)
    t.check(True, "heartbeats restart after resume")
    r = vm.ctl_raw(b"\x00\xff garbage while running\n")
    t.check("error" in r, "garbage while running gets an error")
    vm.wait_line(r"^HB seq=", after=n + 3)
    hbs = vm.heartbeats()
    t.check(hbs == list(range(1, len(hbs) + 1)), "heartbeat sequence stays consecutive across the pause")

    cfg = vm.ctl("query-config").get("return", {})
    t.check(cfg.get("name") == "ctl-test", f"query-config returns the VM's configuration ({cfg.get('name')})")

    r = vm.ctl("shutdown")
    t.check("return" in r, "shutdown accepted")
    rc = vm.wait_exit()
    verdict = vm.wait_line(r"^VERDICT (PASS|FAIL)")
    t.check(verdict.group(1) == "PASS", "the guest shut down cleanly with VERDICT PASS")
    t.check(rc == 0, f"exit 0 after a guest shutdown (rc={rc})")

    vm2 = ctx.run_vm(["--kernel", t.GUEST, "--memory", "128M", "--cmdline", "seconds=0"])
    vm2.wait_line(r"^HB seq=2\b")
    r = vm2.ctl("quit")
    t.check("return" in r, "quit accepted")
    rc = vm2.wait_exit()
    t.check(rc == 0, f"quit stops the VM with exit 0 (rc={rc})")
    t.check(not vm2.lines(r"^VERDICT"), "quit does not wait for the guest")


t.main(test)
