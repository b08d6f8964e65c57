"""The schemathesis command line, every phase, against the live service's OpenAPI schema: no
generated request (valid, invalid, wrong or missing Content-Type, stateful sequences) answers 5xx.

This is the run a newcomer types (``schemathesis run URL/docs.json --checks not_a_server_error``),
bounded to a few examples per operation so it takes well under a minute; test_schemathesis.py
drives the same strategies from Python.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = 20


def test_schemathesis_cli_finds_no_server_error(server, tmp_path):
    cli = Path(sys.executable).with_name("schemathesis")
    proc = subprocess.run(
        [str(cli), "--no-color", "run", f"{server.url}/docs.json", "--checks", "not_a_server_error",
         "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(EXAMPLES),
         "--seed", "18", "--workers", "1", "--request-timeout", "30"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", out)
    tested = re.search(r"Tested: (\d+)", out)
    generated = re.search(r"(\d+) generated", out)
    assert selected and tested and generated, out[-3000:]
    assert selected[1] == selected[2] == tested[1]  # every operation of the schema was tested
    assert int(generated[1]) > 10 * int(tested[1])
