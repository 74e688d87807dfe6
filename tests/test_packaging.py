"""Packaging: every package folder on disk is declared in setup.cfg."""

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    packages = config["options"]["packages"].split()
    mapping = dict(
        line.split(" = ") for line in config["options"]["package_dir"].strip().splitlines()
    )
    return packages, mapping


def _package_of(folder: Path, mapping: dict[str, str]) -> str:
    relative = folder.relative_to(ROOT)
    for package, where in mapping.items():
        if relative.parts[: len(Path(where).parts)] == Path(where).parts:
            rest = relative.parts[len(Path(where).parts):]
            return ".".join([package, *rest])
    return ".".join(relative.parts)


def test_every_package_folder_is_listed_in_setup_cfg():
    packages, mapping = _declared()
    roots = [ROOT / "istn_sk", *(ROOT / where for where in mapping.values())]
    on_disk = {
        _package_of(init.parent, mapping)
        for root in roots for init in root.rglob("__init__.py")
    }
    assert on_disk, "no package found on disk"
    assert sorted(on_disk - set(packages)) == []
    assert sorted(set(packages) - on_disk) == []


def test_mapped_packages_are_never_top_level_imports():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("istn_sk", "plugins", "cli", "tests", "examples")
        for path in (ROOT / folder).rglob("*.py")
        if any(re.match(r"(import|from) (plugins|cli)\b", line)
               for line in path.read_text().splitlines())
    ]
    assert offenders == []


def test_pyproject_holds_only_the_build_system():
    text = (ROOT / "pyproject.toml").read_text()
    sections = [line for line in text.splitlines() if line.startswith("[")]
    assert sections == ["[build-system]"]
