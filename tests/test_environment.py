"""requirements.txt (pip) and environment.yml (conda) must install the same pinned set."""

import re

from ctseg_helpers import __version__


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip().lstrip("-").strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([A-Za-z0-9_.\-]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_requirements_and_environment_yml_pin_the_same_set(repo_root):
    req = _pins((repo_root / "requirements.txt").read_text().splitlines())
    env_lines = (repo_root / "environment.yml").read_text().splitlines()
    pip_section = env_lines[env_lines.index("  - pip:") + 1 :]
    env = _pins(pip_section)
    assert req, "requirements.txt pins nothing"
    assert req == env


def test_every_requirement_is_locked_at_the_same_version(repo_root):
    req = _pins((repo_root / "requirements.txt").read_text().splitlines())
    lock = _pins((repo_root / "constraints.txt").read_text().splitlines())
    assert {name: lock.get(name) for name in req} == req


def test_environment_yml_uses_python_311(repo_root):
    assert "  - python=3.11" in (repo_root / "environment.yml").read_text().splitlines()


def test_package_version_matches_pyproject(repo_root):
    assert f'version = "{__version__}"' in (repo_root / "pyproject.toml").read_text()
