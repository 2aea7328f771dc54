"""Running `edgepipe` from a given checkout, for benchmarks that compare two (e.g. main before a change).

Each checkout's virtual environment holds an editable install that maps `edgepipe` to that
checkout, so its own Python is what runs its code; the working directory alone does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python -c RUN args...` is `edgepipe args...` with the importing Python's edgepipe.
RUN = "import sys\nfrom edgepipe.cli import main\nsys.exit(main(sys.argv[1:]))"


def checkout_python(checkout: Path) -> str:
    """The checkout's own virtual environment's Python, else the one running this script."""
    python = checkout / ".venv" / "bin" / "python"
    return str(python) if python.exists() else sys.executable
