"""The licence is declared and shipped: ultralytics is AGPL-3.0, so histoloop is
AGPL-3.0-or-later, with the full text in LICENSE."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_agpl_is_declared_and_shipped() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "AGPL-3.0-or-later" and project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))
    text = (ROOT / "LICENSE").read_text()
    assert (
        text.lstrip().startswith("GNU AFFERO GENERAL PUBLIC LICENSE")
        and "Version 3, 19 November 2007" in text
    )
    assert "13. Remote Network Interaction; Use with the GNU General Public License." in text
    assert text.rstrip().endswith("<https://www.gnu.org/licenses/>.") and len(text.splitlines()) == 661
    readme = (ROOT / "README.md").read_text()
    assert "## Licence" in readme and "AGPL-3.0-or-later" in readme


def test_the_package_metadata_carries_the_licence_without_deprecation_warnings(tmp_path: Path) -> None:
    """The metadata setuptools builds from pyproject.toml (as ``pip install`` does): the SPDX expression
    and the LICENSE file, and none of the warnings a licence table or a licence classifier gives."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path / name)
    code = (
        "import warnings; warnings.simplefilter('always')\n"
        "from setuptools import build_meta\n"
        "print(build_meta.prepare_metadata_for_build_wheel('out'))\n"
    )
    (tmp_path / "out").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Deprecat" not in done.stderr and "license" not in done.stderr.lower(), done.stderr
    dist_info = tmp_path / "out" / done.stdout.strip().splitlines()[-1]
    metadata = (dist_info / "METADATA").read_text()
    assert "License-Expression: AGPL-3.0-or-later" in metadata and "License-File: LICENSE" in metadata
    assert "Classifier: License ::" not in metadata
    assert (dist_info / "licenses" / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
