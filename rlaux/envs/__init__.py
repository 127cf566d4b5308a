"""Environment construction: presets (``envs/*.toml``) and gymnasium ids -> SB3 VecEnvs.

``resolve_env(name, game=..., sticky_actions=...)`` turns a preset name, a preset
.toml path or any gymnasium id into an :class:`EnvSpec`; ``make_vec_env(spec)``
builds the vectorised env from it, with uint8 channel-first image observations.
ALE, MinAtar and MiniWorld ids need no registration by the user.

One concern a module, each importing only those listed before it:

- :mod:`~rlaux.envs.families`: registration and availability of the env families; raw envs.
- :mod:`~rlaux.envs.spec`: :class:`EnvSpec`, preset validation, name resolution.
- :mod:`~rlaux.envs.wrappers`: the Atari and MinAtar wrappers, Monitor placement, one env of a VecEnv.
- :mod:`~rlaux.envs.envpool`: Atari through EnvPool as an SB3 VecEnv (optional extra ``rlaux[envpool]``).
- :mod:`~rlaux.envs.vec`: ``make_vec_env`` and the vec-env choices.
"""

from rlaux.envs.envpool import EnvPoolAtariVecEnv, make_envpool_vec_env
from rlaux.envs.families import KINDS, MINATAR_GAMES, miniworld_available
from rlaux.envs.spec import EnvSpec, atari_wrapper_kwargs, resolve_env
from rlaux.envs.vec import VEC_ENV_CHOICES, InfoSharingDummyVecEnv, make_vec_env
from rlaux.envs.wrappers import AtariWrapper, MinAtarImage, WarpFrameRGB

__all__ = [
    "KINDS",
    "MINATAR_GAMES",
    "VEC_ENV_CHOICES",
    "AtariWrapper",
    "EnvPoolAtariVecEnv",
    "EnvSpec",
    "InfoSharingDummyVecEnv",
    "MinAtarImage",
    "WarpFrameRGB",
    "atari_wrapper_kwargs",
    "make_envpool_vec_env",
    "make_vec_env",
    "miniworld_available",
    "resolve_env",
]
