"""``python train_agent.py evaluate --load RUN [--episodes N] [--video [PATH]]``: run a trained agent.

``RUN`` is a run folder (``config.json`` says how to rebuild the env and which
algorithm it is) or a model file (``.zip``: its run folder is used when it lies
in one, e.g. ``RUN/best_model.zip`` or ``RUN/checkpoints/ckpt-.../model.zip``;
otherwise ``--env`` (and ``--game``) say which env to build).

The env is the *evaluation* variant of the run's env (``make_vec_env(...,
training=False)``): Atari without EpisodicLifeEnv and without ClipRewardEnv, so
episodes are whole games. Returns come from SB3's ``evaluate_policy``, which
takes each episode's return from the ``Monitor`` wrapper (``info["episode"]``)
when the env has one; rlaux's Monitor wraps the raw env below every Atari
wrapper, so the reported returns are full-game raw scores in any case (the
EnvPool path logs the same numbers itself). Episode lengths are Monitor's: raw
env steps, which for Atari are emulator frames (4 per agent step, plus the reset
no-ops).

Which model of a run folder (``--model``): ``best`` (``best_model.zip``, written
by ``--eval-freq``), ``final`` (``final_model.zip``), ``latest`` (the newest
checkpoint under ``checkpoints/``); by default the first that exists of
best, final, the newest checkpoint, ``interrupted_model.zip``.

Output: one line ``return <mean> ± <std>, median <m>, min <a>, max <b> over N
episodes`` on stdout, and ``<run>/evaluation.json`` (or ``--output``) with every
episode's return and length. ``--video [PATH]`` also records one episode (after
the evaluation, same settings) to an MP4 with gymnasium's ``RecordVideo`` (needs
moviepy: ``pip install 'rlaux[video]'``); default ``<run>/videos/<model>.mp4``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlaux.errors import ConfigError

MODEL_CHOICES = ("best", "final", "latest")
DEVICES = ("auto", "cpu", "cuda")
VIDEO_HINT = "--video needs moviepy: pip install 'rlaux[video]'"


# ------------------------------------------------------------------ what to load


@dataclass
class Target:
    """What ``--load`` resolved to."""

    model_path: Path
    which: str  # "best" | "final" | "latest" | "interrupted" | "file"
    run_dir: Path | None
    config: dict[str, Any] | None


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    if not isinstance(config, dict) or not isinstance(config.get("env_spec"), dict):
        raise ConfigError(f"{path}: not a config.json written by rlaux (no env_spec)")
    return config


def _checkpoint_models(run_dir: Path) -> list[Path]:
    """Model files of the run's checkpoints, oldest first."""
    try:
        from rlaux.checkpoint import checkpoint_dirs
    except ImportError:  # pragma: no cover - checkpoint module absent
        root = run_dir / "checkpoints"
        dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    else:
        dirs = checkpoint_dirs(run_dir)
    return [d / "model.zip" for d in dirs if (d / "model.zip").is_file()]


def _run_dir_of(model_path: Path) -> Path | None:
    """The run folder a model file lies in (RUN/x.zip or RUN/checkpoints/<ckpt>/model.zip), if any."""
    candidates = [model_path.parent]
    if len(model_path.parents) > 2 and model_path.parents[1].name == "checkpoints":
        candidates.append(model_path.parents[2])
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    return None


def resolve_target(load: str | os.PathLike, model: str | None = None) -> Target:
    """Turn ``--load`` (+ ``--model``) into the model file to load and the run folder, if any."""
    path = Path(load)
    if not path.exists():
        raise ConfigError(f"--load {load}: no such run folder or model file")
    if path.is_file():
        if model is not None:
            raise ConfigError(f"--model {model} picks a model of a run folder; --load {load} is a model file already")
        run_dir = _run_dir_of(path)
        return Target(path, "file", run_dir, _read_config(run_dir) if run_dir else None)
    if not path.is_dir():
        raise ConfigError(f"--load {load}: not a run folder or a model file")
    if not (path / "config.json").is_file():
        zips = sorted(p.name for p in path.glob("*.zip"))
        hint = f" (it holds {', '.join(zips)}: give one of them to --load, with --env)" if zips else ""
        raise ConfigError(f"--load {load}: not a run folder, it has no config.json{hint}")
    config = _read_config(path)
    checkpoints = _checkpoint_models(path)
    choices = {
        "best": path / "best_model.zip",
        "final": path / "final_model.zip",
        "latest": checkpoints[-1] if checkpoints else None,
    }
    if model is not None:
        if model not in MODEL_CHOICES:
            raise ConfigError(f"--model {model!r} is not one of {', '.join(MODEL_CHOICES)}")
        chosen = choices[model]
        if chosen is None or not chosen.is_file():
            what = "no checkpoint under checkpoints/" if model == "latest" else f"no {chosen.name}"
            have = [k for k, v in choices.items() if v is not None and v.is_file()]
            raise ConfigError(f"--model {model}: run {path} has {what} (it has: {', '.join(have) or 'no model'})")
        return Target(chosen, model, path, config)
    order = [("best", choices["best"]), ("final", choices["final"]), ("latest", choices["latest"]),
             ("interrupted", path / "interrupted_model.zip")]
    for which, candidate in order:
        if candidate is not None and candidate.is_file():
            return Target(candidate, which, path, config)
    raise ConfigError(f"run {path} has no model yet (no best_model.zip, final_model.zip, checkpoint or "
                      "interrupted_model.zip)")


def _zip_data_keys(path: Path) -> set[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return set(json.loads(archive.read("data").decode()))
    except Exception:  # noqa: BLE001 - a bad file is reported by the loader
        return set()


def load_model(path: Path, algo: str | None = None, device: str = "auto") -> Any:
    """Load an AuxPPO/AuxA2C model file; the class from ``algo``, else guessed (PPO, then A2C).

    A missing, truncated or foreign file is a ConfigError naming it.
    """
    from rlaux.algorithms import ALGORITHMS

    if algo is not None and algo not in ALGORITHMS:
        raise ConfigError(f"{path}: algorithm {algo!r} (from config.json) is not one of {', '.join(ALGORITHMS)}")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path}: not a model file (not a zip archive; truncated or corrupt?)")
    if algo is not None:
        order = [algo]
    else:  # PPO saves clip_range/n_epochs; A2C does not
        keys = _zip_data_keys(path)
        order = ["ppo", "a2c"] if ("clip_range" in keys or "n_epochs" in keys or not keys) else ["a2c", "ppo"]
    errors = []
    for name in order:
        try:
            return ALGORITHMS[name].load(path, env=None, device=device)
        except Exception as err:  # noqa: BLE001 - SB3/torch/zip errors of all kinds
            errors.append(f"{ALGORITHMS[name].__name__}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    raise ConfigError(f"{path}: cannot be loaded as a model ({'; '.join(errors)})")


# ------------------------------------------------------------------------ envs


def _video_frame(frame: Any) -> Any:
    """uint8 RGB frame, at least ~160 px on its short side, even sides (H.264 needs them)."""
    if frame is None:
        return None
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:  # MinAtar's rgb_array is a float palette image in [0, 1]
        scale = 255.0 if frame.size and float(frame.max()) <= 1.0 else 1.0
        frame = np.clip(frame * scale, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    h, w = frame.shape[:2]
    k = max(1, int(np.ceil(160 / max(min(h, w), 1))))
    if k > 1:  # nearest-neighbour upscaling keeps MinAtar's cells sharp
        frame = np.repeat(np.repeat(frame, k, axis=0), k, axis=1)
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
    return frame


def _video_wrapper(env: Any, video_folder: str, name_prefix: str, fps: int | None) -> Any:
    """The raw env, rendering video-ready frames, inside RecordVideo (first episode only)."""
    import gymnasium as gym
    from gymnasium.wrappers import RecordVideo

    class _Frames(gym.Wrapper):
        def render(self) -> Any:
            return _video_frame(self.env.render())

    return RecordVideo(_Frames(env), video_folder=video_folder, name_prefix=name_prefix,
                       episode_trigger=lambda episode: episode == 0, fps=fps, disable_logger=True)


def make_eval_env(spec: Any, n_envs: int = 1, seed: int = 0, vec_env: str = "auto", env_wrapper: Any = None) -> Any:
    """The evaluation VecEnv of ``spec``: no episodic life, no reward clipping (``training=False``)."""
    from rlaux.envs import make_vec_env

    return make_vec_env(spec, n_envs=n_envs, seed=seed, vec_env=vec_env, training=False, env_wrapper=env_wrapper)


def _check_spaces(model: Any, env: Any, model_path: Path, spec: Any) -> None:
    for key in ("observation_space", "action_space"):
        want, have = getattr(model, key), getattr(env, key)
        if want != have:
            raise ConfigError(f"{model_path}: the model was trained on {key} {want}, but env {spec.env_id} gives "
                              f"{have}; give the env it was trained on (--env/--game)")


def _require_moviepy() -> None:
    try:
        import moviepy  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a broken install
        raise ConfigError(VIDEO_HINT) from None


# ------------------------------------------------------------------ evaluation


def summarize(returns: Sequence[float]) -> dict[str, float]:
    r = np.asarray(returns, dtype=np.float64)
    return {"mean": float(r.mean()), "std": float(r.std()), "median": float(np.median(r)),
            "min": float(r.min()), "max": float(r.max()), "episodes": int(len(r))}


def summary_line(stats: dict[str, float]) -> str:
    return (f"return {stats['mean']:.2f} ± {stats['std']:.2f}, median {stats['median']:.2f}, "
            f"min {stats['min']:.2f}, max {stats['max']:.2f} over {stats['episodes']} episodes")


def evaluate(model: Any, env: Any, episodes: int, deterministic: bool = True) -> tuple[list[float], list[int]]:
    """Per-episode full-game returns and lengths (SB3's evaluate_policy, Monitor's episode info)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    returns, lengths = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=deterministic,
                                       return_episode_rewards=True, warn=True)
    return [float(r) for r in returns], [int(n) for n in lengths]


def record_video(model: Any, spec: Any, path: Path, seed: int, deterministic: bool) -> Path:
    """Play one episode and write it to ``path`` (.mp4)."""
    _require_moviepy()
    import functools

    path.parent.mkdir(parents=True, exist_ok=True)
    # Atari: every emulator frame is recorded (the raw env is below the frame skip): 60 fps is real time.
    fps = 60 if spec.kind == "atari" and spec.env_kwargs.get("frameskip", 1) == 1 else 30
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".video-") as tmp:
        folder = str(Path(tmp) / "frames")
        wrapper = functools.partial(_video_wrapper, video_folder=folder, name_prefix="episode", fps=fps)
        with warnings.catch_warnings():
            # gymnasium's env checker looks at the raw render (MinAtar's is float); the recorded frames are uint8
            warnings.filterwarnings("ignore", message=".*(RGB-array rendering|render fps).*")
            env = make_eval_env(spec, n_envs=1, seed=seed, vec_env="dummy", env_wrapper=wrapper)
            try:
                evaluate(model, env, 1, deterministic)
            finally:
                env.close()  # RecordVideo writes the file when its episode ends or on close
        videos = sorted(Path(folder).glob("*.mp4"))
        if not videos:
            raise ConfigError(f"no video was written for {spec.env_id} (does it render rgb_array frames?)")
        shutil.move(str(videos[0]), path)
    return path


# ------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    from rlaux.cli import _Parser

    p = _Parser(prog="train_agent.py evaluate",
                description="Evaluate a trained agent: full games, raw scores (no reward clipping, no episodic life).")
    p.add_argument("--load", required=True, metavar="RUN",
                   help="run folder (its config.json rebuilds the env) or model .zip file")
    p.add_argument("--episodes", "-n", "--n-eval-episodes", dest="episodes", type=int, default=10,
                   help="episodes to play (default 10)")
    p.add_argument("--model", choices=MODEL_CHOICES, default=None,
                   help="model of a run folder (default: best, else final, else the newest checkpoint, "
                        "else interrupted_model.zip)")
    p.add_argument("--env", default=None, help="env preset or gymnasium id (needed for a model file outside a run "
                                                "folder; overrides the run's env otherwise)")
    p.add_argument("--game", default=None, help="game of the env preset")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--deterministic", dest="deterministic", action="store_true", default=True,
                       help="greedy actions (default, as rl-zoo)")
    group.add_argument("--stochastic", dest="deterministic", action="store_false", help="sample actions")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation envs (env i: seed + i); default 0")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--n-envs", type=int, default=1, help="parallel evaluation envs (default 1)")
    p.add_argument("--vec-env", default="auto", choices=["auto", "dummy", "subproc", "envpool"],
                   help="how to vectorise the evaluation envs (default auto)")
    p.add_argument("--video", nargs="?", const="", default=None, metavar="PATH",
                   help="also record one episode to an MP4 (default <run>/videos/<model>.mp4); needs moviepy")
    p.add_argument("--output", default=None, metavar="JSON",
                   help="where to write the results (default <run>/evaluation.json; none for a bare model file)")
    return p


def _check_args(args: argparse.Namespace) -> None:
    problems = []
    if args.episodes < 1:
        problems.append(f"--episodes must be at least 1, got {args.episodes}")
    if args.n_envs < 1:
        problems.append(f"--n-envs must be at least 1, got {args.n_envs}")
    if args.seed < 0:
        problems.append(f"--seed must be >= 0, got {args.seed}")
    if args.device not in DEVICES:
        problems.append(f"--device '{args.device}' is not one of {', '.join(DEVICES)}")
    elif args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            problems.append("--device cuda was asked for, but torch sees no CUDA GPU; use --device auto or cpu")
    if args.game is not None and args.env is None:
        problems.append("--game needs --env (a run folder's game comes from its config.json)")
    if problems:
        raise ConfigError("; ".join(problems))


def _spec_for(target: Target, env: str | None, game: str | None) -> Any:
    from rlaux.envs import EnvSpec, resolve_env

    if env is not None:
        return resolve_env(env, game=game)
    if target.config is None:
        raise ConfigError(f"--load {target.model_path}: a model file outside a run folder needs --env "
                          "(and --game) to say which env it plays")
    try:
        return EnvSpec(**target.config["env_spec"])
    except TypeError as err:
        raise ConfigError(f"{target.run_dir / 'config.json'}: bad env_spec ({err})") from None


def _default_video_path(target: Target) -> Path:
    base = target.run_dir if target.run_dir is not None else target.model_path.parent
    stem = target.model_path.stem if target.which != "latest" else target.model_path.parent.name
    return base / "videos" / f"{stem}.mp4"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    _check_args(args)
    if args.video is not None:
        _require_moviepy()  # fail before loading anything
    target = resolve_target(args.load, args.model)
    spec = _spec_for(target, args.env, args.game)
    algo = (target.config or {}).get("algo")
    model = load_model(target.model_path, algo=algo, device=args.device)
    model.set_random_seed(args.seed)  # stochastic actions repeat with the seed
    mode = "deterministic" if args.deterministic else "stochastic"
    print(f"model: {target.model_path} ({target.which}); env: {spec.env_id} (evaluation settings: full games, "
          f"raw scores); {args.episodes} episodes, {mode}, seed {args.seed}", flush=True)

    env = make_eval_env(spec, n_envs=args.n_envs, seed=args.seed, vec_env=args.vec_env)
    try:
        _check_spaces(model, env, target.model_path, spec)
        t0 = time.perf_counter()
        returns, lengths = evaluate(model, env, args.episodes, args.deterministic)
        seconds = time.perf_counter() - t0
    finally:
        env.close()
    stats = summarize(returns)
    print(summary_line(stats), flush=True)

    video = None
    if args.video is not None:
        video = Path(args.video) if args.video else _default_video_path(target)
        if video.suffix.lower() != ".mp4":  # a folder
            video = video / _default_video_path(target).name
        record_video(model, spec, video, args.seed, args.deterministic)
        print(f"video: {video}", flush=True)

    output = Path(args.output) if args.output else (target.run_dir / "evaluation.json" if target.run_dir else None)
    if output is not None:
        result = {
            "model": str(target.model_path), "model_choice": target.which, "algo": type(model).__name__,
            "env_id": spec.env_id, "env_spec": spec.to_dict(), "deterministic": args.deterministic,
            "seed": args.seed, "n_envs": args.n_envs, "vec_env": args.vec_env,
            **stats, "returns": returns, "lengths": lengths,
            "lengths_unit": "raw env steps (Atari: emulator frames)",
            "num_timesteps": int(getattr(model, "num_timesteps", 0)), "seconds": round(seconds, 3),
            "video": str(video) if video else None,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, output)
        print(f"results: {output}", flush=True)
    return 0


__all__ = ["Target", "evaluate", "load_model", "main", "make_eval_env", "record_video", "resolve_target",
           "summarize", "summary_line"]
