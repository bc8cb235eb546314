"""Log lines carry the clip and render ids; TUTTI_LOG_FORMAT=json gives one JSON object
a line."""

from __future__ import annotations

import io
import json
import logging

from portal.logs import IdsFilter, JsonFormatter, log_context


def _logger() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(IdsFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logs")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_a_tasks_lines_carry_its_ids_as_json():
    logger, out = _logger()
    with log_context(render_id=7, task="render_part 2"):
        logger.info("segment %d drawn", 2)
    logger.info("clip %s: received -> checked", 12)  # outside a task: named in the message
    logger.info("nothing to do with anyone")
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["render_id"] == 7 and first["task"] == "render_part 2"
    assert first["message"] == "segment 2 drawn" and first["level"] == "INFO"
    assert first["time"].endswith("Z") and "clip_id" not in first
    assert second["clip_id"] == 12
    assert "clip_id" not in third and "render_id" not in third


def test_an_exception_is_kept_in_the_json_line():
    logger, out = _logger()
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("render 3: failed")
    line = json.loads(out.getvalue())
    assert line["render_id"] == 3 and "ValueError: bad" in line["exception"]
