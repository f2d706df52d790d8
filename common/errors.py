"""The one convention for failures a user can fix: ``error: <what, where, how to fix>`` on stderr,
exit status 2, never a traceback. Every command's ``main`` runs its body through ``run_command``.
"""
import sys
from typing import Callable


class UserError(Exception):
    """Bad input, a missing file, a config or run that cannot go on: reported as one message."""


def run_command(action: Callable[[], object]) -> int:
    """Run a command's body: exit status 0; 2 with one ``error:`` line for a UserError, a network
    that does not answer, or a file that cannot be read or written (a read-only folder, a full
    disk); 130 on Ctrl-C."""
    try:
        action()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ConnectionError, TimeoutError) as e:
        print(f"error: no answer from the network ({e}); check the connection, or work from local files", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}; files being written were left as they were", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: files being written were left as they were", file=sys.stderr)
        return 130
    return 0
