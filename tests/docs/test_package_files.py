"""What a researcher looks for in a package they cite: a license and a citation file that agree
with the package."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_citation_file_names_the_installed_version():
    citation = (ROOT / "CITATION.cff").read_text()
    version = re.search(r'^version: "([^"]+)"', citation, re.M)
    assert version and version.group(1) == metadata.version("estibench")
    assert re.search(r"^cff-version: 1\.2\.0$", citation, re.M)
    assert re.search(r"^license: MIT$", citation, re.M)


def test_the_license_is_the_one_the_package_declares():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()
