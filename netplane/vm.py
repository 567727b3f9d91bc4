"""Run a command under another kernel: Debian 12's 6.1, booted with virtme-ng.

This machine's kernel has no IPVS. The VM tier (tests/vm, `make test-vm`)
and anything else that needs IPVS runs under Debian's own 6.1 kernel in
qemu instead, started by virtme-ng (`vng`), which shares this machine's
files with the guest. So the venv and netplane run there as they are.

Theory of operation:

1. The kernel. scripts/bootstrap unpacks Debian's linux-image package, not
   installed, into <venv>/share/netplane/vm-kernel/: boot/vmlinuz-V and
   lib/modules/V, indexed by depmod. Given that image, virtme-ng walks up
   from its path to the folder holding lib/modules. The folder is not `/`,
   so virtme-ng puts the 9p and virtio modules from there into the
   initramfs it makes, and asks the guest's init (virtme_link_mods=) to
   mount a tmpfs on /lib/modules and link V to that folder. `modprobe`
   then works in the guest, and /lib/modules here is never touched.
2. The files. The guest's root is this machine's `/` over 9p, read-only
   and uncached. virtme-ng lays private overlays over /etc, /var, /tmp and
   a few others (we add /root), so writes there are lost when the VM
   stops. /usr and the venv (CACHED) are shared a second time, read-only
   and cached, and mounted over their paths first: uncached, every exec
   and import reads its pages over 9p anew. The new /usr hides the
   modules' link, so the line makes it again. The working tree stays
   read-only: what must come back to this machine (a JUnit report,
   benchmark JSON) goes to the `rwdirs`, shared read-write at their paths.
3. The command. `vng --exec` runs one shell line as root in `cwd`. It
   does not take this process's environment, so the line sets what the
   command gets (PATH with the venv first, NETPLANE_VM=1, `env`) itself,
   after it loads the modules netplane's IPVS mode relies on (MODULES).
4. Output and exit status. virtme-ng carries the command's stdout, stderr
   and exit status over virtio-serial ports. The guest's init starts this
   machine's udevd (Debian's `udev` package) to give the ports their names;
   without it, the output goes to the kernel console and the status is
   lost (vng then exits 255). qemu reopens its fd 1 and 2 by path with
   O_TRUNC, which would empty a log file they point at, so it always gets
   pipes, copied here as the output arrives.
5. Time limits. vng runs `sh -c virtme-run ...`, which forks qemu. On a
   timeout or Ctrl-C, that chain, found by parent pid, is stopped by pid,
   qemu first; virtme-run then removes its temporary file and returns.

KVM hangs on this kind of machine, so qemu emulates (--disable-kvm): the
boot takes 25 s (up to 60 s while another VM runs), and code in the guest
runs some 40 times slower than here; `python -c pass` takes about 4 s.
"""
import argparse
import contextlib
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

from netplane import sandbox

VM_KERNEL = Path(sys.prefix, "share", "netplane", "vm-kernel")
VNG = Path(sys.prefix, "bin", "vng")
# Set inside the VM for the command; the VM tier runs only where it is set.
VM_ENV = "NETPLANE_VM"
# IPVS with the schedulers netplane may pick; br_netfilter, which Debian
# builds as a module: without it a reply between two pods on one bridge
# skips conntrack, and Service traffic between pods of one node times out.
MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_sh", "ip_vs_mh",
           "nf_conntrack", "br_netfilter")
# Shared again with the guest, cached there (9p cache=loose), see step 2:
# measured here, `import pytest` took 46 s in the guest, 12-16 s with these
# two cached. The guest sees them as they were at boot.
CACHED = ("/usr", sys.prefix)
_9P = "trans=virtio,version=9p2000.L,access=any,msize=512000"
TIMED_OUT = 124                 # as timeout(1) reports it
# qemu emulates without KVM: the guest's waits (sandbox.TIMEOUT_SCALE) are this much longer
GUEST_TIMEOUT_SCALE = "8"
# What the guest prints on stderr once the modules are in, just before the
# command starts; replaced here by the boot time (see _copy_stderr).
_BOOTED = b"netplane.vm: booted "
# vng joins its arguments into one shell line without quoting paths.
_PLAIN_PATH = re.compile(r"[\w./+-]+")

# What vng needs from this machine, besides itself and the kernel, and why.
_HOST_TOOLS = (
    ("qemu-system-x86_64", "qemu-system-x86", "the virtual machine"),
    ("busybox", "busybox-static", "virtme-ng's initramfs"),
    ("modprobe", "kmod", "loading modules in the guest"),
    ("/lib/systemd/systemd-udevd", "udev", "naming the ports the guest's output comes through"),
)


def kernel() -> Path | None:
    """The VM's kernel image that scripts/bootstrap unpacked, if any."""
    images = sorted(glob.glob(str(VM_KERNEL / "boot" / "vmlinuz-*")))
    return Path(images[-1]) if images else None


def available() -> str | None:
    """None when a VM can be booted here; otherwise why not."""
    if kernel() is None:
        return f"no kernel image under {VM_KERNEL}/boot: run scripts/bootstrap"
    if not VNG.exists():
        return f"virtme-ng is not installed ({VNG} is missing): run scripts/bootstrap"
    for tool, package, why in _HOST_TOOLS:
        if not (os.access(tool, os.X_OK) if tool.startswith("/") else shutil.which(tool)):
            return f"{tool} is missing (Debian package {package}, for {why}): run scripts/bootstrap"
    return None


def kernel_has_ipvs() -> bool:
    """Whether the running kernel has IPVS: loaded, built in, or a module it
    could load. Reads files only; nothing is loaded to find out."""
    if os.path.exists("/proc/net/ip_vs"):
        return True
    modules = f"/lib/modules/{os.uname().release}"
    for index in ("modules.builtin", "modules.dep"):
        with contextlib.suppress(OSError), open(f"{modules}/{index}") as f:
            if re.search(r"(^|/)ip_vs\.ko", f.read(), re.M):
                return True
    return False


def in_vm() -> bool:
    """Whether this process runs inside a VM that run() booted."""
    return os.environ.get(VM_ENV) == "1"


def run(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None,
        rwdirs: Sequence[str] = (), cwd: str | None = None, memory: str = "4G", cpus: int = 2) -> int:
    """Boot the VM, run argv in it as root in cwd (default: here), and return
    its exit status: TIMED_OUT after `timeout` seconds, boot included, or 255
    when the VM died before the command finished. Its output streams to
    this process's stdout and stderr; `rwdirs` are the guest's only
    writable paths that reach this machine. Raises RuntimeError when no VM
    can be booted here (see available())."""
    reason = available()
    if reason:
        raise RuntimeError(f"cannot boot the VM: {reason}")
    cwd = os.path.abspath(cwd or os.getcwd())
    rwdirs = [os.path.abspath(d) for d in rwdirs]
    for path in (cwd, *rwdirs):
        if not _PLAIN_PATH.fullmatch(path):
            raise ValueError(f"vng cannot pass this path to the guest (spaces, quotes or '='): {path!r}")
    for d in rwdirs:
        os.makedirs(d, exist_ok=True)       # the guest mounts it, so it must exist here
        if any(d == c or d.startswith(c + "/") for c in CACHED):
            raise ValueError(f"{d} is under {CACHED}, which the guest sees as a snapshot")
    vng = [str(VNG), "--run", str(kernel()), "--disable-kvm", "--user", "root",
           "--cpus", str(cpus), "--memory", memory, "--cwd", cwd, "--overlay-rwdir", "/root",
           *(arg for d in rwdirs for arg in ("--rwdir", d)),
           "--qemu-opts=" + " ".join(f"-fsdev local,id=np{i},path={path},security_model=none,readonly=on,"
                                     f"multidevs=remap -device virtio-9p-pci,fsdev=np{i},mount_tag=np-cache{i}"
                                     for i, path in enumerate(CACHED)),
           "--exec", guest_command(argv, env or {})]
    # vng runs virtme-run by name; its own session, so that a Ctrl-C on
    # the terminal reaches only this process, which then stops the VM.
    path = f"{VNG.parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    proc = subprocess.Popen(vng, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PATH": path}, start_new_session=True)
    started = time.monotonic()
    copiers = [threading.Thread(target=_copy, args=(proc.stdout, sys.stdout.buffer), daemon=True),
               threading.Thread(target=_copy_stderr, args=(proc.stderr, sys.stderr.buffer, started), daemon=True)]
    for copier in copiers:
        copier.start()
    try:
        status = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        sys.stderr.write(f"netplane.vm: timed out after {timeout:.0f} s; stopping the VM\n")
        status = TIMED_OUT
    finally:
        stop(proc)
        for copier in copiers:
            copier.join(5)
    return status


def guest_command(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The shell line the guest runs: mount CACHED, load the modules, say
    so, run argv."""
    guest_env = {"PATH": f"{VNG.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 VM_ENV: "1", "PYTHONUNBUFFERED": "1", "NETPLANE_TIMEOUT_SCALE": GUEST_TIMEOUT_SCALE, **env}
    mounts = [shlex.join(["mount", "-t", "9p", "-o", f"ro,cache=loose,{_9P}", f"np-cache{i}", path])
              for i, path in enumerate(CACHED)]
    # the new /usr hides the modules' link that virtme-ng's init made in /usr/lib/modules
    modules = shlex.quote(str(VM_KERNEL / "lib" / "modules"))
    relink = f'mount -t tmpfs none /usr/lib/modules && ln -s {modules}/"$(uname -r)" /usr/lib/modules/'
    return " && ".join([
        *mounts, relink,
        shlex.join(["modprobe", "-a", *MODULES]),
        f'echo "{_BOOTED.decode()}$(uname -r)" >&2',
        "exec " + shlex.join(["env", *(f"{k}={v}" for k, v in guest_env.items()), *argv]),
    ])


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop vng and what it started, by pid. SIGTERM goes to the leaves
    (qemu) only, so that virtme-run and vng return as after any VM's end and
    clean up (virtme-run removes its file in /tmp); whatever is left after
    `grace` seconds gets SIGKILL, the deepest first."""
    if proc.poll() is not None:
        return
    tree = descendants(proc.pid)
    for pid in tree:
        if pid not in tree.values():
            _signal(pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        for pid in [*reversed(descendants(proc.pid)), proc.pid]:
            _signal(pid, signal.SIGKILL)
        proc.wait()


def descendants(pid: int) -> dict[int, int]:
    """pid's children, grandchildren and so on, each with its parent;
    parents come before their children."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                # the command name, in parentheses, may hold spaces
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
    found, frontier = {}, {pid}
    while frontier:
        frontier = {child: parent for child, parent in parents.items() if parent in frontier}
        found.update(frontier)
    return found


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _copy(source, sink) -> None:
    while chunk := source.read1(65536):
        sink.write(chunk)
        sink.flush()


def _copy_stderr(source, sink, started: float) -> None:
    """As _copy, by line, with the guest's 'booted' line turned into the
    boot time measured here (the guest's clock runs slow under emulation)."""
    for line in source:
        if line.startswith(_BOOTED):
            release = line[len(_BOOTED):].decode(errors="replace").strip()
            line = f"netplane.vm: {release} booted, modules loaded: {time.monotonic() - started:.1f} s\n".encode()
        sink.write(line)
        sink.flush()


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/vm-run", description="Run a command as root in a VM with Debian 12's 6.1 kernel "
        "(IPVS), this machine's files read-only but for --rwdir; exits with the command's status.")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds, boot included (default 1800)")
    parser.add_argument("--rwdir", action="append", default=[], help="a directory the guest may write to "
                        "here (repeatable); created if missing")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="for the command")
    parser.add_argument("--memory", default="4G")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="only say whether a VM can be booted here")
    parser.add_argument("argv", nargs="*", help="the command (after --)")
    opts = parser.parse_args(args)
    reason = available()
    if opts.check or reason:
        print(f"netplane.vm: {reason or 'ready, kernel ' + str(kernel())}", file=sys.stderr)
        return 1 if reason else 0
    if not opts.argv:
        parser.error("no command given")
    signal.signal(signal.SIGTERM, sandbox.raise_exit)     # unwind through run()'s `finally`, which stops the VM
    env = dict(item.split("=", 1) for item in opts.env)
    try:
        return run(opts.argv, opts.timeout, env, rwdirs=opts.rwdir, memory=opts.memory, cpus=opts.cpus)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
