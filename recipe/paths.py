"""Telling a local model folder from a Hub id, so a typo in a path fails with a clear message."""
from pathlib import Path


def missing_local(name: str) -> bool:
    """True when ``name`` is meant as a local folder (absolute, relative, or under an existing
    directory such as outputs/) and that folder does not exist. ``beomi/Llama-3-Open-Ko-8B`` is a
    Hub id unless a ``beomi/`` folder exists here."""
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", ".", "~")) or (len(path.parts) > 1 and Path(path.parts[0]).is_dir())
    return looks_local and not path.exists()
