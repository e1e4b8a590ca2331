"""Tools that only look at a Redis outbox create nothing: not its local fallback file."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from stigg_cache.cli import main
from stigg_cache.testing.outbox_conformance import NOW, events
from stigg_cache_redis import open_redis_outbox

from conftest import url_for


def test_outbox_status_on_redis_reads_it_and_creates_no_local_outbox(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    box = open_redis_outbox(url)
    box.enqueue(events(2), NOW)
    box.close()
    (tmp_path / "local-outbox.db").unlink()  # the writer's; a reader must not make one
    for command in (["outbox", "status"], ["outbox", "dead-letters"]):
        result = CliRunner().invoke(main, [*command, "--outbox", url])
        assert result.exit_code == 0, result.output
    assert "pending 2" in CliRunner().invoke(main, ["outbox", "status", "--outbox", url]).output
    assert sorted(tmp_path.iterdir()) == []
