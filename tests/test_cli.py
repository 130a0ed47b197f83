from __future__ import annotations

import subprocess
import sys

from madspatial.cli import main


def test_help_lists_the_demo(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_console_script_version():
    out = subprocess.run(
        [sys.executable, "-m", "madspatial.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("madspatial ")
