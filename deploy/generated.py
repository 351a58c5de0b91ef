"""Files generated from code and committed: write them, or check that they are up to date."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

Files = Callable[[], Mapping[Path, str]]


def stale(files: Files) -> list[str]:
    """The generated files that are missing or differ from what the code writes."""
    return [
        str(path)
        for path, text in files().items()
        if not path.is_file() or path.read_text() != text
    ]


def generator_main(module: str, files: Files, argv: list[str] | None = None) -> None:
    """``python -m <module>`` writes the files; ``--check`` exits 1 if one is out of date."""
    parser = argparse.ArgumentParser(
        prog=module, description=f"Write the files {module} generates."
    )
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = parser.parse_args(argv)
    if args.check:
        if outdated := stale(files):
            sys.exit(f"out of date: {', '.join(outdated)}; run python -m {module}")
        return
    for path, text in files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
