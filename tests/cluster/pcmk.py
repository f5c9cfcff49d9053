"""A real Pacemaker + Corosync cluster on the namespace hosts of
cluster.py: each node gets, in its own mount namespace, private /etc/corosync,
/var/lib/{corosync,pacemaker}, /var/log/{cluster,pacemaker}, a tmpfs on /run
and /dev/shm (libqb's ring buffers), and an /usr/lib/ocf/resource.d holding
the vmhop agent under test; its own UTS namespace gives it its host name.
Corosync talks knet over the namespaces' 10.77.0.x addresses; Pacemaker's
local IPC uses abstract unix sockets, which are per network namespace.

Debian's pacemaker, corosync and crmsh must be installed (the test skips
loudly when they are not)."""
import os
import shutil
import subprocess
import sys
import time

import vmhoptest as t

TOOLS = ("corosync", "pacemakerd", "crm", "crm_mon", "cibadmin")
OCF_DIR = "/usr/lib/ocf/resource.d"


def need_pacemaker():
    missing = [x for x in TOOLS if not shutil.which(x)]
    if missing or not os.path.isdir(OCF_DIR):
        print(f"SKIP: Pacemaker test needs Debian's pacemaker, corosync and crmsh "
              f"(missing: {' '.join(missing) or OCF_DIR})", flush=True)
        print("!" * 72, flush=True)
        sys.exit(77)


COROSYNC_CONF = """totem {{
    version: 2
    cluster_name: vmhoptest
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 3000
}}
nodelist {{
{nodes}
}}
quorum {{
    provider: corosync_votequorum
}}
logging {{
    to_logfile: yes
    logfile: {log}/corosync.log
    to_stderr: no
    to_syslog: no
    timestamp: on
}}
"""


class PcmkNode:
    def __init__(self, host, ocf_agent):
        self.host = host
        self.root = os.path.join(host.cluster.tmp, f"pcmk-{host.name}")
        self.dirs = {}
        for d in ("etc/corosync", "var/lib/corosync", "var/lib/pacemaker",
                  "log", "var/log/pacemaker", "ocf"):
            p = os.path.join(self.root, d)
            os.makedirs(p)
            self.dirs[d] = p
        for sub in ("cib", "pengine", "blackbox", "cores"):
            p = os.path.join(self.dirs["var/lib/pacemaker"], sub)
            os.makedirs(p)
            shutil.chown(p, "hacluster", "haclient")
            os.chmod(p, 0o750)
        shutil.chown(self.dirs["var/log/pacemaker"], "hacluster", "haclient")
        prov = os.path.join(self.dirs["ocf"], "vmhop")
        os.makedirs(prov)
        shutil.copy(ocf_agent, os.path.join(prov, "vmhop"))
        os.chmod(os.path.join(prov, "vmhop"), 0o755)
        shutil.copytree(os.path.join(OCF_DIR, "pacemaker"), os.path.join(self.dirs["ocf"], "pacemaker"),
                        symlinks=True)
        self.procs = []

    def mounts(self):
        """Shell commands run once in the node's new mount namespace."""
        m = [f"mount --bind {self.dirs['etc/corosync']} /etc/corosync",
             f"mount --bind {self.dirs['var/lib/corosync']} /var/lib/corosync",
             f"mount --bind {self.dirs['var/lib/pacemaker']} /var/lib/pacemaker",
             f"mount --bind {self.dirs['var/log/pacemaker']} /var/log/pacemaker",
             f"mount --bind {self.dirs['ocf']} {OCF_DIR}",
             "mount -t tmpfs -o mode=755 none /run",
             "mount -t tmpfs -o mode=1777 none /dev/shm",
             # crmsh looks the node names up before it acts on them.
             f"mount --bind {self.hosts_file()} /etc/hosts"]
        return m

    def hosts_file(self):
        path = os.path.join(self.root, "hosts")
        with open(path, "w") as f:
            f.write("127.0.0.1 localhost\n")
            for i in range(1, 10):
                f.write(f"10.77.0.{i} h{i}\n")
        return path

    def write_config(self, hosts):
        nodes = "\n".join(f"    node {{\n        ring0_addr: {h.addr}\n        name: {h.name}\n"
                          f"        nodeid: {h.i}\n    }}" for h in hosts)
        with open(os.path.join(self.dirs["etc/corosync"], "corosync.conf"), "w") as f:
            f.write(COROSYNC_CONF.format(nodes=nodes, log=self.dirs["log"]))
        key = os.path.join(self.dirs["etc/corosync"], "authkey")
        with open(key, "wb") as f:
            f.write(os.urandom(256))
        os.chmod(key, 0o400)

    def start(self):
        h = self.host
        log = open(os.path.join(self.root, "daemons.log"), "a")
        for argv, env in ((["corosync", "-f"], {}),
                          (["pacemakerd"], {"PCMK_logfile": os.path.join(self.dirs["log"], "pacemaker.log"),
                                            "PCMK_debug": "no"})):
            if argv[0] == "pacemakerd":
                self.wait_corosync()
            e = dict(os.environ)
            e.update(env)
            p = subprocess.Popen(h.argv(argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                 env=e)
            self.procs.append(p)
            h.cluster.procs.append(p)

    def wait_corosync(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            p = subprocess.run(self.host.argv(["corosync-cfgtool", "-s"]), capture_output=True,
                               text=True)
            if p.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise t.TestFailure(f"{self.host.name}: corosync did not start: {p.stderr.strip()}"
                                    f" {self.tail('log', 'corosync.log')}")
            time.sleep(0.2)

    def tail(self, d, name, n=15):
        try:
            with open(os.path.join(self.dirs[d], name), errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except (FileNotFoundError, KeyError):
            return ""

    def sh(self, cmd, timeout=60, check=True):
        p = subprocess.run(self.host.argv(["sh", "-c", cmd]), capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise t.TestFailure(f"{self.host.name}: {cmd}: {p.stderr.strip() or p.stdout.strip()}")
        return p.stdout


def setup(cluster, ocf_agent):
    """Pacemaker nodes on every host of cluster (its mount and UTS
    namespaces are made here: call before anything else runs there)."""
    need_pacemaker()
    nodes = [PcmkNode(h, ocf_agent) for h in cluster.hosts]
    for n in nodes:
        n.write_config(cluster.hosts)
    return nodes


def wait_online(node, count, timeout=90):
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = node.sh("crm_mon -1 -r 2>&1 || true", check=False)
        for line in out.splitlines():
            if "Online:" in line and line.count(" h") >= count:
                return out
        time.sleep(0.5)
    raise t.TestFailure(f"the cluster did not come up with {count} nodes online:\n{out}\n"
                        f"{node.tail('log', 'pacemaker.log', 30)}")


def where(node, rsc):
    """The node rsc runs on per crm_resource, or None."""
    out = node.sh(f"crm_resource --locate --resource {rsc} 2>&1 || true", check=False)
    for line in out.splitlines():
        if "is running on:" in line:
            return line.rsplit(":", 1)[1].strip()
    return None
