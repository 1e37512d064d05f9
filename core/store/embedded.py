"""The embedded PostgreSQL used when no DATABASE_URL is given: a real server from the pgserver wheel."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> str:
    """Start (or join) PostgreSQL 16 under `data_dir` and return its URL.

    The server outlives this process only while another process still uses it; pgserver counts users.
    """
    # pgserver asks platformdirs for a runtime dir on import, which warns unless one exists, owned by
    # us with mode 0700; give it one beside the data rather than depend on the login session's.
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = data_dir.resolve().parent / "run"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import pgserver  # imported here: it is only needed when no DATABASE_URL is set

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir.resolve()), cleanup_mode="stop")
    url: str = server.get_uri()
    log.info("embedded PostgreSQL running in %s", data_dir)
    return url
