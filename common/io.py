"""Atomic, pickle-free storage: an interrupted run never leaves a half-written file behind, and a file system that
refuses a write (read-only, full, over `ulimit -f`) is one StorageError naming the file (`writing`).

Also the one reader of the user's text files (protocols, trial lists, score files, configs, CSVs):
a UTF-8 byte-order mark is dropped, UTF-16 and other non-UTF-8 files get one line naming the file.
"""
from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import itertools
import json
import os
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping, Sequence

import numpy as np

from common.errors import (
    WRITE_ONLY_CAUSES,
    WRITER_CAUSES,
    DamagedFileError,
    InputError,
    MissingFilesError,
    StorageError,
    cannot_write,
    storage_oserror,
)
from common.file_identity import identity

_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")   # what atomic_write's mkstemp names look like
_MODE: int | None = None


def new_file_mode() -> int:
    """The permission bits a plain `open(path, "w")` would give under the current umask (e.g. 0644 for 022).
    mkstemp creates 0600 files; an output folder shared with a group must not end up unreadable to it."""
    global _MODE
    if _MODE is None:
        umask = os.umask(0o022)
        os.umask(umask)
        _MODE = 0o666 & ~umask
    return _MODE


@contextlib.contextmanager
def writing(path: str | os.PathLike, key: str | None = None,
            causes: dict[int, str] = WRITER_CAUSES) -> Iterator[None]:
    """Turns the file system refusing a write in the block (an OSError with one of `causes`, or an error raised
    while handling one) into `StorageError('[KEY ]PATH: cannot write (CAUSE)')`.

    The writer names the path because the OS often does not: a write past `ulimit -f` or onto a full disk raises
    an OSError without a file name. Give `causes=WRITE_ONLY_CAUSES` around code that also reads (a permission
    error there may be about an input)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as e:
        refused = storage_oserror(e, causes)
        if refused is None:
            raise
        raise cannot_write(path, refused, key) from e


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Writes to a temporary file beside `path` and renames it into place only on success.

    The file gets the permissions of an ordinary new file (umask), not mkstemp's 0600. When the file system
    refuses (read-only, no permission, full, over quota, over `ulimit -f`), the temporary is removed and a
    StorageError names `path` and the cause; an earlier file at `path` is left as it was."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name to write to")
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    f = os.fdopen(fd, mode, encoding=None if binary else encoding)
    try:
        with writing(path, causes=WRITE_ONLY_CAUSES):     # the caller's block: its reads keep their own errors
            yield f
        with writing(path):
            f.flush()
            os.fchmod(f.fileno(), new_file_mode())
            os.fsync(f.fileno())
            f.close()                                     # NFS may report a full disk only here
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()                                     # the descriptor is closed even when the flush fails
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable(path: str | os.PathLike, key: str | None = None, folder: bool = False) -> None:
    """Fails now, with the StorageError a write would give later, when the file `path` (with `folder`: files in the
    folder `path`) cannot be created because the nearest existing folder is read-only or not writable. Writes
    nothing: for outputs written only after long work (a full disk still shows at the write itself)."""
    existing = Path(path).absolute() if folder else Path(path).absolute().parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        code = errno.ENOTDIR
    elif not os.access(existing, os.W_OK | os.X_OK):
        code = errno.EROFS if os.statvfs(existing).f_flag & os.ST_RDONLY else errno.EACCES
    else:
        return
    raise cannot_write(path, OSError(code, os.strerror(code), str(existing)), key)


def is_stale_temporary(path: Path) -> bool:
    """Whether `path` is named like an atomic_write temporary (left behind only by a killed process)."""
    return bool(_TEMPORARY.match(path.name))


def remove_temporaries(folder: str | os.PathLike, names: Sequence[str] | None = None) -> list[Path]:
    """Removes atomic_write temporaries directly in `folder` (only those of `names` when given); returns them.

    Call it only while no other process writes there (under the folder lock, or for files that only this
    writer makes): a SIGKILL during a write leaves `.NAME.XXXXXXXX.tmp` that nothing else cleans up."""
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            path = Path(entry.path)
            if entry.is_file(follow_symlinks=False) and is_stale_temporary(path) and (
                    names is None or any(entry.name.startswith(f".{n}.") for n in names)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def read_text(path: str | os.PathLike, what: str = "text file") -> str:
    """The whole of a user's text file, decoded as UTF-8 with an optional byte-order mark dropped.

    Every failure is one InputError naming the file: missing, a folder, UTF-16 (what Windows editors often
    save), or other bytes that are not UTF-8. `what` says what the file is for ('protocol file', ...)."""
    return "".join(line for _, line in text_lines(path, what))


def text_lines(path: str | os.PathLike, what: str = "text file") -> Iterator[tuple[int, str]]:
    """(line number from 1, line with its newline) of a user's text file, read as a stream.

    Same checks and messages as `read_text`, but a 1.09 M-line VoxCeleb2 train list is never held whole
    (one text plus a list of lines would be ~130 MB on top of what the caller keeps)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise MissingFilesError(f"{path}: {what} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a {what}") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    with f:
        for number, data in enumerate(f, start=1):
            if number == 1:
                if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    raise InputError(f"{path}: {what} is UTF-16 encoded; save it as UTF-8 "
                                     "(e.g. iconv -f UTF-16 -t UTF-8)")
                data = data.removeprefix(codecs.BOM_UTF8)
            try:
                yield number, data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{number}: {what} is not UTF-8 text (byte 0x{data[e.start]:02x})") from None


def save_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Saves named arrays as an uncompressed .npz, atomically. Object arrays are refused (they would pickle)."""
    for name, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise TypeError(f"{path}: array '{name}' has dtype object, which would be pickled")
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads an .npz written by `save_arrays` (never unpickles); damage is one DamagedFileError naming the file."""
    with ArrayFile(path) as z:
        return {k: z[k] for k in z.files}


def save_embeddings(path: str | os.PathLike, ids: Sequence[str], embeddings: np.ndarray, **extra: np.ndarray) -> None:
    """Embeddings with their utterance ids, row i belonging to ids[i]."""
    embeddings = np.asarray(embeddings)
    if len(ids) != len(embeddings):
        raise ValueError(f"{path}: {len(ids)} ids but {len(embeddings)} embedding rows")
    save_arrays(path, ids=np.asarray(list(ids), dtype=str), embeddings=embeddings, **extra)


def load_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Returns (ids, embeddings) from a file written by `save_embeddings`."""
    arrays = load_arrays(path)
    if "ids" not in arrays or "embeddings" not in arrays:
        raise InputError(f"{path}: not an embedding file (needs arrays 'ids' and 'embeddings', has {sorted(arrays)})")
    return arrays["ids"].tolist(), arrays["embeddings"]


_LINES_PER_WRITE = 16384     # lines joined into one write by write_lines (~1 MB of score lines)


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Writes a text file of lines atomically: re-running overwrites, never appends. `lines` may be a generator: it is
    written in blocks of lines joined at once (a score file of 835k lines is two write calls per block, not per line),
    so a caller never needs to hold every line."""
    lines = iter(lines)
    with atomic_write(path) as f:
        while block := list(itertools.islice(lines, _LINES_PER_WRITE)):
            f.write("\n".join(block))
            f.write("\n")


def copy_file(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """An exact copy of `source` at `path`, written atomically (a file that several outputs share, written once)."""
    with open(source, "rb") as src, atomic_write(path, "wb") as f:
        shutil.copyfileobj(src, f, 1 << 20)


def write_json(path: str | os.PathLike, data) -> None:
    """A JSON file, indented, written atomically (results, states, run records)."""
    with atomic_write(path) as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def read_json(path: str | os.PathLike) -> dict | None:
    """A JSON object from `path`, or None when the file is missing, unreadable or not an object
    (used to decide whether finished work can be skipped)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None
    return data if isinstance(data, dict) else None


# What reading a damaged archive raises: zipfile (cut short, CRC mismatch, mangled headers), numpy (a header or
# length that makes no sense; a file that is not an .npz falls through to pickle, which is refused), the OS.
_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, struct.error, NotImplementedError)


def damage_reason(error: BaseException) -> str:
    """What an exception from reading an archive says about the file, in a few words."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "pickle" in text:                       # np.load's last resort for bytes that are neither .npy nor .npz
        return "not an .npz archive"
    if isinstance(error, EOFError) or text == "No data left in file":
        return "empty or cut short"
    if text == "File is not a zip file":
        return "not a zip archive: cut short, or another kind of file"
    crc = re.fullmatch(r"Bad CRC-32 for file '(.*)'", text)
    return f"bad CRC-32 of {crc.group(1)}" if crc else text


class ArrayFile:
    """The arrays of an .npz file, each read when asked for: damage found on opening, on reading an array (the
    zip CRC of every array is checked as it is read) or by `verify` is one DamagedFileError naming the file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            z = np.load(self.path, allow_pickle=False)
        except FileNotFoundError:
            raise MissingFilesError(f"{self.path}: file does not exist") from None
        except _DAMAGE as e:
            raise self._damaged(e) from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise DamagedFileError(f"{self.path}: damaged (a single .npy array, not an .npz archive)")
        self._z = z

    def _damaged(self, error: BaseException) -> DamagedFileError:
        if isinstance(error, OSError) and error.strerror:     # permissions, a folder, an I/O error: not the bytes
            return DamagedFileError(f"{self.path}: cannot be read ({error.strerror})")
        return DamagedFileError(f"{self.path}: damaged ({damage_reason(error)})")

    @property
    def files(self) -> list[str]:
        return list(self._z.files)

    def __contains__(self, name: str) -> bool:
        return name in self._z.files

    def __getitem__(self, name: str) -> np.ndarray:
        """The array `name` (KeyError when the archive has none of that name)."""
        if name not in self._z.files:
            raise KeyError(f"{self.path}: no array {name!r}")
        try:
            return self._z[name]
        except _DAMAGE as e:
            raise self._damaged(e) from None

    def verify(self) -> None:
        """Reads every member once to check its CRC, without decoding arrays (as fast as the disk reads)."""
        try:
            bad = self._z.zip.testzip()
        except _DAMAGE as e:
            raise self._damaged(e) from None
        if bad is not None:
            raise DamagedFileError(f"{self.path}: damaged (bad CRC-32 of {bad})")

    def close(self) -> None:
        self._z.close()

    def __enter__(self) -> "ArrayFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def zip_damage(path: str | os.PathLike) -> str | None:
    """What is wrong with a zip-format file (torch.save's format), None when every member matches its CRC-32 or
    the file is not a zip archive at all (a legacy torch pickle: its reader judges it).

    Why: torch.load does not check the CRCs its own writer stores, so a flipped bit in a weight tensor loads
    silently as another weight. Reading the file once more costs ~0.06 s per 200 MB from the page cache."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except _DAMAGE as e:
        return damage_reason(e)
    return None if bad is None else f"bad CRC-32 of {bad}"


_DIGESTS: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's content; remembered per path and file identity (common/file_identity.py: size,
    modification and change time, inode) so a process hashes each checkpoint or protocol once however many
    stages and systems ask, and hashes again when the file is rewritten or replaced, even with its mtime kept."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MissingFilesError(f"{path}: file does not exist") from None
    key = (str(path.resolve()), *identity(st))
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def torch_load_problem(error: Exception) -> str:
    """What a failed `torch.load` says, as a short phrase: a file that is neither a zip archive nor a legacy pickle
    fails deep in the unpickler (a KeyError of a byte value, 'invalid load key'), which tells a user nothing."""
    if (isinstance(error, (KeyError, EOFError)) or type(error).__name__ == "UnpicklingError"
            or "load key" in str(error)):
        return "not a PyTorch file: neither a zip archive nor a legacy pickle"
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(error).__name__


def load_weights(path: str | os.PathLike, *, label: str | None = None, hint: str = "",
                 pickled_hint: str = "") -> dict:
    """A checkpoint's top-level dict via `torch.load(weights_only=True)` on CPU; one-line InputError otherwise.

    `label` names the file in messages (default: its name); `hint` ends every message (e.g. the formats a reader
    expects), `pickled_hint` the one for a file holding pickled Python objects, whose refused class is named (a
    fairseq checkpoint's cfg, a whole pickled model), instead of `hint`."""
    import torch

    path = Path(path)
    label = path.name if label is None else label
    if not path.is_file():
        raise InputError(f"{label}: checkpoint file not found")
    damage = zip_damage(path)
    if damage:
        raise DamagedFileError(f"{label}: not a loadable weights-only checkpoint, damaged ({damage}){hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refusals and corrupt archives alike
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if refused:
            raise InputError(f"{label}: not a loadable weights-only checkpoint (it holds pickled Python objects, "
                             f"{refused.group(1)}){pickled_hint or hint}") from None
        raise InputError(f"{label}: not a loadable weights-only checkpoint ({torch_load_problem(e)}){hint}") from None
    if not isinstance(state, Mapping):
        raise InputError(f"{label}: checkpoint holds a {type(state).__name__}, not a state dict{hint}")
    return dict(state)
