"""`python -m tunpump status`: a running `tunnel` or `relay` answers over a
unix socket, /run/tunpump/NAME.sock, the way wireguard-go answers `wg`.

The directory is 0700 and the socket 0600 (root's, or for a non-root run
$XDG_RUNTIME_DIR/tunpump). Each connection gets one JSON document and is
closed. The socket is removed on exit; one left by a killed process (nobody
accepts on it) is replaced."""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
from typing import Any, Callable, Dict, List, Optional

log = logging.getLogger("tunpump")

RUN_DIR = "/run/tunpump"
SUFFIX = ".sock"


class StatusError(OSError):
    pass


def run_dirs() -> List[str]:
    """Where sockets live, in the order the client looks."""
    dirs = [RUN_DIR]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        dirs.append(os.path.join(xdg, "tunpump"))
    return dirs


def _check_name(name: str) -> str:
    if not name or "/" in name or name.startswith(".") or len(name) > 64:
        raise ValueError(f"name={name!r}: expected a short name without '/' (the device name by default)")
    return name


def _alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        s.close()


class StatusServer:
    """Serves `snapshot()` as JSON on NAME.sock from a daemon thread."""

    def __init__(self, name: str, snapshot: Callable[[], Dict[str, Any]], run_dir: Optional[str] = None) -> None:
        self.name = _check_name(name)
        self.snapshot = snapshot
        self.dir = run_dir or (RUN_DIR if os.geteuid() == 0 else (run_dirs()[1:] or [RUN_DIR])[0])
        self.path = os.path.join(self.dir, self.name + SUFFIX)
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    def start(self) -> "StatusServer":
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StatusError(exc.errno, f"status socket: cannot make {self.dir}: {exc.strerror}") from None
        if os.path.exists(self.path) or os.path.islink(self.path):
            if _alive(self.path):
                raise StatusError(errno.EADDRINUSE,
                                  f"status socket {self.path}: another tunpump process answers there; "
                                  f"give this one another --name")
            os.unlink(self.path)   # left by a process that was killed
            log.info("replaced the stale status socket %s", self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)   # the socket is born 0600: no window where others may connect
        try:
            sock.bind(self.path)
        except OSError as exc:
            sock.close()
            raise StatusError(exc.errno, f"status socket {self.path}: {exc.strerror}") from None
        finally:
            os.umask(old)
        sock.listen(8)
        sock.settimeout(0.2)
        self._sock = sock
        self._ino = os.stat(self.path).st_ino
        self._thread = threading.Thread(target=self._serve, name="tunpump-status", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(2.0)
                    conn.sendall(json.dumps(self.snapshot()).encode() + b"\n")
                except Exception:   # a client that went away, or a pump being stopped
                    log.debug("status: a request failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:   # only our own socket: another process may have replaced it
                if os.stat(self.path).st_ino == self._ino:
                    os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self) -> "StatusServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def available() -> List[str]:
    """Names of the sockets present (live or stale)."""
    out: List[str] = []
    for d in run_dirs():
        try:
            out += sorted(f[:-len(SUFFIX)] for f in os.listdir(d) if f.endswith(SUFFIX))
        except OSError:
            pass
    return out


def query(name: str, timeout: float = 5.0) -> Dict[str, Any]:
    """The snapshot of the running tunnel or relay called `name`."""
    _check_name(name)
    for d in run_dirs():
        path = os.path.join(d, name + SUFFIX)
        if not os.path.exists(path):
            continue
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except (ConnectionRefusedError, FileNotFoundError):
            raise StatusError(errno.ECONNREFUSED, f"{path}: nobody answers (the process is gone)") from None
        except PermissionError:
            raise StatusError(errno.EACCES, f"{path}: permission denied (the socket is its owner's only)") \
                from None
        finally:
            s.close()
        return json.loads(b"".join(chunks))
    raise StatusError(errno.ENOENT, f"no running tunnel or relay called {name!r} "
                                    f"(looked in {', '.join(run_dirs())})")


def format_status(st: Dict[str, Any]) -> str:
    """Human-readable status, in the spirit of `wg show`."""
    lines = [f"{st['kind']} {st['name']}: {st['device']} <-> {st['endpoint']}",
             f"  pid {st['pid']}  uptime {_dur(st['uptime'])}"]
    offl = st.get("offloads") or {}
    for dev, names in offl.items():
        lines.append(f"  offloads {dev}: {' '.join(names) if names else 'none'}")
    total = st.get("total") or {}
    for d in ("to_endpoint", "to_device"):
        t = total.get(d)
        if t:
            lines.append(f"  {d}: {t['packets_out']} packets {t['bytes_out']} bytes out, "
                         f"{t['packets_in']} in")
    for i, q in enumerate(st.get("queues") or []):
        lines.append(f"  queue {i}: " + ", ".join(
            f"{d} {q[d]['packets_out']} packets {q[d]['bytes_out']} bytes" for d in ("to_endpoint", "to_device")))
    if total.get("connect_attempts") or total.get("connects") or total.get("disconnects"):
        tries = total.get("connect_attempts", 0)
        lines.append(f"  connections: {total.get('connects', 0)} made"
                     + (f" of {tries} attempt(s)" if tries else "") + f", {total.get('disconnects', 0)} lost")
    drops = {k: v for k, v in (st.get("drops") or {}).items() if v}
    lines.append("  drops: " + (", ".join(f"{k} {v}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1]))
                                if drops else "none"))
    import time
    for p in st.get("peers") or []:
        ago = time.time() - p["since"]
        lines.append(f"  peer {p['address']} (queue {p['queue']}): {'up' if p['up'] else 'down'} "
                     f"for {_dur(ago)}")
    return "\n".join(lines)


def _dur(secs: float) -> str:
    secs = int(secs)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
