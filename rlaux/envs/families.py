"""Env families (Atari, MinAtar, MiniWorld, plain gym): registration, availability, raw envs.

Users never register anything themselves: ALE ids are registered when this module is
imported (``import ale_py`` at top level; the env factory in
:mod:`rlaux.envs.wrappers` imports this module, so ``SubprocVecEnv`` workers, started
with forkserver, find the ids when they unpickle it), MinAtar ids likewise (registered
here with minatar's own entry point, so that minatar is imported only when used), and MiniWorld is imported
on demand, headless (``PYGLET_HEADLESS=1`` is set before pyglet is imported).
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGLET_HEADLESS", "1")  # before anything imports pyglet (MiniWorld)

import importlib.util  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

import ale_py  # noqa: E402  registers the ALE ids; must stay at module top level (forkserver workers)
import gymnasium as gym  # noqa: E402

from rlaux.errors import OPTIONAL_PACKAGES, ConfigError, import_optional, missing_extra  # noqa: E402

gym.register_envs(ale_py)

KINDS = ("atari", "minatar", "miniworld", "gym")
MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
MINIWORLD_GL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri"


def register_minatar() -> None:
    """Register the ``MinAtar/*`` ids (once; a no-op without minatar), as ``minatar.gym.register_envs``
    does, without importing minatar: its import pulls in seaborn and scipy (about 1 s), which
    every process would pay; ``gym.make`` imports it when a MinAtar env is made."""
    if "MinAtar/Breakout-v1" in gym.registry or importlib.util.find_spec("minatar") is None:
        return
    for name in MINATAR_GAMES:
        game = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()  # SpaceInvaders -> space_invaders
        for version, minimal in (("v0", False), ("v1", True)):
            gym.register(id=f"MinAtar/{name}-{version}", entry_point="minatar.gym:BaseEnv",
                         kwargs={"game": game, "use_minimal_action_set": minimal})


register_minatar()

_MINIWORLD_STATE: dict[str, Any] = {"imported": False, "error": None, "gl_checked": False}


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def import_miniworld() -> None:
    """Import miniworld (registers MiniWorld-* ids); a ConfigError naming the extra if it is not
    installed, or the GL packages if it cannot start."""
    if _MINIWORLD_STATE["imported"]:
        return
    if _MINIWORLD_STATE["error"] is not None:
        raise ConfigError(_MINIWORLD_STATE["error"])
    try:
        import miniworld  # noqa: F401
    except ModuleNotFoundError:  # miniworld, or a package it needs (pyglet ...): not a GL problem
        raise missing_extra("MiniWorld", "miniworld") from None
    except Exception as exc:  # pyglet raises various errors when GL/EGL is missing
        _MINIWORLD_STATE["error"] = (
            f"MiniWorld cannot start OpenGL headless ({_first_line(exc)}); "
            f"install the Debian packages {MINIWORLD_GL_PACKAGES} (apt-get install -y {MINIWORLD_GL_PACKAGES})"
        )
        raise ConfigError(_MINIWORLD_STATE["error"]) from None
    _MINIWORLD_STATE["imported"] = True


def check_miniworld_gl(env_id: str, env_kwargs: dict) -> None:
    """Make and reset one MiniWorld env in this process, so a GL failure is one clear line here
    rather than a traceback in a SubprocVecEnv worker."""
    import_miniworld()
    if _MINIWORLD_STATE["gl_checked"]:
        return
    try:
        env = gym.make(env_id, **env_kwargs)
        env.reset(seed=0)
        env.close()
    except Exception as exc:
        msg = (
            f"MiniWorld env {env_id} cannot render headless ({_first_line(exc)}); "
            f"install the Debian packages {MINIWORLD_GL_PACKAGES} (apt-get install -y {MINIWORLD_GL_PACKAGES})"
        )
        raise ConfigError(msg) from None
    _MINIWORLD_STATE["gl_checked"] = True


def miniworld_available() -> tuple[bool, str]:
    """(True, "") if MiniWorld can render headless here, else (False, reason)."""
    try:
        check_miniworld_gl("MiniWorld-OneRoom-v0", {})
    except ConfigError as exc:
        return False, str(exc)
    return True, ""


def miniworld_ids() -> list[str]:
    """The registered ``MiniWorld-*`` ids (importing miniworld); [] where it cannot start."""
    try:
        import_miniworld()
    except ConfigError:
        return []
    return [k for k in gym.registry if k.startswith("MiniWorld-")]


def import_gym_packages(packages: Sequence[str], what: str = "--gym-packages") -> None:
    """Import each module of ``packages``: packages that register their envs with gymnasium when
    imported (rl-zoo3's ``--gym-packages``). One that cannot be imported is a ConfigError naming it."""
    for name in packages:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
            raise ConfigError(f"{what}: {name!r} is not a module name (e.g. my_envs or my_pkg.envs)")
        try:
            if name.partition(".")[0] in OPTIONAL_PACKAGES:
                import_optional(name, f"{what} {name}")
            else:
                importlib.import_module(name)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the package's own import code
            raise ConfigError(f"{what}: cannot import {name!r} ({_first_line(exc)})") from None


#: The wrapper that turns an env family's observations into an image, for the refusal of spaces SB3 cannot take.
IMAGE_WRAPPER_HINTS = {"MiniGrid": "minigrid.wrappers.ImgObsWrapper", "BabyAI": "minigrid.wrappers.ImgObsWrapper"}


def env_wrapper_classes(wrappers: Sequence[Any], what: str = "--env-wrapper") -> list[tuple[type, dict]]:
    """rl-zoo3's ``env_wrapper`` list (each item ``"module.Class"`` or ``{"module.Class": {kwargs}}``; a single
    item may stand alone) -> ``[(class, kwargs), ...]``. A name that does not import is a ConfigError."""
    items = [wrappers] if isinstance(wrappers, (str, dict)) else list(wrappers or ())
    out = []
    for item in items:
        if isinstance(item, dict) and len(item) == 1:
            (name, kwargs), = item.items()
            kwargs = dict(kwargs or {})
        else:
            name, kwargs = item, {}
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", name):
            raise ConfigError(f"{what}: {item!r} is not a wrapper class as module.Class (or {{module.Class: "
                              "{kwargs}}), e.g. minigrid.wrappers.ImgObsWrapper")
        module_name, _, class_name = name.rpartition(".")
        import_gym_packages([module_name], what=f"{what} {name}")
        cls = getattr(sys.modules[module_name], class_name, None)
        if not callable(cls):
            raise ConfigError(f"{what} {name}: module {module_name} has no class {class_name}")
        out.append((cls, kwargs))
    return out


def apply_env_wrappers(env: gym.Env, wrappers: Sequence[Any]) -> gym.Env:
    """``env`` inside each wrapper of rl-zoo3's ``env_wrapper`` list, the first innermost."""
    for cls, kwargs in env_wrapper_classes(wrappers):
        env = cls(env, **kwargs)
    return env


def unsupported_observation(space: gym.Space) -> str | None:
    """Why SB3's policies cannot take ``space`` (None if they can): they take Box, Discrete, MultiDiscrete,
    MultiBinary, and a Dict of those (MultiInputPolicy)."""
    simple = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
    if isinstance(space, simple):
        return None
    if isinstance(space, gym.spaces.Dict):
        bad = [f"{key!r} ({type(sub).__name__})" for key, sub in space.spaces.items() if not isinstance(sub, simple)]
        return f"a Dict observation whose {', '.join(bad)} SB3 cannot take" if bad else None
    return f"a {type(space).__name__} observation, which SB3 cannot take"


def make_base_env(env_id: str, kind: str, gym_packages: Sequence[str] = (), **env_kwargs: Any) -> gym.Env:
    """The raw env of ``env_id`` (``render_mode="rgb_array"`` where it takes one), after the
    registration its family needs and the import of ``gym_packages`` (which register it, in a
    SubprocVecEnv worker too); module level, so picklable by reference."""
    import_gym_packages(gym_packages)
    if kind == "miniworld" or env_id.startswith("MiniWorld"):
        import_miniworld()
    if kind == "minatar":
        register_minatar()
    kwargs = {"render_mode": "rgb_array"}
    kwargs.update(env_kwargs)
    try:
        return gym.make(env_id, **kwargs)
    except TypeError:
        return gym.make(env_id, **env_kwargs)


__all__ = [
    "KINDS",
    "MINATAR_GAMES",
    "MINIWORLD_GL_PACKAGES",
    "check_miniworld_gl",
    "import_gym_packages",
    "IMAGE_WRAPPER_HINTS",
    "apply_env_wrappers",
    "env_wrapper_classes",
    "import_miniworld",
    "make_base_env",
    "miniworld_available",
    "miniworld_ids",
    "register_minatar",
    "unsupported_observation",
]
