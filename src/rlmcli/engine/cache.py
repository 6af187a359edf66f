"""The response cache: SQLite under $RLM_HOME/cache, keyed by everything that shapes a reply."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

# Bumped when the engine's prompts change in a way that should not reuse old replies.
PROMPT_VERSION = 2


class ResponseCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS responses(key TEXT PRIMARY KEY, value TEXT, created REAL)")
        self.lock = threading.Lock()

    @staticmethod
    def key(model: str, api_base: str | None, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
        """Model, endpoint, sampling parameters, prompt version and the messages themselves."""
        blob = json.dumps([PROMPT_VERSION, model, api_base or "", params, messages], sort_keys=True,
                          ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if not row:
            return None
        try:
            value = json.loads(row[0])
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, json.dumps(value), time.time()))

    def close(self) -> None:
        with self.lock:
            self.conn.close()
