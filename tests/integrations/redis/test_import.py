"""Without coredis the integration says which extra to install."""

from __future__ import annotations

import subprocess
import sys


def test_without_coredis_the_error_names_the_extra() -> None:
    """`import supervisor.integrations.redis` with coredis missing: an ImportError saying
    `pip install 'ringfence[redis]'` (a subprocess: this one has coredis imported)."""
    code = (
        "import sys; sys.modules['coredis'] = None\n"
        "try:\n"
        "    import supervisor.integrations.redis\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    expected = "supervisor.integrations.redis needs coredis: pip install 'ringfence[redis]'"
    assert expected == result.stdout.strip()
