"""Python in a fresh process with a clean callbridge environment: settings as a deployment
reads them, not as this test run configured them."""

from __future__ import annotations

import os
import subprocess
import sys

from callbridge.local_server import ROOT


def run_with_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python in the project with a clean callbridge environment plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBRIDGE_", "DEBUG"))}
    clean.pop("DATABASE_URL", None)
    clean.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, "CALLBRIDGE_DATA_DIR": str(ROOT / "var"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_in_subprocess(
    env: dict[str, str], expression: str
) -> subprocess.CompletedProcess[str]:
    """Print `expression` over the settings module (`s`) in a fresh process."""
    return run_with_env(env, "-c", f"import callbridge.settings as s; print({expression})")
