"""The product works without the emulators installed, and says how to install them when a
command needs them (issue 12: the emulators are their own distribution)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Run bcdv with bcdv_emulators made unimportable (as in a production install).
HIDE = ("import sys, importlib.abc\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'bcdv_emulators':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from bcdv.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")


def _bcdv(*argv: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "BCDV_MAPPINGS_DIR": str(ROOT / "include" / "mappings")}
    return subprocess.run([sys.executable, "-c", HIDE, *argv], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)


def test_bcdv_runs_without_the_emulators(tmp_path: Path) -> None:
    proc = _bcdv("mappings", "validate", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bcdv_emulators" not in proc.stderr


@pytest.mark.parametrize("argv", [("emulators", "start"), ("demo",)])
def test_commands_that_need_the_emulators_say_how_to_install_them(
        tmp_path: Path, argv: tuple[str, ...]) -> None:
    proc = _bcdv(*argv, tmp_path=tmp_path)
    assert proc.returncode != 0
    assert "pip install -e emulators/" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_product_wheel_holds_no_emulator_module(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheel = next(tmp_path.glob("bcdv-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("bcdv/engine/") for n in names)
    assert not [n for n in names if "emulator" in n.split("/")[0] or "/emulators/" in n]
