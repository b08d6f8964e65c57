"""Where the bench scripts' figures go: printed, and appended to bench/RESULTS.md with the
header that says how they were made (unless the script was given --no-append)."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def publish(header: str, table: str, append: bool) -> None:
    print("\n" + header + "\n" + table)
    if append:
        with RESULTS.open("a") as f:
            f.write("\n" + header + "\n" + table + "\n")
        print(f"appended to {RESULTS}")
