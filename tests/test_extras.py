"""A missing optional package is one line that names the extra installing it (exit 2 on the command line).

Each package is made missing with ``sys.modules[name] = None`` (``import name`` then raises
ModuleNotFoundError). The other import sites (``--video``, ``--vec-env envpool``, ``--backend ray``)
are tested beside their features, in test_evaluate, test_envpool and test_compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import pytest

from rlaux.cli import main
from rlaux.envs import families
from rlaux.errors import OPTIONAL_PACKAGES, ConfigError, import_optional

ROOT = Path(__file__).resolve().parents[1]


def test_every_extra_of_pyproject_is_known():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) - {"test"} <= set(OPTIONAL_PACKAGES.values())


@pytest.mark.parametrize("package", sorted(OPTIONAL_PACKAGES))
def test_missing_package_names_its_extra(package, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ConfigError) as err:
        import_optional(package, "this feature")
    extra = OPTIONAL_PACKAGES[package]
    assert str(err.value) == f'this feature needs the optional package {package}: pip install "rlaux[{extra}]"'


def test_installed_but_broken_package_is_one_line_too(tmp_path, monkeypatch):
    (tmp_path / "moviepy").mkdir()
    (tmp_path / "moviepy" / "__init__.py").write_text("raise OSError('libfoo.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "moviepy", raising=False)
    with pytest.raises(ConfigError, match=r"--video needs the optional package moviepy, which is installed but fails "
                                          r"to import \(OSError: libfoo\.so: .*\); reinstall it: pip install "
                                          r"\"rlaux\[video\]\""):
        import_optional("moviepy", "--video")


def test_missing_optional_dependency_of_an_optional_package_names_itself(tmp_path, monkeypatch):
    (tmp_path / "huggingface_sb3").mkdir()  # stands in for the real one, which imports huggingface_hub
    (tmp_path / "huggingface_sb3" / "__init__.py").write_text("import huggingface_hub\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("huggingface_sb3")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ConfigError) as err:
        import_optional("huggingface_sb3", "push")
    assert str(err.value) == 'push needs the optional package huggingface_hub: pip install "rlaux[hub]"'


@pytest.fixture
def no_miniworld(monkeypatch):
    monkeypatch.setitem(sys.modules, "miniworld", None)
    monkeypatch.setitem(families._MINIWORLD_STATE, "imported", False)
    monkeypatch.setitem(families._MINIWORLD_STATE, "error", None)
    for env_id in [k for k in gym.registry if k.startswith("MiniWorld-")]:  # as if never imported here
        monkeypatch.delitem(gym.registry, env_id)


@pytest.mark.parametrize("argv", [["--env", "MiniWorld"], ["--env", "MiniWorld", "--game", "FourRooms"],
                                  ["--env", "MiniWorld-OneRoom-v0"]])
def test_miniworld_missing_names_the_extra_not_opengl(no_miniworld, argv, tmp_path, capsys):
    code = main([*argv, "-n", "64", "-f", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == 'error: MiniWorld needs the optional package miniworld: pip install "rlaux[miniworld]"'
    assert not any(tmp_path.iterdir())


def test_gym_packages_of_a_missing_extra_names_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "miniworld", None)
    code = main(["--gym-packages", "miniworld", "--env", "CartPole-v1", "-n", "64", "-f", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip() == ('error: --gym-packages miniworld needs the optional package miniworld: '
                                                'pip install "rlaux[miniworld]"')
