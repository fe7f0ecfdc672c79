"""Job packs and rcpu exports played as attacks against a real node daemon (issue 11, items 4 and 6).

Every refusal must be a 400 with one line, leave no staging directory (`*.tmp-*`) in the
node's caches, and cost the node no disk.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from geryon.net.connection import NodeConnection
from tests.node.node_helpers import Cluster, Node

MANIFEST = b'{"steps": {"map": null}, "settings": {}, "env": []}'
GIB3 = 3 << 30


# Fixtures `cluster` and the thread-leak check: tests/security/conftest.py.


def _tar(add: Callable[[tarfile.TarFile], None], fmt: int = tarfile.PAX_FORMAT, manifest: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        if manifest:
            _file(tar, "geryon-job.json", MANIFEST)
        add(tar)
    return buf.getvalue()


def _file(tar: tarfile.TarFile, name: str, data: bytes, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def _special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    tar.addfile(info)


def pax_sparse_10() -> bytes:
    """PAX sparse format 1.0 (GNU tar --format=posix -S): a 3 GiB file from one 512-byte block."""
    def add(tar: tarfile.TarFile) -> None:
        body = b"1\n0\n512\n".ljust(512, b"\0") + b"A" * 512
        info = tarfile.TarInfo("GNUSparseFile.0/big")
        info.size = len(body)
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "big",
                            "GNU.sparse.realsize": str(GIB3)}
        tar.addfile(info, io.BytesIO(body))
    return _tar(add)


def pax_sparse_01() -> bytes:
    """PAX sparse format 0.1: the map in one header."""
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("big")
        info.size = 512
        info.pax_headers = {"GNU.sparse.numblocks": "1", "GNU.sparse.map": f"{GIB3 - 512},512",
                            "GNU.sparse.size": str(GIB3)}
        tar.addfile(info, io.BytesIO(b"B" * 512))
    return _tar(add)


def gnu_sparse_old() -> bytes:
    """The old GNU sparse member (type S, map in the header), as GNU tar --format=gnu -S writes it."""
    head = _tar(lambda tar: None, fmt=tarfile.GNU_FORMAT)[:1024]       # the manifest's header and block
    info = tarfile.TarInfo("big")
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 512
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    offset, numbytes = tarfile.itn(GIB3 - 512, 12, tarfile.GNU_FORMAT), tarfile.itn(512, 12, tarfile.GNU_FORMAT)
    block[386:398], block[398:410] = offset, numbytes                  # the first sparse entry
    block[483:495] = tarfile.itn(GIB3, 12, tarfile.GNU_FORMAT)          # realsize
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block[:512])
    return head + bytes(block[:512]) + b"C" * 512 + bytes(1024)


def gnu_tar_sparse(tmp: Path) -> list[bytes]:
    """What GNU tar itself makes of a sparse 3 GiB file, both formats (when tar is installed)."""
    if shutil.which("tar") is None:
        return []
    src = tmp / "sparse-src"
    src.mkdir()
    (src / "geryon-job.json").write_bytes(MANIFEST)
    with open(src / "big", "wb") as f:
        f.truncate(GIB3)
    out = []
    for fmt in ("gnu", "posix"):
        dest = tmp / f"sparse-{fmt}.tar"
        subprocess.run(["tar", f"--format={fmt}", "-S", "-cf", str(dest), "-C", str(src), "geryon-job.json", "big"],
                       check=True)
        out.append(dest.read_bytes())
    return out


def disk_bytes(root: Path) -> int:
    """Bytes of disk (allocated blocks) under `root`."""
    total = 0
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def leftovers(node_work: Path) -> list[str]:
    return [str(p) for sub in ("packs", "exports") if (node_work / sub).is_dir()
            for p in (node_work / sub).iterdir() if ".tmp-" in p.name or p.name.startswith(".unpack-")]


def put(node: Node, secret: bytes, kind: str, data: bytes) -> tuple[int, dict]:
    digest = hashlib.sha256(data).hexdigest()
    path = f"/v1/jobs/packs/{digest}" if kind == "pack" else f"/v1/cpu/exports/{digest}"
    with NodeConnection(node.url, secret) as conn:
        status, body = conn.request("PUT", path, data)
    return status, json.loads(body)


def assert_refused(node: Node, secret: bytes, kind: str, data: bytes, why: str) -> str:
    status, doc = put(node, secret, kind, data)
    assert status == 400, (kind, why, status, doc)
    error = doc["error"]
    assert "\n" not in error and "Traceback" not in error and why in error, (kind, error)
    assert leftovers(node.work) == []
    return error


@pytest.fixture
def node(cluster: Cluster) -> Node:
    n = cluster.start_node("n1", ["c0"], register=False, extra=["--unpack-limit", "1M", "--unpack-files", "50"])
    n.work = cluster.tmp / "work-n1"  # type: ignore[attr-defined]
    return n


def test_sparse_bomb_pack_is_refused_and_costs_no_disk(node: Node, secret: bytes, tmp_path: Path) -> None:
    bombs = [pax_sparse_10(), pax_sparse_01(), gnu_sparse_old(), *gnu_tar_sparse(tmp_path)]
    before = disk_bytes(node.work)  # type: ignore[attr-defined]
    for bomb in bombs:
        assert len(bomb) <= 12 << 10          # "a 10 KiB pack"
        for kind in ("pack", "export"):
            assert_refused(node, secret, kind, bomb, "sparse")
    assert disk_bytes(node.work) <= before + (64 << 10)  # type: ignore[attr-defined]
    assert not any((node.work / "packs").iterdir())  # type: ignore[attr-defined]


def test_packs_and_exports_over_the_limits_are_refused(node: Node, secret: bytes) -> None:
    big = _tar(lambda tar: _file(tar, "data.bin", b"x" * (1 << 20) + b"y"))
    many = _tar(lambda tar: [_file(tar, f"f{i}", b"1") for i in range(60)])
    cut = _tar(lambda tar: _file(tar, "half", b"z" * 4096))[:2048]       # the header says 4096 bytes
    for kind in ("pack", "export"):
        assert_refused(node, secret, kind, big, "limit of 1048576 bytes")
        assert_refused(node, secret, kind, many, "limit of 50")
        assert_refused(node, secret, kind, cut, "")
    ok = _tar(lambda tar: _file(tar, "data.bin", b"x" * 1000))
    assert put(node, secret, "pack", ok)[0] == 200
    assert put(node, secret, "export", ok)[0] == 200


BAD_MEMBERS: dict[str, tuple[Callable[[tarfile.TarFile], None], str]] = {
    "absolute": (lambda t: _file(t, "/etc/evil", b"x"), "absolute"),
    "dotdot": (lambda t: _file(t, "a/../../evil", b"x"), "'..'"),
    "duplicate": (lambda t: (_file(t, "x", b"1"), _file(t, "x", b"2")), "twice"),
    "file then dir": (lambda t: (_file(t, "x", b"1"), _file(t, "x/y", b"2")), "not a directory"),
    "dir over file": (lambda t: (_file(t, "x", b"1"), _special(t, "x", tarfile.DIRTYPE)), "twice"),
    "below a link": (lambda t: (_special(t, "l", tarfile.SYMTYPE, "sub"), _special(t, "sub", tarfile.DIRTYPE),
                                _file(t, "l/y", b"2")), ""),
    "symlink out": (lambda t: _special(t, "l", tarfile.SYMTYPE, "../../../etc/passwd"), "link"),
    "absolute symlink": (lambda t: _special(t, "l", tarfile.SYMTYPE, "/etc/passwd"), "link"),
    "symlink out through a link": (lambda t: (_special(t, "a", tarfile.DIRTYPE),
                                              _special(t, "a/r", tarfile.SYMTYPE, ".."),
                                              _special(t, "m", tarfile.SYMTYPE, "a/r/..")), "link"),
    "hard link out": (lambda t: _special(t, "h", tarfile.LNKTYPE, "/etc/passwd"), "hard link"),
    "hard link up": (lambda t: _special(t, "h", tarfile.LNKTYPE, "../secret"), "hard link"),
    "char device": (lambda t: _special(t, "dev", tarfile.CHRTYPE), "device"),
    "block device": (lambda t: _special(t, "blk", tarfile.BLKTYPE), "device"),
    "fifo": (lambda t: _special(t, "fifo", tarfile.FIFOTYPE), "fifo"),
}


def test_each_bad_member_is_a_400_with_nothing_left(node: Node, secret: bytes, cluster: Cluster) -> None:
    for case, (add, why) in sorted(BAD_MEMBERS.items()):
        data = _tar(add)
        for kind in ("pack", "export"):
            error = assert_refused(node, secret, kind, data, why)
            assert "refused" in error, (case, error)
        assert not (cluster.tmp / "evil").exists() and not (Path("/etc/evil")).exists()
        assert not any((node.work / "packs").iterdir()), case  # type: ignore[attr-defined]
        assert node.proc.popen.poll() is None


def test_exports_keep_links_inside_and_packs_refuse_links(node: Node, secret: bytes) -> None:
    data = _tar(lambda t: (_file(t, "lib/real.py", b"x = 1\n"), _special(t, "lib/alias.py", tarfile.SYMTYPE, "real.py"),
                           _special(t, "top.py", tarfile.SYMTYPE, "lib/real.py"),
                           _special(t, "hard.py", tarfile.LNKTYPE, "lib/real.py")))
    status, _ = put(node, secret, "export", data)
    assert status == 200
    export = node.work / "exports" / hashlib.sha256(data).hexdigest()  # type: ignore[attr-defined]
    assert (export / "top.py").read_text() == "x = 1\n" and os.readlink(export / "lib" / "alias.py") == "real.py"
    assert (export / "hard.py").read_text() == "x = 1\n"
    assert_refused(node, secret, "pack", data, "symbolic link")


def test_a_node_start_sweeps_unpacking_leftovers(cluster: Cluster, secret: bytes) -> None:
    work = cluster.tmp / "work-n2"
    left = [work / "packs" / f"{'a' * 64}.tmp-0badf00d", work / "packs" / ".unpack-x1y2",
            work / "exports" / f"{'b' * 64}.tmp-12345678"]
    for d in left:
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f").write_bytes(b"half")
    keep = work / "packs" / ("c" * 64)
    keep.mkdir()
    cluster.start_node("n2", ["c0"], register=False)
    assert [d for d in left if d.exists()] == [] and keep.is_dir()
