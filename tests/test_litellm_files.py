"""The files rlm reads from litellm's package folder (litellm_files.py). litellm does not promise
to keep them where they are: when an upgrade moves one, these fail and say which, instead of
prices turning unknown and token counting trying to download its encoding."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rlmcli import litellm_files


def test_the_price_map_is_where_rlm_reads_it_and_prices_a_known_model() -> None:
    folder = litellm_files.package_dir()
    assert folder is not None, "litellm is not installed"
    path = litellm_files.prices()
    assert path is not None, f"litellm no longer ships {litellm_files.PRICES} in {folder}: prices and windows would be unknown"
    entry = json.loads(path.read_text(encoding="utf-8"))["gpt-4o-mini"]
    assert entry["input_cost_per_token"] > 0 and entry["max_input_tokens"] >= 100_000


def test_the_bundled_encodings_build_o200k_base_with_no_network() -> None:
    """tiktoken reads its cache folder first and downloads only on a miss: with every proxy pointing
    at a closed port, a miss fails (a download cannot happen), a hit builds the encoding."""
    folder = litellm_files.tokenizers()
    assert folder is not None, f"litellm no longer ships {litellm_files.TOKENIZERS}: token counting would download"
    dead = "http://127.0.0.1:9"
    env = dict(os.environ, TIKTOKEN_CACHE_DIR=str(folder), HTTPS_PROXY=dead, HTTP_PROXY=dead, https_proxy=dead,
               http_proxy=dead, NO_PROXY="", no_proxy="")
    code = "import tiktoken; print(len(tiktoken.get_encoding('o200k_base').encode('a contract between two parties')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and int(out.stdout) > 0, out.stderr[-500:]
