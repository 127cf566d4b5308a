"""Evaluating a trained agent: what to load, the evaluation env, the episodes, a video, the results file.

The library of ``python train_agent.py evaluate --load RUN [--episodes N] [--video [PATH]]``
(its flags are parsed in :mod:`rlaux.cli.evaluate`; :func:`evaluate_run` does the rest).

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
EnvPool path logs the same numbers itself). Episode lengths are Monitor's, in
agent steps: rlaux's Atari Monitor sits above the frame skip, so one step is 4
emulator frames (SB3's ``make_atari_env`` and rl-zoo3 put it below and count
frames, 4x more; ``evaluation.json`` gives both for Atari).

Each episode is capped at ``--max-episode-steps`` agent steps (default
:func:`default_max_episode_steps`: for Atari 4,500, i.e. 18,000 frames, the
5 minutes of play of Mnih et al. 2015's evaluation, where a greedy agent that
never presses FIRE would otherwise play the ALE's 108,000 frames each episode;
27,000 for other envs; 0: the env's own limit only). Progress is printed as it
goes: each episode's return and length, and every few seconds the steps and
running return of the episodes under way; the summary says how many episodes
the cap ended and, for a greedy policy, names stalling as the likely cause.

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

import functools
import json
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.evaluation import evaluate_policy

from rlaux.algorithms import ALGORITHMS, evaluation_reward_feeder
from rlaux.envs import EnvSpec, make_vec_env, resolve_env
from rlaux.envs.evaluation import (
    DEFAULT_MAX_EPISODE_STEPS,
    EvaluationProgress,
    atari_frame_skip,
    default_max_episode_steps,
    video_wrapper,
)
from rlaux.errors import ConfigError, import_optional
from rlaux.files import atomic_write_bytes
from rlaux.run import DEVICES
from rlaux.run.pretrained import saved_algo
from rlaux.run_folder import RunFolder, RunRecord

MODEL_CHOICES = ("best", "final", "latest")


# ------------------------------------------------------------------ what to load


@dataclass
class Target:
    """What ``--load`` resolved to."""

    model_path: Path
    which: str  # "best" | "final" | "latest" | "interrupted" | "file"
    run_dir: Path | None
    config: RunRecord | None


def _read_config(run_dir: Path) -> RunRecord:
    record = RunFolder(run_dir).read()
    if not isinstance(record.get("env_spec"), dict):
        raise ConfigError(f"{RunFolder(run_dir).config_file}: not a config.json written by rlaux (no env_spec)")
    return record


def resolve_target(load: str | os.PathLike, model: str | None = None) -> Target:
    """Turn ``--load`` (+ ``--model``) into the model file to load and the run folder, if any."""
    path = Path(load)
    if not path.exists():
        raise ConfigError(f"--load {load}: no such run folder or model file")
    if path.is_file():
        if model is not None:
            raise ConfigError(f"--model {model} picks a model of a run folder; --load {load} is a model file already")
        folder = RunFolder.of_model(path)
        return Target(path, "file", folder and folder.path, _read_config(folder.path) if folder else None)
    if not path.is_dir():
        raise ConfigError(f"--load {load}: not a run folder or a model file")
    folder = RunFolder(path)
    if not folder.is_run():
        zips = sorted(p.name for p in path.glob("*.zip"))
        hint = f" (it holds {', '.join(zips)}: give one of them to --load, with --env)" if zips else ""
        raise ConfigError(f"--load {load}: not a run folder, it has no config.json{hint}")
    config = _read_config(path)
    checkpoints = [d / "model.zip" for d in folder.checkpoint_dirs() if (d / "model.zip").is_file()]
    choices = {
        "best": folder.model_file("best"),
        "final": folder.model_file("final"),
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
             ("interrupted", folder.model_file("interrupted"))]
    for which, candidate in order:
        if candidate is not None and candidate.is_file():
            return Target(candidate, which, path, config)
    raise ConfigError(f"run {path} has no model yet (no best_model.zip, final_model.zip, checkpoint or "
                      "interrupted_model.zip)")


def load_model(path: Path, algo: str | None = None, device: str = "auto") -> Any:
    """Load an AuxPPO/AuxA2C/AuxRecurrentPPO model file; the class from ``algo``, else the one the file
    names (``rlaux.run.pretrained.saved_algo``), else tried in turn.

    A missing, truncated or foreign file is a ConfigError naming it.
    """
    if algo is not None and algo not in ALGORITHMS:
        raise ConfigError(f"{path}: algorithm {algo!r} (from config.json) is not one of {', '.join(ALGORITHMS)}")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path}: not a model file (not a zip archive; truncated or corrupt?)")
    saved = saved_algo(path)
    order = [algo] if algo is not None else [saved] if saved is not None else list(ALGORITHMS)
    errors = []
    for name in order:
        try:
            return ALGORITHMS[name].load(path, env=None, device=device)
        except Exception as err:  # noqa: BLE001 - SB3/torch/zip errors of all kinds
            errors.append(f"{ALGORITHMS[name].__name__}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    raise ConfigError(f"{path}: cannot be loaded as a model ({'; '.join(errors)})")


# ------------------------------------------------------------------------ envs


def make_eval_env(spec: EnvSpec, n_envs: int = 1, seed: int = 0, vec_env: str = "auto", env_wrapper: Any = None,
                  max_episode_steps: int | None = None) -> Any:
    """The evaluation VecEnv of ``spec``: no episodic life, no reward clipping (``training=False``);
    episodes cut after ``max_episode_steps`` agent steps (None or 0: the env's own limit)."""
    return make_vec_env(spec, n_envs=n_envs, seed=seed, vec_env=vec_env, training=False, env_wrapper=env_wrapper,
                        max_episode_steps=max_episode_steps or None)


def _check_spaces(model: Any, env: Any, model_path: Path, spec: EnvSpec) -> None:
    for key in ("observation_space", "action_space"):
        want, have = getattr(model, key), getattr(env, key)
        if want != have:
            raise ConfigError(f"{model_path}: the model was trained on {key} {want}, but env {spec.env_id} gives "
                              f"{have}; give the env it was trained on (--env/--game)")


def _require_moviepy() -> None:
    import_optional("moviepy", "--video")


# ------------------------------------------------------------------ evaluation


def summarize(returns: Sequence[float]) -> dict[str, float]:
    """Mean, std, median, min, max and number of the episode returns."""
    r = np.asarray(returns, dtype=np.float64)
    return {"mean": float(r.mean()), "std": float(r.std()), "median": float(np.median(r)),
            "min": float(r.min()), "max": float(r.max()), "episodes": int(len(r))}


def summary_line(stats: dict[str, float]) -> str:
    """The one line a summary is printed as."""
    return (f"return {stats['mean']:.2f} ± {stats['std']:.2f}, median {stats['median']:.2f}, "
            f"min {stats['min']:.2f}, max {stats['max']:.2f} over {stats['episodes']} episodes")


def stall_note(capped: int, episodes: int, cap: int, deterministic: bool) -> str | None:
    """The line that explains episodes ended by the cap, or None if there were none."""
    if not capped:
        return None
    cause = ("a greedy policy that stalls (e.g. never presses FIRE, or stands still) is the likely cause: try "
             "--stochastic; " if deterministic else "")
    return (f"note: {capped} of {episodes} episodes ran to the cap of {cap} agent steps and were cut there; "
            f"{cause}--max-episode-steps N changes the cap (0: the env's own limit)")


def evaluate(model: Any, env: Any, episodes: int, deterministic: bool = True) -> tuple[list[float], list[int]]:
    """Per-episode full-game returns and lengths (SB3's evaluate_policy, Monitor's episode info).

    A recurrent policy's LSTM state is carried from step to step and reset at each episode start
    (``evaluate_policy`` hands ``predict`` the state it returned and the episode starts); with UNREAL's
    LSTM inputs each step's reward is written into them too (``evaluation_reward_feeder``)."""
    returns, lengths = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=deterministic,
                                       return_episode_rewards=True, warn=True,
                                       callback=evaluation_reward_feeder(model))
    return [float(r) for r in returns], [int(n) for n in lengths]


def record_video(model: Any, spec: EnvSpec, path: Path, seed: int, deterministic: bool,
                 max_episode_steps: int | None = None) -> Path:
    """Play one episode (at most ``max_episode_steps`` agent steps; default by env kind) and write it to ``path`` (.mp4)."""
    _require_moviepy()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atari: every emulator frame is recorded (the raw env is below the frame skip): 60 fps is real time.
    fps = 60 if spec.kind == "atari" and spec.env_kwargs.get("frameskip", 1) == 1 else 30
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".video-") as tmp:
        folder = str(Path(tmp) / "frames")
        wrapper = functools.partial(video_wrapper, video_folder=folder, name_prefix="episode", fps=fps)
        with warnings.catch_warnings():
            # gymnasium's env checker looks at the raw render (MinAtar's is float); the recorded frames are uint8
            warnings.filterwarnings("ignore", message=".*(RGB-array rendering|render fps).*")
            cap = default_max_episode_steps(spec) if max_episode_steps is None else max_episode_steps
            env = make_eval_env(spec, n_envs=1, seed=seed, vec_env="dummy", env_wrapper=wrapper, max_episode_steps=cap)
            try:
                evaluate(model, env, 1, deterministic)
            finally:
                env.close()  # RecordVideo writes the file when its episode ends or on close
        videos = sorted(Path(folder).glob("*.mp4"))
        if not videos:
            raise ConfigError(f"no video was written for {spec.env_id} (does it render rgb_array frames?)")
        shutil.move(str(videos[0]), path)
    return path


# ------------------------------------------------------------------ the command


def check_options(episodes: int, n_envs: int, seed: int, device: str, env: str | None, game: str | None,
                  max_episode_steps: int | None = None) -> None:
    """Every problem of the evaluation settings in one ConfigError (before anything is loaded)."""
    problems = []
    if max_episode_steps is not None and max_episode_steps < 0:
        problems.append(f"--max-episode-steps must be >= 0 (0: the env's own limit only), got {max_episode_steps}")
    if episodes < 1:
        problems.append(f"--episodes must be at least 1, got {episodes}")
    if n_envs < 1:
        problems.append(f"--n-envs must be at least 1, got {n_envs}")
    if seed < 0:
        problems.append(f"--seed must be >= 0, got {seed}")
    if device not in DEVICES:
        problems.append(f"--device '{device}' is not one of {', '.join(DEVICES)}")
    elif device == "cuda":
        if not torch.cuda.is_available():
            problems.append("--device cuda was asked for, but torch sees no CUDA GPU; use --device auto or cpu")
    if game is not None and env is None:
        problems.append("--game needs --env (a run folder's game comes from its config.json)")
    if problems:
        raise ConfigError("; ".join(problems))


def spec_for(target: Target, env: str | None = None, game: str | None = None) -> EnvSpec:
    """The env to evaluate on: ``env``/``game`` if given, else the run's ``env_spec``."""
    if env is not None:
        return resolve_env(env, game=game)
    if target.config is None:
        raise ConfigError(f"--load {target.model_path}: a model file outside a run folder needs --env "
                          "(and --game) to say which env it plays")
    try:
        return EnvSpec(**target.config["env_spec"])
    except TypeError as err:
        raise ConfigError(f"{RunFolder(target.run_dir).config_file}: bad env_spec ({err})") from None


def default_video_path(target: Target) -> Path:
    """``<run>/videos/<model>.mp4`` (a checkpoint's video is named after its folder)."""
    base = target.run_dir if target.run_dir is not None else target.model_path.parent
    stem = target.model_path.stem if target.which != "latest" else target.model_path.parent.name
    return base / "videos" / f"{stem}.mp4"


def evaluate_run(
    load: str | os.PathLike,
    *,
    model: str | None = None,
    env: str | None = None,
    game: str | None = None,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 0,
    device: str = "auto",
    n_envs: int = 1,
    vec_env: str = "auto",
    video: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    max_episode_steps: int | None = None,
    print_output_path: bool = True,
) -> dict[str, Any]:
    """Evaluate the model ``load`` names, printing what it does and each episode; return the results.

    ``max_episode_steps``: cap of an episode in agent steps (None: :func:`default_max_episode_steps`;
    0: the env's own limit only). ``print_output_path``: False for a results file in a temporary folder.
    ``video``: ``None`` for no video, ``""`` for the default path, else an .mp4 file or a folder.
    ``output``: the results JSON (default ``<run>/evaluation.json``; none for a bare model file).
    """
    check_options(episodes, n_envs, seed, device, env, game, max_episode_steps)
    if video is not None:
        _require_moviepy()  # fail before loading anything
    target = resolve_target(load, model)
    spec = spec_for(target, env, game)
    algo = (target.config or {}).get("algo")
    agent = load_model(target.model_path, algo=algo, device=device)
    agent.set_random_seed(seed)  # stochastic actions repeat with the seed
    mode = "deterministic" if deterministic else "stochastic"
    cap = default_max_episode_steps(spec) if max_episode_steps is None else max_episode_steps
    if cap and vec_env == "envpool":
        print(f"note: --vec-env envpool keeps EnvPool's own cap (108,000 frames); --max-episode-steps {cap} is not "
              "applied", flush=True)
        cap = 0
    limit = f"at most {cap} agent steps an episode" if cap else "episodes as long as the env allows"
    print(f"model: {target.model_path} ({target.which}); env: {spec.env_id} (evaluation settings: full games, "
          f"raw scores); {episodes} episodes, {mode}, seed {seed}, {limit}", flush=True)

    eval_env = EvaluationProgress(make_eval_env(spec, n_envs=n_envs, seed=seed, vec_env=vec_env, max_episode_steps=cap),
                                  episodes, cap)
    try:
        _check_spaces(agent, eval_env, target.model_path, spec)
        t0 = time.perf_counter()
        returns, lengths = evaluate(agent, eval_env, episodes, deterministic)
        seconds = time.perf_counter() - t0
    finally:
        eval_env.close()
    stats = summarize(returns)
    print(summary_line(stats), flush=True)
    capped = sum(1 for n in lengths if cap and n >= cap)
    note = stall_note(capped, len(lengths), cap, deterministic)
    if note:
        print(note, flush=True)

    video_path = None
    if video is not None:
        video_path = Path(video) if str(video) else default_video_path(target)
        if video_path.suffix.lower() != ".mp4":  # a folder
            video_path = video_path / default_video_path(target).name
        record_video(agent, spec, video_path, seed, deterministic, max_episode_steps=cap)
        print(f"video: {video_path}", flush=True)

    frame_skip = atari_frame_skip(spec)
    result = {
        "model": str(target.model_path), "model_choice": target.which, "algo": type(agent).__name__,
        "env_id": spec.env_id, "env_spec": spec.to_dict(), "deterministic": deterministic,
        "seed": seed, "n_envs": n_envs, "vec_env": vec_env,
        **stats, "returns": returns, "lengths": lengths,
        "lengths_unit": "agent steps" + (f" (Atari: {frame_skip} emulator frames each; lengths_frames counts frames, "
                                         "as SB3's make_atari_env and rl-zoo3 do)" if frame_skip else ""),
        **({"lengths_frames": [n * frame_skip for n in lengths]} if frame_skip else {}),
        "max_episode_steps": cap or None, "episodes_capped": capped,
        "num_timesteps": int(getattr(agent, "num_timesteps", 0)), "seconds": round(seconds, 3),
        "video": str(video_path) if video_path else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    results_path = Path(output) if output else (RunFolder(target.run_dir).evaluation_json if target.run_dir else None)
    if results_path is not None:
        results_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(results_path, (json.dumps(result, indent=2) + "\n").encode())
        if print_output_path:
            print(f"results: {results_path}", flush=True)
    return result


__all__ = ["DEFAULT_MAX_EPISODE_STEPS", "MODEL_CHOICES", "EvaluationProgress", "Target", "atari_frame_skip",
           "default_max_episode_steps", "stall_note", "check_options", "default_video_path", "evaluate", "evaluate_run", "load_model",
           "make_eval_env", "record_video", "resolve_target", "spec_for", "summarize", "summary_line"]
