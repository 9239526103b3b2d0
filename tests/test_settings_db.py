"""``MIRROR_DB`` is a file path or a PostgreSQL URL, and a URL's password is a secret."""

from __future__ import annotations

from pathlib import Path

from bot.runtime import Deployment
from bot.settings import Settings


def test_a_path_stays_a_path_and_its_directory_holds_the_bot_s_files(tmp_path: Path) -> None:
    settings = Settings(mirror_db=str(tmp_path / "data" / "m.db"))
    assert settings.mirror_db == tmp_path / "data" / "m.db"
    assert settings.data_dir == tmp_path / "data"
    assert settings.secrets() == []


def test_a_postgres_url_is_kept_as_written_and_its_password_is_a_secret() -> None:
    url = "postgresql://mirror:p%40ss-word@db.internal:5433/mirror"
    settings = Settings(mirror_db=url)
    assert settings.mirror_db == url
    assert "p%40ss-word" in settings.secrets()
    assert "p@ss-word" in settings.secrets()  # as the server gets it, and as written
    assert settings.data_dir.name == "hub-mirror-bot"  # not a directory named after the URL


def test_the_deployment_is_local_on_a_file_and_a_queue_on_postgres(tmp_path: Path) -> None:
    assert Deployment.of(Settings(mirror_db=str(tmp_path / "m.db"))) is Deployment.LOCAL
    url = "postgresql://mirror:pw@db.internal/mirror"
    assert Deployment.of(Settings(mirror_db=url)) is Deployment.QUEUE
    assert Deployment.of(Settings(mirror_db="postgres://db.internal/m")) is Deployment.QUEUE
