"""Unpacking tar archives someone else made (job packs, rcpu exports, copied chunks), safely.

`extract(source, dest, limits)` unpacks a tar into a new directory `dest` member by
member, and refuses (`UnpackRefused`, one line naming the member) anything that could
hurt the machine unpacking it: more than `limits.max_bytes` unpacked bytes or
`limits.max_members` members (counted from the headers first, then again from the bytes
actually written, so a lying header cannot get past), sparse members in any of their
forms (old GNU `S`, PAX `GNU.sparse.*`: a 10 KiB archive can otherwise hold a 3 GiB
hole-filled file), absolute names, `..` components, names given twice, a member below a
file or a link (`x` then `x/y`), devices, fifos, hard links to anything but an earlier
file of the archive, and symbolic links (only where allowed) that resolve outside
`dest`. On any refusal or error `dest` is removed: nothing is left behind. Not here:
where archives come from or where unpacked trees go (`geryon.mapreduce.jobpack`,
`geryon.node.cpuservice`), making archives.
"""
from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
from dataclasses import dataclass
from typing import IO

from geryon.errors import GeryonError
from geryon.defaults import (DEFAULT_UNPACK_MAX_BYTES as DEFAULT_MAX_BYTES, DEFAULT_UNPACK_MAX_MEMBERS as DEFAULT_MAX_MEMBERS)

log = logging.getLogger(__name__)

COPY_BLOCK = 1 << 20
"""Bytes copied per read while extracting a member."""

_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


class UnpackRefused(GeryonError):
    """An archive is damaged, too large, or holds a member that cannot be unpacked safely."""


@dataclass(frozen=True)
class UnpackLimits:
    """How much one archive may unpack to (None: no limit, for archives from our own nodes)."""

    max_bytes: int | None = DEFAULT_MAX_BYTES
    max_members: int | None = DEFAULT_MAX_MEMBERS
    symlinks: bool = False          # symbolic links pointing inside the archive's tree are kept

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_members"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise GeryonError(f"unpack limit {name} must be positive, not {value}")


def _is_sparse(member: tarfile.TarInfo) -> bool:
    if member.type == tarfile.GNUTYPE_SPARSE or getattr(member, "sparse", None) is not None:
        return True
    return any(k.startswith("GNU.sparse.") for k in member.pax_headers)


def member_name(member: tarfile.TarInfo) -> str:
    """A member's name, normalised; raises UnpackRefused for absolute names and `..`."""
    raw = member.name
    if not raw or "\0" in raw:
        raise UnpackRefused(f"member {raw!r} has no usable name")
    if raw.startswith("/") or posixpath.isabs(raw) or (len(raw) > 1 and raw[1] == ":"):
        raise UnpackRefused(f"member {raw!r} has an absolute name")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnpackRefused(f"member {raw!r} has a '..' in its name")
    if not parts:
        raise UnpackRefused(f"member {raw!r} names the archive's root")
    return "/".join(parts)


def _check_headers(members: list[tarfile.TarInfo], limits: UnpackLimits) -> None:
    """Everything that can be refused before a byte is written."""
    total = 0
    for member in members:
        name = member.name
        if _is_sparse(member):
            raise UnpackRefused(f"member {name!r} is a sparse file")
        if member.ischr() or member.isblk():
            raise UnpackRefused(f"member {name!r} is a device")
        if member.isfifo():
            raise UnpackRefused(f"member {name!r} is a fifo")
        if member.issym() and not limits.symlinks:
            raise UnpackRefused(f"member {name!r} is a symbolic link")
        if not (member.type in _FILE_TYPES or member.isdir() or member.issym() or member.islnk()):
            raise UnpackRefused(f"member {name!r} is not a file, directory or link (type {member.type!r})")
        if member.type in _FILE_TYPES:
            if member.size < 0:
                raise UnpackRefused(f"member {name!r} has a negative size")
            total += member.size
    if limits.max_bytes is not None and total > limits.max_bytes:
        raise UnpackRefused(f"{total} bytes unpacked, more than the limit of {limits.max_bytes} bytes")


class _Tree:
    """What has been unpacked so far: every path's kind, and the bytes written."""

    def __init__(self, dest: str, limits: UnpackLimits) -> None:
        self.dest, self.limits = dest, limits
        self.kinds: dict[str, str] = {}          # name -> "dir" | "file" | "link"
        self.written = 0
        self.links: list[str] = []

    def place(self, name: str, kind: str, raw: str) -> str:
        """The path `name` goes to, after checking its name is new and its parents are directories."""
        have = self.kinds.get(name)
        if have is not None and not (have == "dir" and kind == "dir"):
            raise UnpackRefused(f"member {raw!r} is given twice")
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            pkind = self.kinds.get(parent)
            if pkind is None:
                os.mkdir(os.path.join(self.dest, parent), 0o755)
                self.kinds[parent] = "dir"
            elif pkind != "dir":
                raise UnpackRefused(f"member {raw!r} lies below {parent!r}, which is a {pkind}, not a directory")
        self.kinds[name] = kind
        return os.path.join(self.dest, name)

    def copy(self, src: IO[bytes], path: str, size: int, raw: str, mode: int) -> None:
        """Write exactly `size` bytes from `src`, counting them against the limit as they come."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            left = size
            while left > 0:
                block = src.read(min(COPY_BLOCK, left))
                if not block:
                    raise UnpackRefused(f"member {raw!r} is cut short ({size - left} of {size} bytes)")
                left -= len(block)
                self.written += len(block)
                if self.limits.max_bytes is not None and self.written > self.limits.max_bytes:
                    raise UnpackRefused(f"more than the limit of {self.limits.max_bytes} bytes unpacked "
                                        f"(at member {raw!r})")
                out.write(block)
            if src.read(1):
                raise UnpackRefused(f"member {raw!r} holds more bytes than its header says")
        os.chmod(path, 0o755 if mode & 0o111 else 0o644)

    def check_links(self) -> None:
        """Every symbolic link, now that the whole tree is there, must resolve inside it."""
        root = os.path.realpath(self.dest)
        for name in self.links:
            real = os.path.realpath(os.path.join(self.dest, name))
            if real != root and not real.startswith(root + os.sep):
                raise UnpackRefused(f"member {name!r} is a link pointing outside the archive")


def _headers(tar: tarfile.TarFile, limits: UnpackLimits) -> list[tarfile.TarInfo]:
    """Every member's header, stopping as soon as there are too many."""
    members: list[tarfile.TarInfo] = []
    for member in tar:
        members.append(member)
        if limits.max_members is not None and len(members) > limits.max_members:
            raise UnpackRefused(f"more members than the limit of {limits.max_members}")
    return members


def _unpack(tar: tarfile.TarFile, dest: str, limits: UnpackLimits) -> None:
    members = _headers(tar, limits)
    _check_headers(members, limits)
    tree = _Tree(dest, limits)
    for member in members:
        raw = member.name
        name = member_name(member)
        if member.isdir():
            path = tree.place(name, "dir", raw)
            if not os.path.isdir(path):
                os.mkdir(path, 0o755)
        elif member.issym():
            target = member.linkname
            if not target or os.path.isabs(target) or "\0" in target:
                raise UnpackRefused(f"member {raw!r} is a link pointing outside the archive")
            lexical = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if lexical == ".." or lexical.startswith("../"):
                raise UnpackRefused(f"member {raw!r} is a link pointing outside the archive")
            os.symlink(target, tree.place(name, "link", raw))
            tree.links.append(name)
        elif member.islnk():
            try:
                target = member_name(tarfile.TarInfo(member.linkname))
            except UnpackRefused:
                raise UnpackRefused(f"member {raw!r} is a hard link pointing outside the archive") from None
            if tree.kinds.get(target) != "file":
                raise UnpackRefused(f"member {raw!r} is a hard link to {member.linkname!r}, "
                                    "which is not an earlier file of the archive")
            os.link(os.path.join(dest, target), tree.place(name, "file", raw), follow_symlinks=False)
        else:
            path = tree.place(name, "file", raw)
            src = tar.extractfile(member)
            if src is None:
                raise UnpackRefused(f"member {raw!r} has no data")
            tree.copy(src, path, member.size, raw, member.mode)
    tree.check_links()


def extract(source: str | IO[bytes], dest: str, limits: UnpackLimits | None = None) -> None:
    """Unpack the tar `source` (a path or a binary file object) into `dest`, made here.

    Raises:
        UnpackRefused: the archive is unreadable, over a limit, or holds an unsafe member;
            `dest` is gone.
    """
    limits = limits or UnpackLimits()
    os.mkdir(dest, 0o755)
    try:
        if isinstance(source, str):
            tar = tarfile.open(source, mode="r:")
        else:
            tar = tarfile.open(fileobj=source, mode="r:")
        with tar:
            _unpack(tar, dest, limits)
    except UnpackRefused as exc:
        remove_tree(dest)
        log.info("archive refused: %s", exc)
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError, UnicodeError) as exc:
        remove_tree(dest)
        raise UnpackRefused(f"archive unreadable: {exc}") from exc
    except BaseException:
        remove_tree(dest)
        raise


def remove_tree(path: str) -> None:
    """Remove an unpacked tree, even one made read-only; a missing one is fine."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    for dirpath, _dirs, _files in os.walk(path):
        try:
            mode = os.lstat(dirpath).st_mode
            if stat.S_ISDIR(mode):
                os.chmod(dirpath, stat.S_IMODE(mode) | stat.S_IRWXU)
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)


_STAGING = re.compile(r"(?:[0-9a-f]{64}\.tmp-[0-9a-f]+|\.unpack-.+)\Z")


def sweep_staging(cache: str) -> list[str]:
    """Remove the unpacking staging directories (`<digest>.tmp-*`) a previous life of a
    node left in its pack or export cache (it was killed while unpacking); returns them.

    Only for a node's start, before it serves anything: no unpacking is under way then.
    """
    removed = []
    try:
        names = os.listdir(cache)
    except FileNotFoundError:
        return removed
    for name in names:
        if _STAGING.match(name):
            path = os.path.join(cache, name)
            log.info("removing %s, left unpacking when this node last stopped", path)
            remove_tree(path)
            removed.append(path)
    return removed
