"""Write files and folders so that a failure leaves nothing half-written behind, and nothing the user had is lost.

Every output is built under a temporary name beside its target and renamed
into place only when complete. The temporary file or folder is created with
the modes ``open()`` / ``mkdir()`` would give (``0o666`` / ``0o777`` less the
umask), not the private ``0o600`` / ``0o700`` of :mod:`tempfile`, since it
becomes the user's file. The final renames run with SIGINT and SIGTERM held
back, so an interrupt either leaves the old output or the new one, never a
``.old`` folder or neither.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from .errors import ExportError

PathLike = str | os.PathLike[str]
_T = TypeVar("_T")


def _names(path: PathLike) -> set[Path]:
    """The path as written (made absolute, lexically normalised) and with every symlink resolved."""
    p = Path(path)
    try:
        return {Path(os.path.abspath(p)), p.resolve()}
    except (OSError, RuntimeError):  # a symlink loop resolves to nothing: its written name is all it has
        return {Path(os.path.abspath(p))}


def within(path: PathLike, folder: PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, by its written or its resolved name."""
    folders = _names(folder)
    return any(p == f or f in p.parents for p in _names(path) for f in folders)


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: equal paths, a symlink to it, or a hard link."""
    if _names(a) & _names(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet
        return False


def check_outputs(outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | None]) -> None:
    """Refuse single-file outputs that would overwrite an input, or each other, before anything runs.

    ``outputs`` and ``inputs`` map an option name (``--csv``, ``model``) to a
    path (None: not given). An output may not be an input, and may not be an
    existing file inside an input folder (a SavedModel), nor a folder; two
    outputs may not be the same file.
    """
    given = {k: v for k, v in outputs.items() if v is not None}
    sources = {k: v for k, v in inputs.items() if v is not None and os.path.lexists(v)}
    for flag, out in given.items():
        if os.path.isdir(out):
            raise ExportError(f"{flag} {out}: is a folder; {flag} names the file to write. Fix: give a file path.")
        for name, src in sources.items():
            if same_file(out, src):
                what = f"is the {name}"
            elif os.path.isdir(src) and os.path.lexists(out) and within(out, src):
                what = f"is part of the {name} {src}"
            else:
                continue
            raise ExportError(f"{flag} {out}: {what}; qextract never overwrites its input. Fix: choose another {flag}.")
    flags = list(given)
    for i, a in enumerate(flags):
        for b in flags[i + 1 :]:
            if same_file(given[a], given[b]):
                raise ExportError(
                    f"{a} and {b} are the same file ({given[a]}); each output needs its own. "
                    f"Fix: give {b} another path."
                )


def held_inputs(folder: PathLike, inputs: Iterable[PathLike]) -> list[Path]:
    """The ``inputs`` that ``folder`` is, contains, or that are symlinks into it (replacing it would lose them)."""
    return [Path(p) for p in inputs if p is not None and within(p, folder)]


def _temp_name(parent: Path, name: str, suffix: str) -> Path:
    return parent / f".{name}.{secrets.token_hex(4)}{suffix}"


def _parent(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


@contextmanager
def atomic_file(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (its folder created); rename it into place only on success.

    The new file gets the mode an existing ``path`` had, else ``0o666`` less the umask.
    """
    target = Path(path)
    parent = _parent(target)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create(
            lambda p: os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), parent, target.name, ".tmp"
        )
    except OSError as e:
        raise ExportError(f"{target}: cannot write in {parent} ({e.strerror}). Fix: choose a writable path.") from None
    os.close(fd)
    try:
        if target.is_file():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        yield tmp
        with _signals_held():
            os.replace(tmp, target)
    except BaseException:
        with _signals_held():
            tmp.unlink(missing_ok=True)
        raise


def _create(make: Callable[[Path], _T], parent: Path, name: str, suffix: str) -> tuple[Path, _T]:
    """Create a new temporary entry with ``make`` under a fresh random name; (its path, what ``make`` returned)."""
    for _ in range(100):
        tmp = _temp_name(parent, name, suffix)
        try:
            return tmp, make(tmp)
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary name")


def check_folder_target(
    path: PathLike, *, force: bool, protect: Iterable[PathLike] = (), argument: str = "out_dir"
) -> Path:
    """Refuse an output folder that cannot be (re)placed; the absolute target path.

    Refused: the current folder or one holding it (replacing it would pull
    the folder out from under the user's shell), an existing file, a
    non-empty folder without ``force``, and, even with ``force``, a folder
    that is, holds, or is linked to from one of ``protect`` (the inputs).
    ``argument`` is the caller's argument naming the folder, as messages name it.
    """
    target = Path(os.path.abspath(path))
    if within(os.getcwd(), target):
        raise ExportError(
            f"{path}: is the current folder or contains it; an export is written beside its folder and renamed "
            "into place, which cannot be done to the folder you are in. "
            f"Fix: name a folder inside it, e.g. {argument}='out'.",
            arguments=(argument,),
        )
    if os.path.lexists(target) and not target.is_dir():
        raise ExportError(f"{path}: exists and is not a folder. Fix: choose another {argument}.", arguments=(argument,))
    held = held_inputs(target, protect) if os.path.lexists(target) else []
    if held:
        raise ExportError(
            f"{path}: holds the input {', '.join(map(str, held))}; qextract never replaces a folder holding its "
            f"input, even with force=True. Fix: choose another {argument}.",
            arguments=(argument,),
        )
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ExportError(
            f"{path}: folder exists and is not empty. "
            f"Fix: choose another {argument}, or pass force=True to replace it.",
            arguments=(argument, "force"),
        )
    return target


@contextmanager
def atomic_dir(
    path: PathLike,
    *,
    force: bool = False,
    protect: Iterable[PathLike] = (),
    replaceable: Callable[[Path], None] | None = None,
    argument: str = "out_dir",
) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it becomes ``path`` only when the block succeeds.

    ``path`` is checked by :func:`check_folder_target` (``argument``: what
    the caller calls it). An existing non-empty ``path`` (with ``force``) is
    passed to ``replaceable``, which raises to refuse it, before anything is
    written and again just before it is replaced; it is replaced only after
    the new content is complete.
    """
    protect = list(protect)
    target = check_folder_target(path, force=force, protect=protect, argument=argument)
    if replaceable is not None and target.is_dir() and any(target.iterdir()):
        replaceable(target)
    parent = _parent(target)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp, _ = _create(lambda p: os.mkdir(p, 0o777), parent, target.name, ".partial")
    except OSError as e:
        raise ExportError(
            f"{path}: cannot write in {parent} ({e.strerror}). Fix: choose a writable {argument}.",
            arguments=(argument,),
        ) from None
    try:
        yield tmp
        check_folder_target(path, force=force, protect=protect, argument=argument)
        if replaceable is not None and target.is_dir() and any(target.iterdir()):
            replaceable(target)
        with _signals_held():
            _swap_in(tmp, target)
    except BaseException:
        with _signals_held():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, moving an existing ``target`` aside first and back if the rename fails."""
    if not os.path.lexists(target):
        os.replace(tmp, target)
        return
    old, _ = _create(lambda p: os.mkdir(p, 0o700), _parent(target), target.name, ".old")
    os.replace(target, old / "x")
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old / "x", target)
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back during a few renames; act on them right after.

    Python runs signal handlers in the main thread between bytecodes, so
    swapping the Python-level handlers for a recorder defers them whichever
    thread the operating system delivered them to. Outside the main thread
    handlers cannot be changed (and signals do not interrupt that thread).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is not None and handler != signal.SIG_IGN:
            previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)
