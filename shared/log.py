"""One structured log line per meaningful action, for every component.

Lines are JSON objects (`{"ts":..,"level":..,"component":..,"event":..,...}`) so operators can
grep them and tools can parse them; `event(...)` is the one way components log an action.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_component = "kubenats"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if msg.startswith("{") and msg.endswith("}"):
            body = msg[1:-1]
        else:
            body = '"event":"log","msg":' + orjson.dumps(msg).decode()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        head = f'{{"ts":"{ts}","level":"{record.levelname.lower()}","component":"{_component}",'
        line = head + body + "}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(component: str, level: str = "INFO") -> None:
    global _component
    _component = component
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(logger: logging.Logger, action: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one action as a JSON line: event name plus fields."""
    if not logger.isEnabledFor(level):
        return
    payload = orjson.dumps({"event": action, **fields}, default=str).decode()
    logger.log(level, payload)
