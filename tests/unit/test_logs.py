import json
import logging

from resolver.config import LoggingConfig
from resolver.logs import setup_logging


def test_json_logs_are_one_object_per_line(capsys):
    setup_logging(LoggingConfig(level="info", format="json"))
    logging.getLogger("resolver.test").info("policy reloaded: %d entries", 42)
    logging.getLogger("resolver.test").debug("not shown at info")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["level"] == "info"
    assert event["logger"] == "resolver.test"
    assert event["message"] == "policy reloaded: 42 entries"
    assert event["time"].endswith("Z")


def test_text_logs_carry_level_and_logger(capsys):
    setup_logging(LoggingConfig(level="warning", format="text"))
    logging.getLogger("resolver.test").warning("upstream down")
    logging.getLogger("resolver.test").info("hidden")
    (line,) = capsys.readouterr().err.splitlines()
    assert "WARNING resolver.test: upstream down" in line
