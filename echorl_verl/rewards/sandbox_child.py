"""Child side of the code sandbox (see ``code_sandbox.py``). Runs as a script, never imported.

``python -I sandbox_child.py init CONFIG``  (namespaces mode; root; PID 1 of a new PID namespace,
    inside new mount and network namespaces made by ``unshare``):
    1. hides the host's world-writable directories (/tmp, /var/tmp, /dev/shm, /run/lock) under
       fresh small tmpfs mounts and copies the run's files (prog.py, its config) into /tmp/work
       on that tmpfs (the host work directory is never writable by the program);
    2. binds the interpreter, the venv and this package back when they sit under a directory the
       dropped uid cannot traverse (``_expose``);
    3. forks; the child sets the resource limits, drops to the run's private uid/gid (no
       supplementary groups) and execs ``sandbox_child.py run CONFIG`` in a fresh interpreter;
    4. reaps every process until that child exits, then exits with its status. When PID 1
       exits the kernel kills whatever else is left in the namespace.
``python -I sandbox_child.py run CONFIG``: sets the limits itself when nobody did (rlimits
    mode), blocks socket creation, writes ``started`` to the status pipe (``status_fd``) and closes
    it, and runs ``prog.py`` as ``__main__``. The parent treats a run without ``started`` as the
    sandbox's failure, not the program's (the program never holds that pipe).
"""

import ctypes
import json
import os
import resource
import sys

MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
MS_RDONLY, MS_REMOUNT = 1, 32
WORK_MOUNT = "/tmp/work"
HIDDEN_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


def _mount(libc, src, target, fstype, flags, data):
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} on {target}: {os.strerror(err)}")


def set_limits(cfg):
    mb = 1 << 20
    limits = [
        (resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1),  # soft: SIGXCPU, hard: SIGKILL
        (resource.RLIMIT_AS, cfg["memory_mb"] * mb, cfg["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, cfg["fsize_mb"] * mb, cfg["fsize_mb"] * mb),
        (resource.RLIMIT_NPROC, cfg["nproc"], cfg["nproc"]),
        (resource.RLIMIT_NOFILE, 256, 256),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    for which, soft, hard in limits:
        resource.setrlimit(which, (soft, hard))


def _blocked_ancestor(path):
    """Topmost directory on ``path``'s way from / that others cannot traverse (or None)."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def _under(path, dirs):
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _expose(libc, fds, tmpfs_opts):
    """Make the paths of ``fds`` (the interpreter, the venv, this package) reachable by the dropped uid.

    ``fds`` maps each path to a directory fd opened BEFORE /tmp & co. were covered, so a venv or a checkout
    under /tmp (CI clones anywhere) is still reachable. A path is bound back, read-only, when it sits under
    a hidden directory or under a directory other uids cannot traverse (/root is 0700, e.g. pyenv): that
    directory is covered by an empty tmpfs first, which also hides everything else in it.
    """
    covered = set()
    for p, fd in fds.items():
        top = _blocked_ancestor(p) if not _under(p, HIDDEN_DIRS) else None
        if top is None and not _under(p, HIDDEN_DIRS):
            continue
        if top is not None and top not in covered:
            _mount(libc, "tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, tmpfs_opts.replace("1777", "0755"))
            covered.add(top)
        os.makedirs(p, mode=0o755, exist_ok=True)
        for parent in _parents_between(p, HIDDEN_DIRS + tuple(covered)):
            os.chmod(parent, 0o755)  # the dropped uid must traverse the mount points we created
        _mount(libc, f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC, None)
        _mount(libc, None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
    for fd in fds.values():
        os.close(fd)


def _parents_between(path, roots):
    """The directories strictly between the root of ``roots`` that holds ``path`` and ``path`` itself."""
    root = max((r for r in roots if _under(path, [r])), key=len, default=None)
    if root is None:
        return []
    out, d = [], os.path.dirname(path)
    while d != root and len(d) > len(root):
        out.append(d)
        d = os.path.dirname(d)
    return out


def init(cfg_path):
    with open(cfg_path) as f:
        cfg = json.load(f)
    libc = ctypes.CDLL(None, use_errno=True)
    # the run's files are copied into a tmpfs: whatever the program writes is bounded by
    # tmpfs_mb and never reaches the host disk
    files = {}
    for name in os.listdir(cfg["workdir"]):
        with open(os.path.join(cfg["workdir"], name), "rb") as f:
            files[name] = f.read()
    fds = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in cfg["expose"]}  # before anything is covered
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE, None)  # nothing propagates to the host
    tmpfs_opts = f"size={cfg['tmpfs_mb']}m,mode=1777"
    for d in HIDDEN_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            _mount(libc, "tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, tmpfs_opts)
    _expose(libc, fds, tmpfs_opts)
    os.mkdir(WORK_MOUNT, 0o700)
    os.chown(WORK_MOUNT, cfg["uid"], cfg["uid"])
    for name, data in files.items():
        path = os.path.join(WORK_MOUNT, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chown(path, cfg["uid"], cfg["uid"])
    child_cfg = os.path.join(WORK_MOUNT, os.path.basename(cfg_path))
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(WORK_MOUNT)
            set_limits(cfg)
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])
            # the real binary, named as in the venv's real bin directory (see code_sandbox._interpreter)
            os.execve(cfg["python"], [cfg["argv0"], "-I", __file__, "run", child_cfg, "limited"], cfg["env"])
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"sandbox init failed: {e!r}\n".encode())
        os._exit(125)
    status = 0
    while True:  # PID 1 reaps orphans too
        try:
            done, st = os.wait()
        except ChildProcessError:
            break
        if done == pid:
            status = st
            break
    sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def _block_sockets():
    """Network access fails inside the sandbox even where no network namespace could be made."""
    import socket

    def refuse(*args, **kwargs):
        raise PermissionError("network access is disabled in the sandbox")

    class NoNetSocket(socket.socket):
        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
            if fileno is None and family in (-1, socket.AF_INET, socket.AF_INET6):
                refuse()
            super().__init__(family, type, proto, fileno)

    socket.socket = NoNetSocket
    socket.create_connection = refuse
    socket.socketpair = refuse


def run(cfg_path, limited):
    with open(cfg_path) as f:
        cfg = json.load(f)
    if not limited:
        set_limits(cfg)
    _block_sockets()
    import runpy

    sys.argv = ["prog.py"]
    sys.path.insert(0, os.getcwd())
    os.write(cfg["status_fd"], b"started")  # to the parent: from here on, whatever happens is the program's doing
    os.close(cfg["status_fd"])
    runpy.run_path("prog.py", run_name="__main__")


if __name__ == "__main__":
    if sys.argv[1] == "init":
        try:
            init(sys.argv[2])
        except Exception as e:  # noqa: BLE001 - the parent turns exit code 125 + this line into an error
            os.write(2, f"sandbox init failed: {e!r}\n".encode())
            os._exit(125)
    else:
        run(sys.argv[2], limited=len(sys.argv) > 3)
