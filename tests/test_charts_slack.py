"""Charts over real HTTP: `/tokens chart` and the check's Chart button upload through Slack's external
upload (getUploadURLExternal → the bytes → completeUploadExternal) into the asker's direct message only;
the digest shares the fleet's trend in its own thread, and stands when that fails."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import Engine

from bot.entrypoints import jobs
from bot.entrypoints.console import run_console
from core.services.service import TokensService
from core.settings import Settings
from core.store.db import make_engine
from tests.support.databases import scratch_database
from tests.support.fake_slack import FakeSlack, Recorded
from tests.support.ledger import add_usage, add_user
from tests.support.slack_http import SlackClient, ask, reply_text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(content: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, which must come first."""
    assert content[:8] == PNG_SIGNATURE and content[12:16] == b"IHDR"
    return int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")


def assert_a_drawn_png(content: bytes) -> None:
    """A PNG at phone size that decodes, and is a picture: not every pixel the same colour."""
    assert png_size(content) == (900, 600)
    image = Image.open(io.BytesIO(content))
    image.load()
    assert image.size == (900, 600)
    colours = image.convert("RGB").getcolors(maxcolors=900 * 600)
    assert colours is not None and len(colours) > 10


def calls_since(fake: FakeSlack, start: int, method: str) -> list[Recorded]:
    return [c for c in fake.calls[start:] if c.method == method or c.path == method]


def user_with_recent_usage(engine: Engine, email: str) -> str:
    """A user with a grant, usage over the last weeks (a failure among it), and a profile 500 tokens off."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        user = add_user(conn, remaining=50_000 - 6_000 - 500, used=6_500, email=email)
        add_usage(conn, user, tokens=50_000, action="admin_grant", model=None, at=now - timedelta(days=40))
        for day in range(30):
            action = "chat_conversation" if day % 3 else "image_generation"
            add_usage(conn, user, tokens=200, action=action, at=now - timedelta(days=day, hours=1))
        add_usage(conn, user, tokens=900, success=False, error="boom", at=now - timedelta(days=3))
    return user


def uploaded_chart(fake: FakeSlack, start: int, asker: str) -> tuple[Recorded, bytes]:
    """The one file shared since `start`: completed into `asker`'s DM, its bytes those POSTed for it."""
    [complete] = fake.wait_for(
        lambda c: c.method == "files.completeUploadExternal" and fake.calls.index(c) >= start
    )
    [opened] = calls_since(fake, start, "conversations.open")
    assert opened.body["users"] == asker
    [ticket] = calls_since(fake, start, "files.getUploadURLExternal")
    file_id = ticket.response["file_id"]
    assert complete.body["channel_id"] == f"D{asker}"
    assert [f["id"] for f in complete.body["files"]] == [file_id]
    content = fake.uploads([file_id])[file_id]
    assert int(ticket.body["length"]) == len(content) and ticket.body["filename"].endswith(".png")
    return complete, content


def test_chart_command_uploads_the_png_to_the_askers_dm_only(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """The command typed in C1 gets an ephemeral reply there, and the picture lands in the asker's DM:
    never in the channel the command came from."""
    user_with_recent_usage(engine, "chart-me@example.com")
    start = len(fake_slack.calls)
    body = ask(slack, fake_slack, "chart chart-me@example.com 30", user="UVIEWER")
    assert body["response_type"] == "ephemeral"
    assert "Sent the chart of chart-me@example.com to you in a direct message" in reply_text(body)
    complete, content = uploaded_chart(fake_slack, start, "UVIEWER")
    assert "chart-me@example.com" in complete.body["files"][0]["title"]
    assert_a_drawn_png(content)
    shared = calls_since(fake_slack, start, "files.completeUploadExternal")
    posted = calls_since(fake_slack, start, "chat.postMessage")
    assert all(c.body.get("channel_id") != "C1" for c in shared) and not posted


def test_the_check_replys_chart_button_sends_the_chart_to_the_clicker_alone(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """Chart under a check: the clicker's DM gets the picture, the check stays, the answer is theirs alone."""
    user = user_with_recent_usage(engine, "chart-button@example.com")
    check = ask(slack, fake_slack, f"check {user}")
    [chart_value] = [
        e["value"]
        for b in check["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "usage_chart"
    ]
    start = len(fake_slack.calls)
    result, name = slack.click("usage_chart", chart_value, user="UADMIN2", channel="C1")
    assert result.status == 200
    [answer] = fake_slack.responses(name)
    assert answer["replace_original"] is False and answer["response_type"] == "ephemeral"
    assert "Sent the chart of chart-button@example.com to you in a direct message" in reply_text(answer)
    _, content = uploaded_chart(fake_slack, start, "UADMIN2")
    assert_a_drawn_png(content)


def test_bad_days_unknown_users_and_strangers_get_friendly_replies_and_no_upload(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """Each mistake is answered with what was wrong; none of them opens a DM or uploads anything."""
    user_with_recent_usage(engine, "chart-private@example.com")
    start = len(fake_slack.calls)
    cases: dict[str, tuple[str, str]] = {
        "chart": ("UADMIN1", "`chart` takes a user"),
        "chart chart-private@example.com 0": ("UADMIN1", "A chart covers 1 to 366 days"),
        "chart chart-private@example.com 367": ("UADMIN1", "A chart covers 1 to 366 days"),
        "chart chart-private@example.com 99999999999999": ("UADMIN1", "A chart covers 1 to 366 days"),
        "chart chart-private@example.com lots": ("UADMIN1", "`lots` is not a number of days"),
        "chart chart-private@example.com 30 extra": ("UADMIN1", "`chart` takes a user"),
        "chart not-a-user": ("UADMIN1", "is neither a UUID nor an email address"),
        "chart nobody@nowhere.example": ("UADMIN1", "No user with email"),
        f"chart {uuid.uuid4()}": ("UADMIN1", "No user with id"),
        "chart chart-private@example.com": ("USTRANGER", "only tokens-bot admins and viewers"),
    }
    for text, (asker, expected) in cases.items():
        shown = reply_text(ask(slack, fake_slack, text, user=asker))
        assert expected in shown, (text, shown)
        assert "Something went wrong" not in shown
    assert "/tokens chart" in reply_text(ask(slack, fake_slack, "help"))
    methods = {c.method for c in fake_slack.calls[start:]}
    assert not methods & {"conversations.open", "files.getUploadURLExternal", "files.completeUploadExternal"}


def test_a_user_without_ledger_rows_gets_the_clear_message_and_no_upload(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    with engine.begin() as conn:
        add_user(conn, remaining=1_000, email="chart-empty@example.com")
    start = len(fake_slack.calls)
    shown = reply_text(ask(slack, fake_slack, "chart chart-empty@example.com"))
    assert "chart-empty@example.com has no rows in the token_usage ledger" in shown
    assert "Sent the chart" not in shown
    assert not [c for c in fake_slack.calls[start:] if c.method.startswith(("files.", "conversations."))]


def test_a_refused_upload_is_said_so_not_claimed_as_sent(
    slack: SlackClient, fake_slack: FakeSlack, engine: Engine
) -> None:
    """When Slack will not share the file, the asker is told to try again; nothing claims it was sent."""
    user_with_recent_usage(engine, "chart-refused@example.com")
    fake_slack.fail("files.completeUploadExternal", 400)
    shown = reply_text(ask(slack, fake_slack, "chart chart-refused@example.com"))
    assert "Slack did not take the chart of chart-refused@example.com" in shown
    assert "Sent the chart" not in shown


def test_digest_threads_the_trend_chart_and_stands_when_the_upload_fails(
    server_url: str, fake_slack: FakeSlack
) -> None:
    """The trend chart goes into the digest message's own thread in the digest's channel; when Slack
    refuses the upload, the digest is still posted, remembered, and the job succeeds."""
    with scratch_database(server_url, "tokens_trend") as url:
        engine = make_engine(url, pool_size=1)
        user_with_recent_usage(engine, "trend@example.com")
        engine.dispose()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=url,
            slack_bot_token="xoxb-test-token",
            slack_api_url=fake_slack.api_url,
            tokens_slack_retries=0,
        )
        channel = f"CTREND{uuid.uuid4().hex[:6].upper()}"
        start = len(fake_slack.calls)
        assert jobs.digest(settings, channel, dry_run=False) == 0
        [digest] = fake_slack.wait_for(
            lambda c: c.method == "chat.postMessage" and c.body.get("channel") == channel
        )
        [complete] = calls_since(fake_slack, start, "files.completeUploadExternal")
        assert complete.body["channel_id"] == channel
        assert complete.body["thread_ts"] == digest.response["ts"]
        [ticket] = calls_since(fake_slack, start, "files.getUploadURLExternal")
        assert_a_drawn_png(fake_slack.uploads([ticket.response["file_id"]])[ticket.response["file_id"]])

        fake_slack.fail("files.getUploadURLExternal", 400)
        start = len(fake_slack.calls)
        assert jobs.digest(settings, channel, dry_run=False) == 0
        posted: list[dict[str, Any]] = [c.body for c in calls_since(fake_slack, start, "chat.postMessage")]
        assert [p["channel"] for p in posted] == [channel]
        assert "changes since the previous digest" in reply_text(posted[0])
        assert not calls_since(fake_slack, start, "files.completeUploadExternal")


def test_the_console_saves_the_chart_under_the_data_directory(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """In the console the "direct message" is a file under TOKENS_DATA_DIR/charts, and its path is shown."""
    user_with_recent_usage(engine, "chart-console@example.com")
    lines = iter(["/tokens chart chart-console@example.com 7", "quit"])
    out = io.StringIO()
    local = settings.model_copy(update={"tokens_data_dir": tmp_path})
    run_console(TokensService(local, engine), "UADMIN1", read=lambda _prompt: next(lines), out=out)
    [saved] = (tmp_path / "charts").glob("*.png")
    assert_a_drawn_png(saved.read_bytes())
    text = out.getvalue()
    assert "--- file uploaded to DUADMIN1 ---" in text and str(saved) in text
    assert "Sent the chart of chart-console@example.com to you in a direct message" in text
