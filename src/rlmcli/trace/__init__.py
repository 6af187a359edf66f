"""Views of a run's events: plain lines (pipes, cron, -v) and the JSONL trace file."""
