"""The README's first quick-start command works on this machine as shipped."""

import subprocess
import sys

from tests.support.env import clean_env
from tests.support.relay import REPO


def test_demo_runs_the_whole_flow_and_exits_0(tmp_path):
    env = clean_env()
    result = subprocess.run(
        [sys.executable, "-m", "webinar_proxy", "demo", "--keep", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo finished: everything as expected" in result.stdout
    assert "join link: https://events.webinar.ru/" in result.stdout
    delivered = sorted((tmp_path / "delivered").glob("*.eml"))
    assert len(delivered) == 6  # ordinary, invitation + notice, update, cancellation + notice
    # Every delivered file says what it is; the organizer's notices are named as such.
    assert result.stdout.count("(the relay's notice to the organizer about the conference)") == 2
    assert result.stdout.count("(the mail as the recipients get it)") == 4
    # Libraries stay quiet at INFO: no httpx request lines (a DELETE's 404 looked like a failure).
    assert "HTTP Request:" not in result.stderr and "404 Not Found" not in result.stderr
    assert "conference deleted" in result.stderr
