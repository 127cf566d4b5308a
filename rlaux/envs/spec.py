"""Env specs: what a preset (``envs/*.toml``) or a gymnasium id resolves to.

``resolve_env(name)`` turns a preset name (Atari, AtariRGB, MinAtar, MiniWorld,
case-insensitive), a path to a preset .toml file, or any gymnasium id
(``ALE/Pong-v5``, ``BreakoutNoFrameskip-v4``, ``MinAtar/Asterix-v1``,
``CartPole-v1``, ``MiniWorld-MazeS3-v0`` ...) into an :class:`EnvSpec`, plain data
from which :func:`rlaux.envs.vec.make_vec_env` builds the vectorised env. Ids of other
packages resolve once the package is imported: ``gym_packages`` (rl-zoo3's ``--gym-packages``)
or gymnasium's own ``module:EnvId`` form; the spec keeps the modules, and every process
that makes the env imports them first. Unknown names, games and preset keys are one-line
ConfigErrors with close matches.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first

from rlaux.envs.families import (
    IMAGE_WRAPPER_HINTS,
    KINDS,
    apply_env_wrappers,
    env_wrapper_classes,
    import_gym_packages,
    make_base_env,
    miniworld_ids,
    unsupported_observation,
)
from rlaux.envs.names import (
    atari_env_id,
    check_env_id,
    kind_of_id,
    minatar_game,
    miniworld_env_id,
)
from rlaux.errors import ConfigError
from rlaux.presets import is_preset, load_preset

# Keys an env preset may hold (see envs/README.md).
PRESET_KEYS = {
    "description",
    "game_env_kwargs",
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
    "env_wrapper",
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
    gym_packages: list = field(default_factory=list)  # modules imported before the env is made (they register it)
    env_wrapper: list = field(default_factory=list)  # rl-zoo3's env_wrapper: "module.Class" or {"module.Class": {kwargs}}

    def to_dict(self) -> dict:
        return copy.deepcopy(asdict(self))


def atari_wrapper_kwargs(spec: EnvSpec, training: bool) -> dict:
    """The AtariWrapper kwargs of ``spec``; for evaluation (``training=False``) without
    life-loss resets and reward clipping: full games and raw scores."""
    kwargs = dict(spec.wrapper_kwargs)
    if not training:
        kwargs["terminal_on_life_loss"] = False
        kwargs["clip_reward"] = False
    return kwargs


def is_image_observation(space: spaces.Space) -> bool:
    """Whether ``space`` is an image Box, channel-first or channel-last."""
    return isinstance(space, spaces.Box) and is_image_space(space, check_channels=False)


# ---------------------------------------------------------------- policies


def _guess_policy(env_id: str, env_kwargs: dict, env_wrapper: Sequence[Any] = ()) -> tuple[str, dict]:
    """Make the env once (inside its ``env_wrapper``) to read its observation space: images -> CnnPolicy, a Dict
    -> MultiInputPolicy, else MlpPolicy. A space SB3 cannot take is a ConfigError naming a wrapper to use."""
    try:
        env = apply_env_wrappers(make_base_env(env_id, "gym", (), **env_kwargs), env_wrapper)
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
    why = unsupported_observation(space)
    if why is not None:
        hint = next((w for prefix, w in IMAGE_WRAPPER_HINTS.items() if env_id.startswith(prefix)), None)
        fix = (f"--env-wrapper {hint} (its image observation)" if hint else
               "an --env-wrapper module.Class that gives an image or a vector (e.g. gymnasium.wrappers.FlattenObservation "
               "where the space flattens)")
        raise ConfigError(f"env {env_id!r} gives {why}; wrap it with {fix}, or env_wrapper in a preset or zoo file")
    if isinstance(space, spaces.Dict):
        return "MultiInputPolicy", {}
    if is_image_observation(space):
        h, w = _hw(space)
        if min(h, w) < 36:  # NatureCNN (8x8/4, 4x4/2, 3x3/1) needs at least 36x36
            return "CnnPolicy", {"features_extractor": "minatar_cnn"}
        return "CnnPolicy", {}
    return "MlpPolicy", {}


def _hw(space: spaces.Box) -> tuple[int, int]:
    shape = space.shape
    return (shape[1], shape[2]) if is_image_space_channels_first(space) else (shape[0], shape[1])


# ------------------------------------------------------------------ presets


def _validate_preset(preset: dict, where: str) -> None:
    unknown = set(preset) - PRESET_KEYS
    if unknown:
        raise ConfigError(
            f"env preset {where}: unknown key(s) {', '.join(sorted(unknown))}; valid keys: {', '.join(sorted(PRESET_KEYS))}"
        )
    kind = preset.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"env preset {where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    for key in ("env_kwargs", "wrapper_kwargs", "policy_kwargs", "game_env_kwargs"):
        if not isinstance(preset.get(key, {}), dict):
            raise ConfigError(f"env preset {where}: {key} must be a table, got {preset[key]!r}")
    for game, kwargs in preset.get("game_env_kwargs", {}).items():
        if not isinstance(kwargs, dict):
            raise ConfigError(f"env preset {where}: game_env_kwargs.{game} must be a table, got {kwargs!r}")
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


def _env_wrapper_list(wrappers: Any) -> list:
    """rl-zoo3's ``env_wrapper`` value as a list (one item may stand alone), each class checked to import."""
    items = [wrappers] if isinstance(wrappers, (str, dict)) else list(wrappers or [])
    env_wrapper_classes(items)
    return items


def _spec_from_preset(name: str, preset: dict, game: str | None, sticky_actions: bool | None, where: str,
                      user_kwargs: dict[str, Any] | None = None) -> EnvSpec:
    """The EnvSpec of a preset; its env kwargs are the preset's, then its ``game_env_kwargs`` of the game, then
    ``user_kwargs`` (``--env-kwargs``), each over the one before."""
    _validate_preset(preset, where)
    kind = preset["kind"]
    template = preset.get("env_id")
    the_game = game if game is not None else preset.get("game")
    per_game = preset.get("game_env_kwargs", {})
    game_name = minatar_game(the_game) if kind == "minatar" and the_game and per_game else the_game
    env_kwargs = {**preset.get("env_kwargs", {}), **per_game.get(game_name, {}), **(user_kwargs or {})}

    if kind != "atari" and sticky_actions is not None:
        raise ConfigError(f"sticky_actions applies to Atari presets only, not to {name!r} (kind {kind})")
    if kind == "atari":
        sticky = bool(preset.get("sticky_actions", False)) if sticky_actions is None else bool(sticky_actions)
        if template:  # a fixed id in the preset
            env_id = template.format(game=the_game or "")
            if game is not None and "{game}" not in template:
                raise ConfigError(f"env preset {name!r} fixes env_id {template!r}; it takes no game (got {game!r})")
        else:
            env_id, extra = atari_env_id(the_game or "Breakout", sticky)
            env_kwargs = {**extra, **env_kwargs}
    elif template is None:
        raise ConfigError(f"env preset {where}: env_id is required for kind {kind}")
    elif "{game}" in template:
        if not the_game:
            raise ConfigError(f"env preset {where}: env_id {template!r} needs a game (preset key 'game' or --game)")
        if kind == "minatar":
            env_id = template.format(game=minatar_game(the_game))
        elif kind == "miniworld":
            env_id = miniworld_env_id(template, the_game)
        else:
            env_id = template.format(game=the_game)
    else:
        if game is not None:
            raise ConfigError(f"env preset {name!r} fixes env_id {template!r}; it takes no game (got {game!r})")
        env_id = template

    if kind == "miniworld":
        miniworld_ids()  # registers the ids (or raises the GL error)
    env_id = check_env_id(env_id)
    wrappers = _env_wrapper_list(preset.get("env_wrapper", []))
    if kind == "gym":
        policy, policy_kwargs = _guess_policy(env_id, env_kwargs, wrappers)
    else:
        policy, policy_kwargs = "CnnPolicy", {}
    return EnvSpec(
        env_wrapper=wrappers,
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


def _default_preset_for(kind: str) -> dict:
    name = {"atari": "Atari", "minatar": "MinAtar", "miniworld": "MiniWorld"}.get(kind)
    if name is None or not is_preset("envs", name):
        return {"kind": kind}
    return load_preset("envs", name)


def resolve_env(name: str, game: str | None = None, sticky_actions: bool | None = None,
                env_kwargs: dict[str, Any] | None = None, gym_packages: Sequence[str] = (),
                env_wrapper: Sequence[Any] | None = None) -> EnvSpec:
    """Turn a preset name (or path to a preset .toml) or a gymnasium id (also ``module:EnvId``) into an EnvSpec.

    ``game`` picks the game of a preset that has one (Atari: any ALE game, e.g.
    "Pong" or "space_invaders"; MinAtar: one of the five; MiniWorld: e.g. "FourRooms").
    ``sticky_actions`` (Atari presets only) overrides the preset: True makes
    ``ALE/<Game>-v5`` (repeat_action_probability 0.25, frameskip=1 so the wrapper
    skips), False ``<Game>NoFrameskip-v4``. ``env_kwargs`` go to ``gymnasium.make``, over the
    preset's. ``gym_packages`` are imported first (packages that register envs on import); a
    ``module:EnvId`` name imports ``module``, as ``gymnasium.make`` does. ``env_wrapper``: rl-zoo3's list of
    wrapper classes (``"module.Class"`` or ``{"module.Class": {kwargs}}``) around the raw env, in place of the
    preset's ``env_wrapper``. Errors are ConfigError, one line.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"env name must be a non-empty string, got {name!r}")
    name = name.strip()
    user_kwargs = dict(env_kwargs or {})
    packages = list(dict.fromkeys(gym_packages))
    import_gym_packages(packages)
    if is_preset("envs", name):
        preset = load_preset("envs", name)
        if env_wrapper:
            preset = {**preset, "env_wrapper": list(env_wrapper)}
        spec = _spec_from_preset(name, preset, game, sticky_actions, where=name, user_kwargs=user_kwargs)
        spec.gym_packages = packages
        return spec
    if name.lower().endswith(".toml"):
        load_preset("envs", name)  # raises the one-line "does not exist" error
    if ":" in name:  # gymnasium's "module:EnvId": import module, then make EnvId
        module, _, name = name.partition(":")
        import_gym_packages([module], what=f"--env {module}:{name}")
        if not name:
            raise ConfigError(f"--env {module}: names no env after the ':' (the form is module:EnvId)")
        packages = list(dict.fromkeys([*packages, module]))

    if name not in gym.registry and name.startswith("MiniWorld"):
        miniworld_ids()
    env_id = check_env_id(name)
    if game is not None:
        raise ConfigError(f"game {game!r} applies to presets only; {env_id!r} is a gymnasium id (drop the game)")
    kind = kind_of_id(env_id)
    if sticky_actions is not None and kind != "atari":
        raise ConfigError(f"sticky_actions applies to Atari envs only, not to {env_id!r}")

    base = _default_preset_for(kind)
    kwargs: dict[str, Any] = dict(base.get("env_kwargs", {})) if kind != "gym" else {}
    if kind == "atari":
        reg = gym.registry[env_id].kwargs
        if reg.get("frameskip", 1) != 1:
            kwargs["frameskip"] = 1  # AtariWrapper does the (max-pooled) skipping
        if sticky_actions is not None:
            kwargs["repeat_action_probability"] = 0.25 if sticky_actions else 0.0
    kwargs.update(user_kwargs)
    preset = {k: v for k, v in base.items() if k not in ("env_id", "game", "sticky_actions", "env_kwargs")}
    preset["kind"] = kind
    preset["env_id"] = env_id
    preset["env_kwargs"] = kwargs
    if env_wrapper:
        preset["env_wrapper"] = list(env_wrapper)
    if kind == "gym":
        spec = _spec_from_preset(env_id, preset, None, None, where=env_id)
        spec.gym_packages = packages
        return spec
    preset.setdefault("policy", "CnnPolicy")
    _validate_preset(preset, env_id)
    return EnvSpec(
        name=env_id,
        env_id=env_id,
        kind=kind,
        n_envs=int(preset.get("n_envs", 8)),
        frame_stack=int(preset.get("frame_stack", 4 if kind == "atari" else 1)),
        env_kwargs=kwargs,
        wrapper_kwargs=dict(preset.get("wrapper_kwargs", {})),
        policy=preset["policy"],
        policy_kwargs=dict(preset.get("policy_kwargs", {})),
        gym_packages=packages,
        env_wrapper=_env_wrapper_list(preset.get("env_wrapper", [])),
    )


__all__ = [
    "ATARI_WRAPPER_KEYS",
    "PRESET_KEYS",
    "EnvSpec",
    "atari_wrapper_kwargs",
    "is_image_observation",
    "resolve_env",
]
