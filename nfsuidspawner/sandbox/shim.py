"""The sandbox container shim: ``python -E -s -S shim.py CONFIG`` runs one container (as root).

Stdlib only and no package imports: the kubelet runs this file by its path (it imports
:mod:`.rootfs` and :mod:`.subpath` from beside it), without the site packages. Every container
start runs it, so it imports only what it needs at once: the config is in :mod:`marshal`'s
format (:mod:`json` brings :mod:`re`), and its types are plain dicts (:mod:`typing` alone
costs more than the rest of its imports). Given the config :mod:`.runtime` wrote, it
enters a new PID namespace, and its child, the container's init (PID 1 there), enters new
mount, UTS and IPC namespaces, builds the container root (:mod:`.rootfs`), ``pivot_root``\\s
into it and runs the container's command through ``setpriv`` with the uid, gids, capabilities
and no_new_privs of its securityContext. The init exits with the main process's code; when it
dies the kernel kills everything left in the namespace, and the mounts die with their
namespace. A stop signal reaches what a kubelet's reaches: the main process only; for
docker-stacks images (entrypoint ``tini -g -- start.sh``) the init plays tini, with the
container's uid, gids and capabilities, and signals the main process's group. A container that
cannot start at all exits with :data:`START_ERROR_EXIT` and says why in the start-error file.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import select
import signal
import sys

if __package__:
    from . import rootfs
else:  # the shim: this file run as a script, with rootfs.py beside it
    import rootfs

Obj = dict

# Exit code and reason a runtime reports when the container cannot be started at all.
START_ERROR_EXIT = 128

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
# Capability names in the order of their numbers (linux/capability.h).
CAP_NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]  # fmt: skip


def _setpriv_argv(cfg: Obj) -> list[str]:
    caps = ",".join(["-all"] + ["+" + c.lower() for c in cfg["caps"]])
    argv = [
        "/usr/bin/setpriv",
        f"--reuid={cfg['uid']}",
        f"--regid={cfg['gid']}",
        "--groups=" + ",".join(str(g) for g in cfg["groups"]),
        f"--bounding-set={caps}",
        "--inh-caps=-all",
        "--ambient-caps=-all",
    ]
    if cfg["no_new_privs"]:
        argv.append("--no-new-privs")
    return [*argv, "--"]


def _which(cmd: str, path: str) -> str | None:
    if "/" in cmd:
        return cmd if os.path.exists(cmd) else None
    for d in path.split(":"):
        p = os.path.join(d or ".", cmd)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


_start_error_fd: int | None = None


def _fail_start(cfg: Obj, message: str) -> None:
    """Report why the container could not start (the file is opened before pivot_root)."""
    try:
        fd = _start_error_fd
        if fd is None:
            fd = os.open(cfg["start_error_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, message.encode())
    except OSError:
        pass
    print(f"sandbox runtime: {message}", file=sys.stderr, flush=True)
    os._exit(START_ERROR_EXIT)


def _init(cfg: Obj, parent_alive: int) -> None:
    """PID 1 of the container's PID namespace."""
    rootfs.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if select.select([parent_alive], [], [], 0)[0]:
        os._exit(1)  # the shim died before we set PDEATHSIG
    os.umask(0o022)
    global _start_error_fd
    _start_error_fd = os.open(
        cfg["start_error_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
    )
    try:
        rootfs.check(rootfs.libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC), "unshare")
        rootfs.mount(None, "/", None, rootfs.MS_REC | rootfs.MS_PRIVATE)
        name = cfg["hostname"].encode()
        rootfs.check(rootfs.libc.sethostname(name, len(name)), "sethostname")
        rootfs.build_root(cfg)
        rootfs.pivot_root(cfg["rootfs"])
    except rootfs.StartError as e:
        _fail_start(cfg, str(e))
    except Exception as e:
        _fail_start(cfg, f"failed to create container: {e}")

    env = cfg["env"]
    exe = _which(cfg["argv"][0], env.get("PATH", SYSTEM_PATH))
    if exe is None:
        _fail_start(cfg, f'exec: "{cfg["argv"][0]}": executable file not found in $PATH')
    try:
        os.chdir(rootfs.secure_join("/", cfg["workdir"]))
    except OSError as e:
        _fail_start(cfg, f"chdir to cwd ({cfg['workdir']!r}) set in the config failed: {e}")

    main = os.fork()
    if main == 0:
        try:
            os.setsid()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                        signal.SIGUSR2, signal.SIGQUIT, signal.SIGCHLD):  # fmt: skip
                signal.signal(sig, signal.SIG_DFL)
            os.execve(_setpriv_argv(cfg)[0], _setpriv_argv(cfg) + cfg["argv"], env)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(START_ERROR_EXIT)

    if cfg["tini"]:
        _forward_signals(-main)  # tini -g: the group of its child (which setsid made a leader)
        _become_tini(cfg, parent_alive)
    else:
        _forward_signals(main)  # a kubelet signals the container's main process only
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == main:
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
            # The kernel kills the rest when we exit. (No contextlib: see the imports.)
            try:  # noqa: SIM105
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            os._exit(code)


def _capset(names: list[str]) -> None:
    """Keep only `names` in this process's permitted and effective capabilities."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(f, ctypes.c_uint32) for f in ("effective", "permitted", "inheritable")]

    bits = sum(1 << CAP_NAMES.index(n) for n in names if n in CAP_NAMES)
    low, high = bits & 0xFFFFFFFF, bits >> 32
    data = (Data * 2)(Data(low, low, 0), Data(high, high, 0))
    rootfs.check(
        rootfs.libc.capset(ctypes.byref(Header(0x20080522, 0)), data), "capset"
    )  # version 3


def _become_tini(cfg: Obj, parent_alive: int) -> None:
    """Take the credentials tini has in the image: the container's uid, gids and capabilities.

    Its signals then reach only what it may signal: without CAP_KILL, a root tini cannot signal
    the user's lab (only sudo, which is root too).
    """
    os.setgroups(cfg["groups"])
    os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
    os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])  # a non-root uid drops every capability
    if cfg["uid"] == 0:
        _capset(cfg["caps"])
    rootfs.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a credential change clears it
    if select.select([parent_alive], [], [], 0)[0]:
        os._exit(1)


FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGQUIT,
)


def _forward_signals(target: int) -> None:
    """Pass the signals a container gets on to `target` (a pid, or a process group if < 0)."""

    def forward(signum: int, _frame: object) -> None:
        try:  # noqa: SIM105
            os.kill(target, signum)
        except (ProcessLookupError, PermissionError):
            pass

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)


def main(argv: list[str]) -> None:
    with open(argv[1], "rb") as f:
        cfg = marshal.load(f)
    rootfs.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != cfg["parent_pid"]:
        sys.exit(1)  # the kubelet died while we started
    if rootfs.libc.unshare(CLONE_NEWPID) != 0:
        _fail_start(cfg, f"unshare(CLONE_NEWPID): {os.strerror(ctypes.get_errno())}")
    alive_r, alive_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(alive_w)
        try:
            _init(cfg, alive_r)
        finally:
            os._exit(START_ERROR_EXIT)
    os.close(alive_r)

    _forward_signals(child)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            sys.exit(1)
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("sandbox runtime: must run as root")
    main(sys.argv)
