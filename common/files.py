"""The files every stage reads and writes: JSON lines, whole files written atomically, sha256
digests, and where a data file's report lives.

A file is written under a temporary name beside its target and renamed into place, so a failure
or Ctrl-C leaves the previous version (or nothing), never half a file.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path

from common.errors import UserError


class AtomicFile:
    """A file written under a temporary name and renamed into place by ``commit``."""

    def __init__(self, path: Path, binary: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        self.file = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="\n")

    def commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write a whole file so that a failure leaves the previous version (or nothing) in place."""
    f = AtomicFile(path, binary=isinstance(content, bytes))
    try:
        f.file.write(content)
        f.commit()
    except BaseException:
        f.discard()
        raise


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_jsonl(path: Path) -> list:
    """The values of a JSON-lines file, blank lines skipped. A line that is not JSON is a UserError
    naming the file and line (the converters, which count bad lines instead, have their own reader)."""
    rows = []
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))  # bytes: JSON decodes UTF-8 itself
                except UnicodeDecodeError:
                    raise UserError(f"{path}, line {lineno}: not UTF-8 text; re-save the file as UTF-8") from None
                except ValueError as e:
                    raise UserError(f"{path}, line {lineno}: not JSON ({e})") from None
    return rows


def stats_path(data_file: Path) -> Path:
    """``<name>.stats.json`` beside ``<name>.jsonl``: the converter's report on that file."""
    data_file = Path(data_file)
    return data_file.with_name(data_file.name.removesuffix(".jsonl") + ".stats.json")


def missing_local(name: str) -> bool:
    """True when ``name`` is meant as a local folder (absolute, relative, or under an existing
    directory such as outputs/) and that folder does not exist, so a typo in a path fails with a
    clear message. ``beomi/Llama-3-Open-Ko-8B`` is a Hub id unless a ``beomi/`` folder exists here."""
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", ".", "~")) or (len(path.parts) > 1 and Path(path.parts[0]).is_dir())
    return looks_local and not path.exists()


def replace_section(path: Path, heading: str, text: str) -> None:
    """Put ``text`` (which starts with the line ``heading``, a ``## `` heading) in place of that
    section of a markdown file, keeping the other sections; appended if the file has none."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    head, found, rest = old.partition(heading)
    tail = rest[rest.find("\n## "):] if found and "\n## " in rest else ""
    write_atomic(path, head.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n" + tail)
