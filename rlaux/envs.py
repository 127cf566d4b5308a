"""Environment construction: presets (``envs/*.toml``) and gymnasium ids -> SB3 VecEnvs.

``resolve_env(name)`` turns a preset name (Atari, AtariRGB, MinAtar, MiniWorld,
case-insensitive), a path to a preset .toml file, or any gymnasium id
(``ALE/Pong-v5``, ``BreakoutNoFrameskip-v4``, ``MinAtar/Asterix-v1``,
``CartPole-v1``, ``MiniWorld-MazeS3-v0`` ...) into an :class:`EnvSpec`;
``make_vec_env(spec)`` builds the vectorised env from it.

Users never register anything themselves: ALE ids are registered at import of
this module (``import ale_py`` at top level, so that ``SubprocVecEnv`` workers,
started with forkserver, find them when they unpickle the env factory, which
lives in this module), MinAtar ids likewise (they are not registered until
``minatar.gym.register_envs()`` runs), and MiniWorld is imported on demand,
headless (``PYGLET_HEADLESS=1`` is set before pyglet is imported).

Final observations, as SB3 expects:
- Atari: uint8 ``[4, 84, 84]`` (``[12, 84, 84]`` for AtariRGB): AtariWrapper
  preprocessing, VecFrameStack 4, VecTransposeImage.
- MinAtar: uint8 ``[C, 10, 10]`` in {0, 255} (channel-first already; no transpose).
- MiniWorld: uint8 ``[3, 60, 80]``.
- Other ids: whatever the env gives, transposed to channel-first if it is an image.

``make_vec_env(spec, vec_env="envpool")`` builds Atari through EnvPool instead (optional
extra ``rlaux[envpool]``; same preprocessing, same observations, see ``rlaux.envpool_env``).

Monitor (episode returns, lengths; ``<monitor_dir>/<rank>.monitor.csv``) sits below
every reward transform and life-loss reset: logged returns are game scores before
reward clipping and over full games, not lives, as with SB3's make_atari_env. Unlike
make_atari_env, the Atari Monitor sits above the frame skipping, so episode lengths
count agent steps (SB3's ``num_timesteps``), not emulator frames (plus the 1-3 steps
that EpisodicLife and FireReset take themselves at each reset).
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGLET_HEADLESS", "1")  # before anything imports pyglet (MiniWorld)

import copy
import difflib
import functools
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import ale_py  # noqa: E402  registers the ALE ids; must stay at module top level (forkserver workers)
import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common import atari_wrappers as sb3_atari
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecTransposeImage,
)

from rlaux.errors import ConfigError
from rlaux.presets import is_preset, list_presets, load_preset

gym.register_envs(ale_py)

KINDS = ("atari", "minatar", "miniworld", "gym")
MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
MINIWORLD_GL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri"
VEC_ENV_CHOICES = ("auto", "dummy", "subproc", "envpool")

# Keys an env preset may hold (see envs/README.md).
PRESET_KEYS = {
    "description",
    "kind",
    "env_id",
    "game",
    "sticky_actions",
    "n_envs",
    "frame_stack",
    "env_kwargs",
    "wrapper_kwargs",
    "policy",
    "policy_kwargs",
}
# AtariWrapper keys; terminal_on_life_loss and clip_reward apply at training only.
ATARI_WRAPPER_KEYS = {
    "noop_max",
    "frame_skip",
    "screen_size",
    "terminal_on_life_loss",
    "clip_reward",
    "action_repeat_probability",
    "grayscale",
}


def _register_minatar() -> None:
    if "MinAtar/Breakout-v1" in gym.registry:
        return
    try:
        import minatar.gym as minatar_gym
    except ImportError:  # pragma: no cover - minatar is a dependency
        return
    minatar_gym.register_envs()


_register_minatar()

_MINIWORLD_STATE: dict[str, Any] = {"imported": False, "error": None, "gl_checked": False}


def _import_miniworld() -> None:
    """Import miniworld (registers MiniWorld-* ids); ConfigError naming the GL packages if it fails."""
    if _MINIWORLD_STATE["imported"]:
        return
    if _MINIWORLD_STATE["error"] is not None:
        raise ConfigError(_MINIWORLD_STATE["error"])
    try:
        import miniworld  # noqa: F401
    except Exception as exc:  # pyglet raises various errors when GL/EGL is missing
        msg = (
            f"MiniWorld cannot start OpenGL headless ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"install the Debian packages {MINIWORLD_GL_PACKAGES} (apt-get install -y {MINIWORLD_GL_PACKAGES})"
        )
        _MINIWORLD_STATE["error"] = msg
        raise ConfigError(msg) from None
    _MINIWORLD_STATE["imported"] = True


def _check_miniworld_gl(env_id: str, env_kwargs: dict) -> None:
    """Make and reset one MiniWorld env in this process, so a GL failure is one clear line here
    rather than a traceback in a SubprocVecEnv worker."""
    _import_miniworld()
    if _MINIWORLD_STATE["gl_checked"]:
        return
    try:
        env = gym.make(env_id, **env_kwargs)
        env.reset(seed=0)
        env.close()
    except Exception as exc:
        msg = (
            f"MiniWorld env {env_id} cannot render headless ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"install the Debian packages {MINIWORLD_GL_PACKAGES} (apt-get install -y {MINIWORLD_GL_PACKAGES})"
        )
        raise ConfigError(msg) from None
    _MINIWORLD_STATE["gl_checked"] = True


def miniworld_available() -> tuple[bool, str]:
    """(True, "") if MiniWorld can render headless here, else (False, reason)."""
    try:
        _check_miniworld_gl("MiniWorld-OneRoom-v0", {})
    except ConfigError as exc:
        return False, str(exc)
    return True, ""


# --------------------------------------------------------------------------- spec


@dataclass
class EnvSpec:
    """Everything needed to build the vectorised env; plain data (TOML/JSON friendly)."""

    name: str  # preset name as given, or the gym id
    env_id: str  # the gymnasium id actually made
    kind: str  # "atari" | "minatar" | "miniworld" | "gym"
    n_envs: int = 8
    frame_stack: int = 1  # applied as SB3 VecFrameStack (0/1 = none)
    env_kwargs: dict = field(default_factory=dict)  # passed to gym.make
    wrapper_kwargs: dict = field(default_factory=dict)  # e.g. AtariWrapper kwargs
    policy: str = "MlpPolicy"  # "CnnPolicy" for images
    policy_kwargs: dict = field(default_factory=dict)  # e.g. {"features_extractor": "minatar_cnn"}

    def to_dict(self) -> dict:
        return copy.deepcopy(asdict(self))


# ------------------------------------------------------------------- wrappers


class WarpFrameRGB(gym.ObservationWrapper):
    """Resize frames to ``height x width`` keeping the 3 colour channels (SB3's WarpFrame is grey only)."""

    def __init__(self, env: gym.Env, width: int = 84, height: int = 84) -> None:
        super().__init__(env)
        self.width = width
        self.height = height
        assert isinstance(env.observation_space, spaces.Box)
        self.observation_space = spaces.Box(low=0, high=255, shape=(height, width, 3), dtype=np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        return cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)


class AtariWrapper(gym.Wrapper):
    """SB3's AtariWrapper chain, with a ``grayscale`` switch and a place for the Monitor.

    NoopReset(30), MaxAndSkip(4), [monitor], EpisodicLife, FireReset, WarpFrame(84, grey
    or RGB), ClipReward: SB3's order. ``monitor`` (e.g. SB3's ``Monitor``) is applied right
    above the frame skipping, so it counts agent steps (not emulator frames, and not the
    reset no-ops), sees whole games (below the life-loss resets) and raw rewards (below
    the clipping): its episode lengths are on the same axis as SB3's ``num_timesteps``.
    """

    def __init__(
        self,
        env: gym.Env,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen_size: int = 84,
        terminal_on_life_loss: bool = True,
        clip_reward: bool = True,
        action_repeat_probability: float = 0.0,
        grayscale: bool = True,
        monitor: Callable[[gym.Env], gym.Env] | None = None,
    ) -> None:
        if action_repeat_probability > 0.0:
            env = sb3_atari.StickyActionEnv(env, action_repeat_probability)
        if noop_max > 0:
            env = sb3_atari.NoopResetEnv(env, noop_max=noop_max)
        if frame_skip > 1:
            env = sb3_atari.MaxAndSkipEnv(env, skip=frame_skip)
        if monitor is not None:
            env = monitor(env)
        if terminal_on_life_loss:
            env = sb3_atari.EpisodicLifeEnv(env)
        if "FIRE" in env.unwrapped.get_action_meanings():  # type: ignore[attr-defined]
            env = sb3_atari.FireResetEnv(env)
        if grayscale:
            env = sb3_atari.WarpFrame(env, width=screen_size, height=screen_size)
        else:
            env = WarpFrameRGB(env, width=screen_size, height=screen_size)
        if clip_reward:
            env = sb3_atari.ClipRewardEnv(env)
        super().__init__(env)


class MinAtarImage(gym.ObservationWrapper):
    """MinAtar's bool ``[10, 10, C]`` channel-last -> uint8 ``[C, 10, 10]`` in {0, 255}.

    uint8 in [0, 255] makes SB3 treat it as an image (``is_image_space``) and divide
    by 255, so the network sees exactly the {0, 1} planes. Channel-first here, so
    SB3 never transposes it (its heuristic takes the smallest axis as channels;
    with ties, as Seaquest's 10 channels, the first, so [C, 10, 10] reads as
    channel-first, while a [10, 10, 10] channel-last obs would be misread).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = spaces.Box(low=0, high=255, shape=(c, h, w), dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(observation.transpose(2, 0, 1), dtype=np.uint8) * np.uint8(255)


# --------------------------------------------------------------- env factory


def _make_base_env(env_id: str, kind: str, **env_kwargs: Any) -> gym.Env:
    """Module-level factory (picklable by reference: forkserver workers import this module,
    which registers ALE and MinAtar ids, and imports MiniWorld on demand)."""
    if kind == "miniworld" or env_id.startswith("MiniWorld"):
        _import_miniworld()
    if kind == "minatar":
        _register_minatar()
    kwargs = {"render_mode": "rgb_array"}
    kwargs.update(env_kwargs)
    try:
        return gym.make(env_id, **kwargs)
    except TypeError:
        return gym.make(env_id, **env_kwargs)


def _make_env(
    env_id: str,
    kind: str,
    rank: int,
    seed: int | None,
    monitor_dir: str | None,
    env_kwargs: dict[str, Any],
    wrapper_kwargs: dict[str, Any],
    env_wrapper: Callable[[gym.Env], gym.Env] | None,
) -> gym.Env:
    """Env ``rank`` of a VecEnv: as SB3's make_vec_env builds it, except that the Monitor of
    Atari envs sits above the frame skipping (see ``AtariWrapper``); module level, so picklable."""
    env = _make_base_env(env_id, kind, **env_kwargs)
    if env_wrapper is not None:
        env = env_wrapper(env)
    if seed is not None:
        env.action_space.seed(seed + rank)
    monitor = functools.partial(Monitor, filename=None if monitor_dir is None else os.path.join(monitor_dir, str(rank)))
    if kind == "atari":
        return AtariWrapper(env, monitor=monitor, **wrapper_kwargs)
    env = monitor(env)
    return MinAtarImage(env) if kind == "minatar" else env


# ------------------------------------------------------------------ resolving


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


@functools.lru_cache(maxsize=1)
def _ale_games() -> dict[str, str]:
    """normalised game name -> CamelCase name used in ids (e.g. 'spaceinvaders' -> 'SpaceInvaders')."""
    games = {}
    for key in gym.registry:
        m = re.fullmatch(r"ALE/([A-Za-z0-9]+)-v5", key)
        if m:
            games[_norm(m.group(1))] = m.group(1)
    return games


def _close(word: str, choices: list[str], n: int = 5) -> list[str]:
    lower = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(word.lower(), list(lower), n=n, cutoff=0.6)
    return [lower[h] for h in hits]


def _atari_env_id(game: str, sticky: bool) -> tuple[str, dict]:
    games = _ale_games()
    key = _norm(game)
    if key not in games:
        # compare on normalised names, show CamelCase names
        hits = difflib.get_close_matches(key, list(games), n=5, cutoff=0.6)
        close = [games[h] for h in hits]
        hint = f"close matches: {', '.join(close)}" if close else "no close match"
        raise ConfigError(
            f"unknown Atari game {game!r} ({hint}); ALE has {len(games)} games, e.g. Breakout, Pong, SpaceInvaders"
        )
    camel = games[key]
    if not sticky and f"{camel}NoFrameskip-v4" in gym.registry:
        return f"{camel}NoFrameskip-v4", {}
    # v5 ids: the wrapper does frame skipping (max-pooled), so the env must not.
    kwargs: dict[str, Any] = {"frameskip": 1}
    if not sticky:
        kwargs["repeat_action_probability"] = 0.0
    return f"ALE/{camel}-v5", kwargs


def _minatar_game(game: str) -> str:
    by_norm = {_norm(g): g for g in MINATAR_GAMES}
    if _norm(game) in by_norm:
        return by_norm[_norm(game)]
    close = [by_norm[h] for h in difflib.get_close_matches(_norm(game), list(by_norm), n=3, cutoff=0.5)]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"unknown MinAtar game {game!r}{hint}; valid games: {', '.join(MINATAR_GAMES)}")


def _miniworld_ids() -> list[str]:
    try:
        _import_miniworld()
    except ConfigError:
        return []
    return [k for k in gym.registry if k.startswith("MiniWorld-")]


def _miniworld_env_id(template: str, game: str) -> str:
    ids = _miniworld_ids()
    env_id = template.format(game=game)
    if not ids:
        _import_miniworld()  # raises the GL ConfigError
    by_lower = {k.lower(): k for k in ids}
    if env_id.lower() in by_lower:
        return by_lower[env_id.lower()]
    games = sorted({re.sub(r"^MiniWorld-|-v\d+$", "", k) for k in ids})
    close = _close(game, games, n=5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"unknown MiniWorld game {game!r}{hint}; valid games: {', '.join(games)}")


def _validate_preset(preset: dict, where: str) -> None:
    unknown = set(preset) - PRESET_KEYS
    if unknown:
        raise ConfigError(
            f"env preset {where}: unknown key(s) {', '.join(sorted(unknown))}; valid keys: {', '.join(sorted(PRESET_KEYS))}"
        )
    kind = preset.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"env preset {where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    for key in ("env_kwargs", "wrapper_kwargs", "policy_kwargs"):
        if not isinstance(preset.get(key, {}), dict):
            raise ConfigError(f"env preset {where}: {key} must be a table, got {preset[key]!r}")
    if kind == "atari":
        bad = set(preset.get("wrapper_kwargs", {})) - ATARI_WRAPPER_KEYS
        if bad:
            raise ConfigError(
                f"env preset {where}: unknown Atari wrapper key(s) {', '.join(sorted(bad))}; "
                f"valid: {', '.join(sorted(ATARI_WRAPPER_KEYS))}"
            )
    for key in ("n_envs", "frame_stack"):
        value = preset.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "n_envs" else 0):
            raise ConfigError(
                f"env preset {where}: {key} must be a {'positive' if key == 'n_envs' else 'non-negative'} integer, got {value!r}"
            )


def _spec_from_preset(name: str, preset: dict, game: str | None, sticky_actions: bool | None, where: str) -> EnvSpec:
    _validate_preset(preset, where)
    kind = preset["kind"]
    env_kwargs = dict(preset.get("env_kwargs", {}))
    template = preset.get("env_id")
    the_game = game if game is not None else preset.get("game")

    if kind != "atari" and sticky_actions is not None:
        raise ConfigError(f"sticky_actions applies to Atari presets only, not to {name!r} (kind {kind})")
    if kind == "atari":
        sticky = bool(preset.get("sticky_actions", False)) if sticky_actions is None else bool(sticky_actions)
        if template:  # a fixed id in the preset
            env_id = template.format(game=the_game or "")
            if game is not None and "{game}" not in template:
                raise ConfigError(f"env preset {name!r} fixes env_id {template!r}; it takes no game (got {game!r})")
        else:
            env_id, extra = _atari_env_id(the_game or "Breakout", sticky)
            env_kwargs = {**extra, **env_kwargs}
    elif template is None:
        raise ConfigError(f"env preset {where}: env_id is required for kind {kind}")
    elif "{game}" in template:
        if not the_game:
            raise ConfigError(f"env preset {where}: env_id {template!r} needs a game (preset key 'game' or --game)")
        if kind == "minatar":
            env_id = template.format(game=_minatar_game(the_game))
        elif kind == "miniworld":
            env_id = _miniworld_env_id(template, the_game)
        else:
            env_id = template.format(game=the_game)
    else:
        if game is not None:
            raise ConfigError(f"env preset {name!r} fixes env_id {template!r}; it takes no game (got {game!r})")
        env_id = template

    if kind == "miniworld":
        _miniworld_ids()  # registers the ids (or raises the GL error)
    env_id = _check_env_id(env_id)
    if kind == "gym":
        policy, policy_kwargs = _guess_policy(env_id, env_kwargs)
    else:
        policy, policy_kwargs = "CnnPolicy", {}
    return EnvSpec(
        name=name,
        env_id=env_id,
        kind=kind,
        n_envs=int(preset.get("n_envs", 8)),
        frame_stack=int(preset.get("frame_stack", 1)),
        env_kwargs=env_kwargs,
        wrapper_kwargs=dict(preset.get("wrapper_kwargs", {})),
        policy=preset.get("policy", policy),
        policy_kwargs=dict(preset.get("policy_kwargs", policy_kwargs)),
    )


def _check_env_id(env_id: str) -> str:
    if env_id in gym.registry:
        return env_id
    by_lower = {k.lower(): k for k in gym.registry}
    if env_id.lower() in by_lower:
        return by_lower[env_id.lower()]
    if env_id.startswith("MiniWorld"):
        _miniworld_ids()
        if env_id in gym.registry:
            return env_id
    raise _unknown_env(env_id)


def _unknown_env(name: str) -> ConfigError:
    env_presets = list_presets("envs")
    choices = list(gym.registry) + env_presets + _miniworld_ids()
    close = _close(name, choices, n=5)
    hint = f"close matches: {', '.join(close)}" if close else "no close match"
    game = _ale_games().get(_norm(name))
    if game is not None:
        hint += f"; for the Atari game use the Atari preset with game {game!r}"
    return ConfigError(
        f"unknown env {name!r} ({hint}); give a preset ({', '.join(env_presets)}) or a registered gymnasium id"
    )


def _kind_of_id(env_id: str) -> str:
    spec = gym.registry[env_id]
    entry = str(spec.entry_point)
    if entry.startswith("ale_py"):
        if spec.kwargs.get("obs_type", "rgb") in ("rgb", "grayscale"):
            return "atari"
        return "gym"  # RAM observations: a vector
    if entry.startswith("minatar"):
        return "minatar"
    if entry.startswith("miniworld") or env_id.startswith("MiniWorld-"):
        return "miniworld"
    return "gym"


def _is_image(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and is_image_space(space, check_channels=False)


def _guess_policy(env_id: str, env_kwargs: dict) -> tuple[str, dict]:
    """Make the env once to read its observation space: images -> CnnPolicy, else MlpPolicy."""
    try:
        env = _make_base_env(env_id, "gym", **env_kwargs)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"cannot make env {env_id!r}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    try:
        space = env.observation_space
    finally:
        env.close()
    if isinstance(space, spaces.Dict):
        return "MultiInputPolicy", {}
    if _is_image(space):
        h, w = _hw(space)
        if min(h, w) < 36:  # NatureCNN (8x8/4, 4x4/2, 3x3/1) needs at least 36x36
            return "CnnPolicy", {"features_extractor": "minatar_cnn"}
        return "CnnPolicy", {}
    return "MlpPolicy", {}


def _hw(space: spaces.Box) -> tuple[int, int]:
    shape = space.shape
    return (shape[1], shape[2]) if is_image_space_channels_first(space) else (shape[0], shape[1])


def _default_preset_for(kind: str) -> dict:
    name = {"atari": "Atari", "minatar": "MinAtar", "miniworld": "MiniWorld"}.get(kind)
    if name is None or not is_preset("envs", name):
        return {"kind": kind}
    return load_preset("envs", name)


def resolve_env(name: str, game: str | None = None, sticky_actions: bool | None = None) -> EnvSpec:
    """Turn a preset name (or path to a preset .toml) or a gymnasium id into an EnvSpec.

    ``game`` picks the game of a preset that has one (Atari: any ALE game, e.g.
    "Pong" or "space_invaders"; MinAtar: one of the five; MiniWorld: e.g. "FourRooms").
    ``sticky_actions`` (Atari presets only) overrides the preset: True makes
    ``ALE/<Game>-v5`` (repeat_action_probability 0.25, frameskip=1 so the wrapper
    skips), False ``<Game>NoFrameskip-v4``. Errors are ConfigError, one line.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"env name must be a non-empty string, got {name!r}")
    name = name.strip()
    if is_preset("envs", name):
        return _spec_from_preset(name, load_preset("envs", name), game, sticky_actions, where=name)
    if name.lower().endswith(".toml"):
        load_preset("envs", name)  # raises the one-line "does not exist" error

    if name not in gym.registry and name.startswith("MiniWorld"):
        _miniworld_ids()
    env_id = _check_env_id(name)
    if game is not None:
        raise ConfigError(f"game {game!r} applies to presets only; {env_id!r} is a gymnasium id (drop the game)")
    kind = _kind_of_id(env_id)
    if sticky_actions is not None and kind != "atari":
        raise ConfigError(f"sticky_actions applies to Atari envs only, not to {env_id!r}")

    base = _default_preset_for(kind)
    env_kwargs: dict[str, Any] = dict(base.get("env_kwargs", {})) if kind != "gym" else {}
    if kind == "atari":
        reg = gym.registry[env_id].kwargs
        if reg.get("frameskip", 1) != 1:
            env_kwargs["frameskip"] = 1  # AtariWrapper does the (max-pooled) skipping
        if sticky_actions is not None:
            env_kwargs["repeat_action_probability"] = 0.25 if sticky_actions else 0.0
    preset = {k: v for k, v in base.items() if k not in ("env_id", "game", "sticky_actions", "env_kwargs")}
    preset["kind"] = kind
    preset["env_id"] = env_id
    preset["env_kwargs"] = env_kwargs
    if kind == "gym":
        return _spec_from_preset(env_id, preset, None, None, where=env_id)
    preset.setdefault("policy", "CnnPolicy")
    _validate_preset(preset, env_id)
    return EnvSpec(
        name=env_id,
        env_id=env_id,
        kind=kind,
        n_envs=int(preset.get("n_envs", 8)),
        frame_stack=int(preset.get("frame_stack", 4 if kind == "atari" else 1)),
        env_kwargs=env_kwargs,
        wrapper_kwargs=dict(preset.get("wrapper_kwargs", {})),
        policy=preset["policy"],
        policy_kwargs=dict(preset.get("policy_kwargs", {})),
    )


# ------------------------------------------------------------------- building


def _atari_wrapper_kwargs(spec: EnvSpec, training: bool) -> dict:
    kwargs = dict(spec.wrapper_kwargs)
    if not training:  # evaluation: full games and raw scores
        kwargs["terminal_on_life_loss"] = False
        kwargs["clip_reward"] = False
    return kwargs


def _preload_forkserver() -> None:
    """Have the forkserver import this module once, so that each SubprocVecEnv worker forks
    with torch, SB3 and ale_py already imported instead of importing them itself
    (8 Atari workers on 2 cores: about 20 s to start without, about 6 s with).
    Only possible before the forkserver starts; harmless afterwards."""
    try:
        from multiprocessing import forkserver
    except ImportError:  # pragma: no cover - platforms without forkserver
        return
    server = getattr(forkserver, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is not None:
        return
    modules = list(getattr(server, "_preload_modules", ["__main__"]))
    if __name__ not in modules:
        forkserver.set_forkserver_preload([*modules, __name__])


def _vec_env_cls(spec: EnvSpec, n_envs: int, vec_env: str) -> type[VecEnv]:
    if vec_env not in VEC_ENV_CHOICES:
        raise ConfigError(f"unknown vec_env {vec_env!r}; valid choices: {', '.join(VEC_ENV_CHOICES)}")
    if vec_env == "dummy" or n_envs == 1:
        return DummyVecEnv
    if vec_env == "subproc":
        return SubprocVecEnv
    # auto: processes only pay off when a step costs more than the IPC round trip.
    # MinAtar (~100k raw steps/s) and vector gym envs (CartPole ...) are far faster in-process.
    if spec.kind == "minatar" or (spec.kind == "gym" and spec.policy == "MlpPolicy"):
        return DummyVecEnv
    return SubprocVecEnv


def make_vec_env(
    spec: EnvSpec,
    n_envs: int | None = None,
    seed: int = 0,
    vec_env: str = "auto",
    training: bool = True,
    monitor_dir: str | None = None,
    env_wrapper: Callable[[gym.Env], gym.Env] | None = None,
) -> VecEnv:
    """Build the vectorised env of ``spec`` (SB3's make_vec_env underneath).

    - ``n_envs``: overrides ``spec.n_envs``.
    - ``seed``: env ``i`` is seeded ``seed + i`` (its first reset and its action space).
    - ``vec_env``: "dummy", "subproc" (forkserver), or "auto": DummyVecEnv for 1 env
      and for cheap envs (MinAtar, vector-observation gym envs), SubprocVecEnv otherwise.
      "envpool" (Atari only, optional extra ``rlaux[envpool]``): EnvPool's C++ pool with
      the same preprocessing, see :mod:`rlaux.envpool_env`.
    - ``training``: False builds the evaluation variant: Atari without EpisodicLife
      and without ClipReward (full games, raw scores).
    - ``monitor_dir``: SB3 Monitor writes ``<monitor_dir>/<rank>.monitor.csv`` with the
      raw episode returns (below all reward transforms and life-loss resets).
    - ``env_wrapper``: applied to each raw env, below Monitor and the preset's wrappers
      (e.g. gymnasium's RecordVideo); must be picklable for SubprocVecEnv.

    Returns a VecEnv whose image observations are uint8 channel-first ``[C, H, W]``
    (VecFrameStack then VecTransposeImage where needed), so SB3 adds no transpose.
    """
    n = int(spec.n_envs if n_envs is None else n_envs)
    if n < 1:
        raise ConfigError(f"n_envs must be >= 1, got {n}")
    if spec.kind not in KINDS:
        raise ConfigError(f"unknown env kind {spec.kind!r}; valid kinds: {', '.join(KINDS)}")
    if vec_env == "envpool":
        if spec.kind != "atari":
            raise ConfigError(f"--vec-env envpool supports Atari envs only, not {spec.env_id!r} (kind {spec.kind}); "
                              "use --vec-env auto, dummy or subproc")
        if env_wrapper is not None:
            raise ConfigError("--vec-env envpool runs the envs in C++: it cannot wrap them (e.g. for --video)")
        from rlaux.envpool_env import make_envpool_vec_env

        return make_envpool_vec_env(spec, n_envs=n, seed=seed, training=training, monitor_dir=monitor_dir)
    env_kwargs = dict(spec.env_kwargs)
    if spec.kind == "miniworld":
        _check_miniworld_gl(spec.env_id, env_kwargs)
    cls = _vec_env_cls(spec, n, vec_env)
    if cls is SubprocVecEnv:
        _preload_forkserver()
    if monitor_dir is not None:
        os.makedirs(monitor_dir, exist_ok=True)
    wrapper_kwargs = _atari_wrapper_kwargs(spec, training) if spec.kind == "atari" else {}
    venv = cls([
        functools.partial(_make_env, spec.env_id, spec.kind, rank, seed, monitor_dir, env_kwargs, wrapper_kwargs,
                          env_wrapper)
        for rank in range(n)
    ])
    venv.seed(seed)  # env ``rank`` is seeded ``seed + rank`` at its first reset, as SB3's make_vec_env does
    space = venv.observation_space
    image = _is_image(space)
    if spec.frame_stack and spec.frame_stack > 1:
        order = None
        if image:
            order = "first" if (spec.kind == "minatar" or is_image_space_channels_first(space)) else "last"
        venv = VecFrameStack(venv, n_stack=spec.frame_stack, channels_order=order)
    space = venv.observation_space
    if _is_image(space) and not is_image_space_channels_first(space) and spec.kind != "minatar":
        venv = VecTransposeImage(venv)
    return venv


def sb3_policy_kwargs(spec: EnvSpec) -> dict:
    """SB3 ``policy_kwargs`` from the TOML-friendly ``spec.policy_kwargs``.

    ``features_extractor = "<name>"`` becomes ``features_extractor_class`` (names in
    ``rlaux.networks.FEATURE_EXTRACTORS``); ``activation_fn = "relu" | "tanh" | ...``
    becomes the torch.nn class; every other key passes through unchanged.
    """
    import torch.nn as nn

    from rlaux.networks import FEATURE_EXTRACTORS

    kwargs = copy.deepcopy(spec.policy_kwargs)
    name = kwargs.pop("features_extractor", None)
    if name is not None:
        if isinstance(name, str):
            key = name.lower()
            if key not in FEATURE_EXTRACTORS:
                raise ConfigError(
                    f"unknown features_extractor {name!r}; valid choices: {', '.join(sorted(FEATURE_EXTRACTORS))}"
                )
            kwargs["features_extractor_class"] = FEATURE_EXTRACTORS[key]
        else:
            kwargs["features_extractor_class"] = name
    act = kwargs.get("activation_fn")
    if isinstance(act, str):
        acts = {
            "relu": nn.ReLU,
            "tanh": nn.Tanh,
            "elu": nn.ELU,
            "leaky_relu": nn.LeakyReLU,
            "gelu": nn.GELU,
            "silu": nn.SiLU,
        }
        if act.lower() not in acts:
            raise ConfigError(f"unknown activation_fn {act!r}; valid choices: {', '.join(acts)}")
        kwargs["activation_fn"] = acts[act.lower()]
    return kwargs


__all__ = [
    "AtariWrapper",
    "EnvSpec",
    "MinAtarImage",
    "WarpFrameRGB",
    "make_vec_env",
    "miniworld_available",
    "resolve_env",
    "sb3_policy_kwargs",
]
