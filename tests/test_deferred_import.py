"""The docker engine loads its SDK when first used, and paramiko only when an ``ssh://``
daemon needs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    """A fresh interpreter: what is imported at start-up cannot be seen from inside pytest."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_importing_the_docker_engine_loads_no_sdk_and_its_first_use_no_paramiko() -> None:
    """``auto`` reads the engine's plugin without wanting the engine: no SDK yet. The SDK
    loads with the engine's first use of it, still without paramiko."""
    out = run_python(
        """
        import sys
        import mirror.engines.docker as engine
        print("docker.api" in sys.modules, "requests" in sys.modules)
        engine.docker.errors.APIError  # the engine's first use of the SDK
        print("paramiko.client" in sys.modules, "docker.transport.sshconn" in sys.modules)
        """
    )
    assert out.splitlines() == ["False False", "False True"]


def test_paramiko_loads_on_first_use_for_the_ssh_adapter() -> None:
    out = run_python(
        """
        import sys
        import mirror.engines.docker
        from docker.transport import sshconn
        client = sshconn.paramiko.SSHClient()
        print(type(client).__module__, type(sys.modules["paramiko"]).__name__)
        import paramiko
        print(paramiko.SSHClient is type(client))
        """
    )
    assert out.splitlines() == ["paramiko.client module", "True"]
