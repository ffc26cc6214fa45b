"""The licence is declared and shipped: ultralytics is AGPL-3.0, so histoloop is
AGPL-3.0-or-later, with the full text in LICENSE."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_agpl_is_declared_and_shipped() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "AGPL-3.0-or-later"}
    text = (ROOT / "LICENSE").read_text()
    assert (
        text.lstrip().startswith("GNU AFFERO GENERAL PUBLIC LICENSE")
        and "Version 3, 19 November 2007" in text
    )
    assert "13. Remote Network Interaction; Use with the GNU General Public License." in text
    assert text.rstrip().endswith("<https://www.gnu.org/licenses/>.") and len(text.splitlines()) == 661
    readme = (ROOT / "README.md").read_text()
    assert "## Licence" in readme and "AGPL-3.0-or-later" in readme
