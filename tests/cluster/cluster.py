"""Namespace hosts for vmhop's cluster tests (python3 stdlib only).

A Cluster makes N hosts on this machine: one network namespace each (eth0,
10.77.0.<i>/24), joined by veth pairs to a bridge in a namespace of its own,
and one mount namespace each, in which the cluster's `local` directory is
that host's own (a bind mount of store-h<i>): a disk there is on local
storage, unreachable from the other hosts, while the run directories are
shared. Each host has a run directory and, on request, a `vmhop agent`. Names carry the
test process's pid ("vh<pid hex>-h1", ...) so parallel `make check` jobs do
not collide, and a run that crashed is cleaned up by the next one (its pid
is gone). Everything is torn down in close(), which Cluster's context
manager, atexit and SIGTERM all reach, also when a test fails.

Only the namespaces' own addresses are used: nothing is added to the root
namespace's network."""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import vmhoptest as t  # noqa: E402

AGENT_PORT = 7070
NS_RX = re.compile(r"^vh([0-9a-f]{6})-(sw|h\d+)\b")
TMP_RX = re.compile(r"/vmhop-cluster-([0-9a-f]{6})-[^/ ]*")


def need_root_and_kvm():
    t.need_kvm()
    if os.geteuid() != 0 or not all(shutil.which(x) for x in ("ip", "nsenter", "unshare")):
        print("SKIP: cluster tests need root, iproute2 and util-linux (namespaces)", flush=True)
        print("!" * 72, flush=True)
        sys.exit(77)


def run(cmd, check=True, timeout=60):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise t.TestFailure(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_netns(ns):
    """SIGKILL every process in namespace ns, then delete it."""
    p = run(["ip", "netns", "pids", ns], check=False)
    for pid in p.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    for _ in range(50):
        if not run(["ip", "netns", "pids", ns], check=False).stdout.strip():
            break
        time.sleep(0.05)
    run(["ip", "netns", "del", ns], check=False)


def clean_leftovers():
    """Namespaces, mounts and directories of earlier runs whose test
    process is gone."""
    p = run(["ip", "netns", "list"], check=False)
    for line in p.stdout.splitlines():
        m = NS_RX.match(line)
        if m and not _alive(int(m.group(1), 16)):
            kill_netns(line.split()[0])
    dirs = set()
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for mp in reversed(mounts):
        m = TMP_RX.search(mp)
        if m and not _alive(int(m.group(1), 16)):
            run(["umount", "-l", mp], check=False)
            dirs.add(mp[:m.end()])
    tmp = tempfile.gettempdir()
    for d in os.listdir(tmp):
        m = TMP_RX.search("/" + d)
        if m and not _alive(int(m.group(1), 16)):
            dirs.add(os.path.join(tmp, d))
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


class Host:
    def __init__(self, cluster, i):
        self.cluster = cluster
        self.i = i
        self.name = f"h{i}"
        self.ns = f"{cluster.prefix}-h{i}"
        self.addr = f"10.77.0.{i}"
        self.agent_addr = f"{self.addr}:{AGENT_PORT}"
        self.run_dir = os.path.join(cluster.tmp, self.name)
        os.makedirs(self.run_dir)
        self.store = os.path.join(cluster.tmp, f"store-{self.name}")
        os.makedirs(self.store)
        self.mntns = os.path.join(cluster.mnt, self.name)
        self.utsns = os.path.join(cluster.mnt, f"{self.name}.uts")
        self.agent = None
        self.agent_log = os.path.join(cluster.tmp, f"{self.name}-agent.log")

    def path(self, name):
        return os.path.join(self.run_dir, name)

    def argv(self, args):
        return ["nsenter", f"--net=/run/netns/{self.ns}", f"--mount={self.mntns}",
                f"--uts={self.utsns}", "--"] + list(args)

    def local(self, name):
        """A path on this host's local storage (cluster.local), as its
        processes see it; the file is store-h<i>/name from outside."""
        return os.path.join(self.cluster.local, name)

    def start_agent(self, extra=(), pki=None, run_dir=None):
        c = self.cluster
        f = pki or c.pki
        args = [t.VMHOP, "agent", "--listen", f"tls:{self.agent_addr}", "--run-dir",
                run_dir or self.run_dir, "--tls-ca", f("ca.pem"), "--tls-cert", f("dest.pem"),
                "--tls-key", f("dest.key")] + list(extra)
        start = len(self.agent_text())   # the log is kept across restarts
        self.agent_err = open(self.agent_log, "a")
        self.agent = subprocess.Popen(self.argv(args), stdout=subprocess.DEVNULL,
                                      stderr=self.agent_err, stdin=subprocess.DEVNULL)
        c.procs.append(self.agent)
        deadline = time.monotonic() + t.BOOT_TIMEOUT
        while "listening on" not in self.agent_text()[start:]:
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise t.TestFailure(f"{self.name}: the agent did not start: {self.agent_text()}")
            time.sleep(0.02)
        return self.agent

    def agent_text(self):
        try:
            with open(self.agent_log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def kill_agent(self, sig=signal.SIGKILL):
        if self.agent and self.agent.poll() is None:
            self.agent.send_signal(sig)
            self.agent.wait()

    def run_vm(self, name, memory="64M", cmdline="seconds=0 dirty=4M rate=4M verify=1 hb=100",
               extra=()):
        """`vmhop run` in this host's namespace, its control socket and serial
        log in the run directory (where the agent finds it)."""
        vm = GuestVm(self, name)
        args = [t.VMHOP, "run", "--kernel", t.GUEST, "--cpus", "1", "--memory", memory,
                "--name", name, "--cmdline", cmdline, "--serial", f"file:{vm.serial_path}",
                "--control", vm.control] + list(extra)
        vm.start(self.argv(args))
        self.cluster.procs.append(vm.proc)
        return vm

    def vmhop(self, args, timeout=120, env=None):
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.run(self.argv([t.VMHOP] + list(args)), capture_output=True, text=True,
                           timeout=timeout, env=e, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr


class GuestVm:
    """A guest known by its name: its files are in some host's run
    directory (the one it runs on now)."""

    def __init__(self, host, name):
        self.name = name
        self.host = host
        self.proc = None
        self.err_path = host.path(f"{name}.stderr")

    @property
    def control(self):
        return self.host.path(f"{self.name}.sock")

    @property
    def serial_path(self):
        return self.host.path(f"{self.name}.serial")

    def start(self, argv):
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.err,
                                     stdin=subprocess.DEVNULL)

    def serial(self):
        try:
            with open(self.serial_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_line(self, pattern, timeout=t.BOOT_TIMEOUT, after=0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in (rx.search(x) for x in self.serial().splitlines()) if m]
            if len(found) > after:
                return found[after]
            if time.monotonic() > deadline:
                raise t.TestFailure(f"{self.name} on {self.host.name}: no /{pattern}/ within {timeout}s")
            time.sleep(0.05)

    def ctl(self, cmd, timeout=10, **args):
        req = {"execute": cmd}
        if args:
            req["arguments"] = args
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.control)
            s.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        finally:
            s.close()
        return json.loads(buf.split(b"\n", 1)[0])

    def status(self):
        try:
            return self.ctl("query-status")["return"]["status"]
        except (OSError, ValueError, KeyError):
            return None

    def moved_to(self, host):
        self.host = host

    def verdict(self, timeout=t.EXIT_TIMEOUT):
        """Asks the guest to power off and returns its VERDICT line."""
        self.ctl("shutdown")
        m = self.wait_line(r"^VERDICT (PASS|FAIL)(.*)", timeout=timeout)
        return m.group(1), m.group(0)


class Cluster:
    def __init__(self, n, pki=True, node_setup=None):
        need_root_and_kvm()
        clean_leftovers()
        self.prefix = "vh%06x" % os.getpid()
        self.tmp = tempfile.mkdtemp(prefix="vmhop-cluster-%06x-" % os.getpid())
        self.mnt = os.path.join(self.tmp, "mnt")
        self.local = os.path.join(self.tmp, "local")
        self.mounted = []
        self.node_setup = node_setup
        self.procs = []
        self.namespaces = []
        self.closed = False
        atexit.register(self.close)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        try:
            self._net(n)
            self._mounts()
            self.pki = self._make_pki() if pki else None
        except BaseException:
            self.close()
            raise

    def _mounts(self):
        """A private mount point holding one mount namespace file per
        host; in each, `local` is that host's store."""
        os.makedirs(self.mnt)
        os.makedirs(self.local)
        run(["mount", "--bind", self.mnt, self.mnt])
        self.mounted.append(self.mnt)
        run(["mount", "--make-private", self.mnt])
        for h in self.hosts:
            open(h.mntns, "w").close()
            open(h.utsns, "w").close()
            setup = [f"hostname {h.name}", f"mount --bind {h.store} {self.local}"]
            setup += self.node_setup(h) if self.node_setup else []
            run(["unshare", f"--mount={h.mntns}", f"--uts={h.utsns}", "--propagation", "private",
                 "sh", "-ec", "; ".join(setup)])
            self.mounted += [h.mntns, h.utsns]

    def _net(self, n):
        sw = f"{self.prefix}-sw"
        run(["ip", "netns", "add", sw])
        self.namespaces.append(sw)
        run(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", sw, "link", "set", "br0", "up"])
        self.hosts = []
        for i in range(1, n + 1):
            h = Host(self, i)
            run(["ip", "netns", "add", h.ns])
            self.namespaces.append(h.ns)
            port = f"{self.prefix}h{i}"
            run(["ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                 "netns", h.ns])
            run(["ip", "-n", sw, "link", "set", port, "master", "br0", "up"])
            run(["ip", "-n", h.ns, "addr", "add", f"{h.addr}/24", "dev", "eth0"])
            run(["ip", "-n", h.ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", h.ns, "link", "set", "lo", "up"])
            self.hosts.append(h)

    def _make_pki(self):
        d = os.path.join(self.tmp, "pki")
        script = os.path.join(t.SRCDIR, "contrib", "make-test-ca.sh")
        names = [h.addr for h in self.hosts]
        p = subprocess.run(["sh", script, d] + names, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise t.TestFailure(f"make-test-ca.sh failed: {p.stderr.strip()}")
        return lambda name: os.path.join(d, name)

    def client_tls(self, who="src"):
        f = self.pki
        return ["--tls-ca", f("ca.pem"), "--tls-cert", f(f"{who}.pem"), "--tls-key",
                f(f"{who}.key")]

    def evacuate(self, host, args, timeout=180):
        """`vmhop evacuate --json ARGS` run on host; (rc, report or None, out, err)."""
        rc, out, err = host.vmhop(["evacuate", "--json"] + self.client_tls() + list(args),
                                  timeout=timeout)
        lines = out.strip().splitlines()
        try:
            report = json.loads(lines[-1]) if lines else None
        except ValueError:
            report = None
        return rc, report, out, err

    def agent_lines(self, host, lines, who="src", timeout=30):
        """Sends raw request lines to host's agent from Python's ssl (a
        foreign client), inside host's namespace; who names the client
        certificate (None: none). Returns (rc, stdout, stderr) of the
        helper: stdout holds the reply lines, stderr the TLS error."""
        f = self.pki
        cert = f"c.load_cert_chain({f(who + '.pem')!r},{f(who + '.key')!r})\n" if who else ""
        code = (
            "import socket,ssl,sys\n"
            "c=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
            "c.minimum_version=ssl.TLSVersion.TLSv1_3\n"
            f"c.load_verify_locations({f('ca.pem')!r})\n"
            + cert +
            f"s=socket.create_connection(({host.addr!r},{AGENT_PORT}),timeout={timeout})\n"
            f"s=c.wrap_socket(s,server_hostname={host.addr!r})\n"
            f"lines={list(lines)!r}\n"
            "b=b''\n"
            "d=b'x'\n"
            "for i,l in enumerate(lines):\n"
            "    s.sendall(l.encode()+b'\\n')\n"
            "    while b.count(b'\\n')<i+1:\n"
            "        d=s.recv(65536)\n"
            "        if not d: break\n"
            "        b+=d\n"
            "    if not d: break\n"
            "sys.stdout.write(b.decode())\n")
        p = subprocess.run(host.argv([sys.executable, "-c", code]), capture_output=True,
                           text=True, timeout=timeout + 10)
        return p.returncode, p.stdout, p.stderr

    def agent_call(self, host, cmd, args=None, who="src", timeout=30):
        """One request to host's agent; the parsed reply."""
        req = {"execute": cmd, "id": 1}
        if args is not None:
            req["arguments"] = args
        rc, out, err = self.agent_lines(host, [json.dumps(req)], who, timeout)
        if rc != 0 or not out.strip():
            raise t.TestFailure(f"agent {host.name} {cmd}: {err.strip()[-300:]}")
        return json.loads(out.splitlines()[0])

    def sanitizer_reports(self):
        """Stops the agents with SIGTERM (so a leak check runs at their
        exit) and returns the sanitizer reports in the agents' and jobs'
        logs."""
        for h in self.hosts:
            h.kill_agent(signal.SIGTERM)
        found = []
        for h in self.hosts:
            files = [h.agent_log] + [h.path(f) for f in os.listdir(h.run_dir)
                                     if f.endswith(".log") or f.endswith(".stderr")]
            for path in files:
                try:
                    with open(path, errors="replace") as f:
                        text = f.read()
                except FileNotFoundError:
                    continue
                for m in re.finditer(r"^.*(Sanitizer|runtime error:).*$", text, re.M):
                    found.append(f"{os.path.basename(path)}: {m.group(0)}")
                if re.search(r"Sanitizer|runtime error:", text):
                    i = re.search(r"^.*(Sanitizer|runtime error:)", text, re.M).start()
                    print(f"--- {path}:\n{text[i:i + 6000]}", flush=True)
        return found

    def close(self):
        if self.closed:
            return
        self.closed = True
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        # Receivers the agents started are not our children: the
        # namespaces' process lists find them.
        for ns in reversed(self.namespaces):
            kill_netns(ns)
        for mp in reversed(self.mounted):
            run(["umount", "-l", mp], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def dump(self):
        for h in self.hosts:
            print(f"--- {h.name} agent log:", flush=True)
            print("\n".join(h.agent_text().splitlines()[-30:]), flush=True)
            for fn in sorted(os.listdir(h.run_dir)):
                if fn.endswith(".log") or fn.endswith(".stderr"):
                    with open(h.path(fn), errors="replace") as f:
                        tail = f.read().splitlines()[-8:]
                    print(f"--- {h.name}/{fn}:\n" + "\n".join(tail), flush=True)


def main(n, fn, pki=True, node_setup=None):
    """Runs fn(cluster) with n hosts; exit 0 (pass), 1 (fail), 77 (skip).
    node_setup(host) may return shell commands run once in each host's new
    mount and UTS namespaces (extra mounts)."""
    need_root_and_kvm()
    cluster = Cluster(n, pki=pki, node_setup=node_setup)
    try:
        fn(cluster)
        reports = cluster.sanitizer_reports()
        if reports:
            raise t.TestFailure("sanitizer reports: " + "; ".join(reports[:5]))
        t.ok("no sanitizer reports from the agents and their jobs")
    except t.TestFailure as e:
        print(f"FAIL: {e}", flush=True)
        cluster.dump()
        cluster.close()
        sys.exit(1)
    finally:
        cluster.close()
    print("PASS", flush=True)
    sys.exit(0)
