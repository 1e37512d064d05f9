"""The image's recipe without Docker: the wheel in a clean venv, installed as the Dockerfile does, serving HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.bot_process import BotProcess, bot_env
from tests.support.fake_slack import FakeSlack

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str | Path) -> None:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"


def _healthcheck_command() -> list[str]:
    """The HEALTHCHECK's CMD array, read from the Dockerfile itself."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert match, "the Dockerfile has no HEALTHCHECK … CMD [...]"
    return list(json.loads(match.group(1)))


@pytest.mark.smoke
def test_wheel_in_a_clean_venv_serves_and_passes_the_healthcheck(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack
) -> None:
    """`pip wheel`, a pip-less venv filled by the builder's pip, `tokens-bot serve` from it: /healthz answers
    200 and the Dockerfile's HEALTHCHECK command exits 0."""
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, ROOT)
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--quiet",
        *wheels.glob("*.whl"),
    )
    # The serving code is the installed copy, not this checkout.
    located = subprocess.run(
        [venv / "bin" / "python", "-c", "import bot, core; print(bot.__file__, core.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert str(ROOT / "bot") not in located.stdout and str(venv) in located.stdout

    env = {**bot_env(database_url, fake_slack.api_url), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    bot = BotProcess(env, tmp_path / "bot.log", argv=[str(venv / "bin" / "tokens-bot"), "serve"])
    try:
        healthcheck = subprocess.run(
            _healthcheck_command(), env={**env, "PORT": str(bot.port)}, capture_output=True, timeout=10
        )
        assert healthcheck.returncode == 0, healthcheck.stderr
    finally:
        bot.stop()
