"""Local test images for the kubelet tests, built from busybox-static with `docker import`.

There is no image registry on the machines this project is tested on (see
/work/shared/ENVIRONMENT.md), so every image a kubelet test runs is made here from the host's
statically linked busybox: a tarball with /bin/busybox, one symlink per applet and a tiny web
root, piped into `docker import`.

- `kubenats/pause:test`: the pod sandbox (infra) container. It sleeps forever and exits at once on
  SIGTERM: as PID 1 a process ignores SIGTERM unless it installs a handler, so the entrypoint
  traps it.
- `kubenats/busybox:test`: the workload image (sh, httpd, sleep, wget, cat, nc, ... and
  `/www/index.html`). Note busybox 1.35's `wget -T N` segfaults; use plain `wget -qO- URL`.

Building is idempotent: an image whose `kubenats.test.image-version` label matches is kept, so
tests can call `ensure_test_images()` freely. Run `python -m tests.kubelet.images` to build by hand.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time

BUSYBOX = "/bin/busybox"
PAUSE_IMAGE = "kubenats/pause:test"
BUSYBOX_IMAGE = "kubenats/busybox:test"
INDEX_HTML = b"<html><body>kubenats busybox test page</body></html>\n"
IMAGE_VERSION = "1"
_VERSION_LABEL = "kubenats.test.image-version"

# Minimum applets a test may rely on; every other applet busybox reports is linked too.
REQUIRED_APPLETS = ("sh", "httpd", "sleep", "wget", "cat", "echo", "env", "ls", "nc", "dd", "stty", "id")

PAUSE_ENTRYPOINT = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"]


def _applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout
    names = {line.strip() for line in out.splitlines() if line.strip() and "/" not in line}
    missing = [a for a in REQUIRED_APPLETS if a not in names]
    if missing:
        raise RuntimeError(f"{BUSYBOX} lacks applets {missing}")
    names.discard("busybox")
    return sorted(names)


def _rootfs_tar() -> bytes:
    """A root filesystem: busybox, its applet symlinks, /etc/passwd, /tmp and /www/index.html."""
    buf = io.BytesIO()
    now = int(time.time())

    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
        tar.addfile(info)

    def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, now
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp", "www", "root", "proc", "sys", "dev"):
            add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        with open(BUSYBOX, "rb") as f:
            add_file(tar, "bin/busybox", f.read(), 0o755)
        for applet in _applets():
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, "busybox", 0o777, now
            tar.addfile(info)
        add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        add_file(tar, "www/index.html", INDEX_HTML)
    return buf.getvalue()


def _current_version(image: str) -> str | None:
    r = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    labels = json.loads(r.stdout)[0].get("Config", {}).get("Labels") or {}
    return str(labels.get(_VERSION_LABEL, ""))


def _import(image: str, changes: list[str]) -> None:
    cmd = ["docker", "import"]
    for change in [*changes, "ENV PATH=/bin", f"LABEL {_VERSION_LABEL}={IMAGE_VERSION}"]:
        cmd += ["--change", change]
    cmd += ["-", image]
    subprocess.run(cmd, input=_rootfs_tar(), check=True, capture_output=True)


def ensure_image(image: str, changes: list[str], force: bool = False) -> None:
    if force or _current_version(image) != IMAGE_VERSION:
        _import(image, changes)


def ensure_test_images(force: bool = False) -> tuple[str, str]:
    """Build (if needed) and return (pause image, busybox image)."""
    if not os.path.exists(BUSYBOX):
        raise RuntimeError(f"{BUSYBOX} is missing: apt-get install -y busybox-static")
    ensure_image(PAUSE_IMAGE, [f"ENTRYPOINT {json.dumps(PAUSE_ENTRYPOINT)}"], force)
    ensure_image(BUSYBOX_IMAGE, ['CMD ["/bin/sh"]', "WORKDIR /"], force)
    return PAUSE_IMAGE, BUSYBOX_IMAGE


if __name__ == "__main__":
    import sys

    t0 = time.monotonic()
    built = ensure_test_images(force="--force" in sys.argv)
    print(f"ready: {', '.join(built)} ({time.monotonic() - t0:.2f}s)")
