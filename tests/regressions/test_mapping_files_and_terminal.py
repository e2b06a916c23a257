"""Mapping files: validation linear in size, a size limit, binary or deeply nested YAML as
file:line errors; and nothing printed to a terminal carries control characters."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from bcdv.cli import main
from bcdv.errors import MappingError
from bcdv.mapping.loader import DEFAULTS_DIR, MAX_FILE_BYTES, load_mapping_file

ANCHOR = '      - {business_central: NET30, dataverse: 1, label: "Net 30"}\n'


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "mappings"
    shutil.copytree(DEFAULTS_DIR, d)
    return d


def _grow(path: Path, size: int) -> None:
    """Add value-map entries until the file is about ``size`` bytes."""
    text = path.read_text()
    entry = '      - {business_central: C%d, dataverse: %d, label: "L %d"}\n'
    n = max(1, (size - len(text)) // len(entry % (99999, 99999, 99999)))
    text = text.replace(ANCHOR, ANCHOR + "".join(entry % (i, 1000 + i, i) for i in range(n)))
    while len(text) < size:  # a comment line to reach the size exactly
        text += "# " + "x" * min(1000, max(0, size - len(text) - 3)) + "\n"
    path.write_text(text)


def _validate(capsys: pytest.CaptureFixture[str], mdir: Path) -> tuple[int, str, str]:
    code = main(["--mappings", str(mdir), "mappings", "validate"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _python_calls(path: Path) -> tuple[int, int]:
    """(value-map entries loaded, Python function calls made in bcdv.mapping while loading):
    a count, not a time, so the check is the same on a loaded CI machine (speed itself is
    measured by ``make bench``, never in a test)."""
    calls = 0

    def count(frame: Any, event: str, _arg: Any) -> None:
        nonlocal calls
        if event == "call" and "/bcdv/mapping/" in frame.f_code.co_filename:
            calls += 1

    sys.setprofile(count)
    try:
        loaded = load_mapping_file(path)
    finally:
        sys.setprofile(None)
    return len(loaded.mapping.value_maps["PAYMENT_TERMS"].values), calls


def test_validating_a_mapping_file_is_linear_in_its_size(mdir: Path, tmp_path: Path) -> None:
    shutil.copytree(DEFAULTS_DIR, tmp_path / "big")
    small, big = mdir / "customer.yaml", tmp_path / "big" / "customer.yaml"
    _grow(small, (MAX_FILE_BYTES - 20_000) // 4)
    _grow(big, MAX_FILE_BYTES - 20_000)
    (n_small, c_small), (n_big, c_big) = _python_calls(small), _python_calls(big)
    assert n_big > 10_000 and n_big > 3.5 * n_small
    # Four times the entries, at most ~four times the work (quadratic would be sixteen).
    assert c_big / n_big <= 1.25 * c_small / n_small, (c_small, n_small, c_big, n_big)


def test_a_mapping_file_over_the_size_limit_is_refused_naming_file_and_limit(
        capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    path = mdir / "customer.yaml"
    _grow(path, MAX_FILE_BYTES + 10_000)
    code, _, err = _validate(capsys, mdir)
    assert code == 1 and str(path) in err and "limit" in err and "1 MiB" in err


def test_a_binary_mapping_file_is_a_file_line_error(
        capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    path = mdir / "customer.yaml"
    path.write_bytes(b"name: CUSTOMER\ndescription: x\n\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    code, _, err = _validate(capsys, mdir)
    assert code == 1 and f"{path}:3:" in err and "Traceback" not in err
    path.write_bytes(b"name: CUSTOMER\n\x00\x01\x02")
    with pytest.raises(MappingError, match=rf"{path}:2:"):
        load_mapping_file(path)


@pytest.mark.parametrize("nested", [
    "description: " + "[" * 5000 + "]" * 5000 + "\n",
    "description:\n" + "".join("  " * i + f"k{i}:\n" for i in range(3000)),
    "description: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
])
def test_deeply_nested_yaml_is_a_file_line_error(mdir: Path, nested: str) -> None:
    path = mdir / "customer.yaml"
    path.write_text("name: CUSTOMER\n" + nested)
    with pytest.raises(MappingError, match=rf"^{path}:\d+: "):
        load_mapping_file(path)


def test_a_yaml_alias_bomb_is_refused(mdir: Path) -> None:
    path = mdir / "customer.yaml"
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path.write_text("name: CUSTOMER\n" + "\n".join(lines) + "\n")
    with pytest.raises(MappingError, match=rf"^{path}:\d+: .*(alias|large)"):
        load_mapping_file(path)


def test_control_characters_are_stripped_from_terminal_output(
        capsys: pytest.CaptureFixture[str], mdir: Path, tmp_path: Path) -> None:
    evil = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x9b0m\u202eevil\x00"
    code = main(["--mappings", str(mdir), "--state", f"sqlite:///{tmp_path / 's.db'}",
                 "couplings", "show", "customer", evil])
    out = capsys.readouterr()
    assert code == 1 and "is not coupled" in out.err
    text = out.out + out.err
    assert not any(c in text for c in "\x1b\x07\x9b\u202e\x00"), repr(text)
    assert "red" in text and "evil" in text
    text_path = mdir / "customer.yaml"
    text_path.write_text(text_path.read_text().replace(
        "description: ", "description: \"\\e[1mBOLD\\a\" #", 1))
    code = main(["--mappings", str(mdir), "mappings", "show", "customer"])
    out = capsys.readouterr()
    assert "\x1b" not in out.out + out.err and "\x07" not in out.out + out.err
