"""Sharing a run on the Hugging Face Hub (``python train_agent.py push``) and loading one back.

A package holds what huggingface_sb3's ``package_to_hub`` puts in a model repository, for an
rlaux run:

    <algo>-<env>.zip   the model (huggingface_sb3's ``ModelName``, e.g. ``aux_ppo-MinAtar-Breakout-v1.zip``)
    config.json        the run's config.json (every preset value and flag), with SB3's ``system_info``
                       as huggingface_sb3 adds it and a ``hub`` entry naming the model file
    results.json       the evaluation: huggingface_sb3's keys (``mean_reward``, ``std_reward``,
                       ``is_deterministic``, ``n_eval_episodes``, ``eval_datetime``) and every episode's return
    replay.mp4         one episode, where moviepy is installed (skipped with a note otherwise)
    README.md          the model card: rlaux, the algorithm, the auxiliary tasks and their weights, the env,
                       the evaluation (also as the Hub's ``model-index`` metadata) and how to load the model

Why not ``huggingface_sb3.package_to_hub`` itself: it always creates the repository and uploads
from a temporary folder (there is no local package to write or check), evaluates with the env it
is given (stochastic actions on Atari) instead of rlaux's evaluation env (full games, raw scores),
records the replay through ``VecVideoRecorder`` and an ``ffmpeg`` binary (MinAtar's float frames
do not record there), and its card names neither rlaux nor the tasks. So this module writes the
same files itself, with the same naming (``ModelName``), the same card metadata
(``huggingface_hub``'s ``metadata_eval_result`` and ``ModelCardData``, as ``package_to_hub`` uses
them) and the same upload calls (``HfApi.create_repo`` and ``HfApi.upload_folder``). Loading
downloads through huggingface_sb3's ``load_from_hub`` (with its ``TRUST_REMOTE_CODE`` guard: a
model file is a pickle) and ``huggingface_hub.hf_hub_download``.

Needs ``pip install "rlaux[hub]"`` (huggingface_sb3 and huggingface_hub).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import stable_baselines3 as sb3

from rlaux.algorithms import AuxA2C, AuxPPO, AuxRecurrentPPO
from rlaux.errors import ConfigError, import_optional
from rlaux.evaluate import check_options, evaluate_run, load_model, record_video, resolve_target, spec_for
from rlaux.files import atomic_write_bytes
from rlaux.hub_card import model_card
from rlaux.provenance import rlaux_version
from rlaux.run_folder import RunFolder, RunRecord

VIDEO_NOTE = 'no replay video: moviepy is not installed (pip install "rlaux[video]")'
#: The files of a package besides the model zip.
PACKAGE_FILES = ("config.json", "results.json", "README.md", "replay.mp4")


def require_hub(what: str) -> tuple[ModuleType, ModuleType]:
    """``(huggingface_sb3, huggingface_hub)``, or a ConfigError saying ``what`` needs them (``rlaux[hub]``)."""
    huggingface_sb3 = import_optional("huggingface_sb3", what)
    import huggingface_hub  # a dependency of huggingface_sb3

    return huggingface_sb3, huggingface_hub


def _first_line(err: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message``, cut at ``limit`` characters."""
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text if len(text) <= limit else text[:limit] + '...'}"


def _is_network_error(err: BaseException) -> bool:
    """A failure to reach a server (no network, DNS, timeout), as opposed to one that answered."""
    names = {k.__name__ for k in type(err).__mro__}
    return bool(names & {"ConnectionError", "Timeout", "ConnectTimeout", "ConnectError", "TimeoutException",
                         "NetworkError", "TimeoutError"}) and "HTTPError" not in names


def check_hub_access(hub: ModuleType, api: Any, repo_id: str) -> None:
    """ConfigError unless a token is at hand and the Hub answers to it (``HfApi.whoami``): checked before a
    push evaluates or records anything. Says which of the two is missing."""
    try:
        api.whoami()
    except Exception as err:  # noqa: BLE001 - sorted below into: no token, no network, token refused
        if isinstance(err, getattr(hub.errors, "LocalTokenNotFoundError", ())):
            raise ConfigError(f"push to {repo_id}: no Hugging Face token; log in with `huggingface-cli login` (or "
                              "set HF_TOKEN), or give --local-dir DIR to write the package without uploading") from None
        if _is_network_error(err):
            raise ConfigError(f"push to {repo_id}: cannot reach the Hugging Face Hub ({_first_line(err)}); check the "
                              "network (or a proxy), or give --local-dir DIR to write the package and upload it "
                              "later") from None
        raise ConfigError(f"push to {repo_id}: the Hub refused the token ({_first_line(err)}); log in again with "
                          "`huggingface-cli login` (or set HF_TOKEN)") from None


def check_repo_id(repo_id: str) -> None:
    """A ConfigError unless ``repo_id`` is a Hub repository id ``ORG/NAME``."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ConfigError(f"--repo-id {repo_id!r} is not a Hub repository id ({str(err).splitlines()[0]})") from None
    if repo_id.count("/") != 1:
        raise ConfigError(f"--repo-id {repo_id!r}: give ORG/NAME (your user name or organisation, then the model's name)")


def model_file_name(config: RunRecord) -> str:
    """The model's file name in a package: huggingface_sb3's ``ModelName`` of ``aux_<algo>`` and the env,
    e.g. ``aux_ppo-MinAtar-Breakout-v1.zip`` (rl-zoo3's naming, with rlaux's algorithm names)."""
    from huggingface_sb3 import EnvironmentName, ModelName

    try:
        return f"{ModelName('aux_' + config['algo'], EnvironmentName(config['env_id']))}.zip"
    except ValueError as err:  # e.g. an env id with two colons
        raise ConfigError(f"env id {config['env_id']!r} gives no Hub model name ({err})") from None


# ------------------------------------------------------------------ the package


def _results(evaluation: dict[str, Any]) -> dict[str, Any]:
    """huggingface_sb3's results.json keys, then rlaux's numbers (no local paths)."""
    return {
        "mean_reward": evaluation["mean"], "std_reward": evaluation["std"],
        "is_deterministic": evaluation["deterministic"], "n_eval_episodes": evaluation["episodes"],
        "eval_datetime": datetime.datetime.now().isoformat(),
        "median_reward": evaluation["median"], "min_reward": evaluation["min"], "max_reward": evaluation["max"],
        "returns": evaluation["returns"], "lengths": evaluation["lengths"], "lengths_unit": evaluation["lengths_unit"],
        "env_id": evaluation["env_id"], "algo": evaluation["algo"], "num_timesteps": evaluation["num_timesteps"],
        "seed": evaluation["seed"], "evaluation": "rlaux.evaluate: full games, raw scores (no reward clipping, "
                                                  "no episodic life)",
    }


def _moviepy_installed() -> bool:
    try:
        import moviepy  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a broken install
        return False
    return True


def _prepare_folder(out: Path) -> None:
    """``out`` may be new, empty, or an earlier package (whose files are replaced); nothing else."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--local-dir {out}: is a file, not a folder")
    names = {p.name for p in out.iterdir()}
    ours = {n for n in names if n in PACKAGE_FILES or n.endswith(".zip")}
    if names and not ("results.json" in names and "README.md" in names and names == ours):
        raise ConfigError(f"--local-dir {out}: holds other files ({', '.join(sorted(names - ours)[:3]) or 'no package'}); "
                          "give a new or empty folder, or an earlier package to replace")
    for name in ours:
        (out / name).unlink()


def package_run(
    load: str | os.PathLike,
    local_dir: str | os.PathLike,
    *,
    repo_id: str,
    model: str | None = None,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 0,
    device: str = "auto",
    video: bool = True,
    announce: bool = True,
) -> Path:
    """Write the Hub package of the run ``load`` (a run folder, or a model file in one) to ``local_dir``.

    ``model``: which model of the run folder (``evaluate --model``); ``video``: also record ``replay.mp4``
    where moviepy is installed; ``announce``: print where the package is (not for a temporary folder).
    Returns ``local_dir``.
    """
    hub = require_hub("push")[1]
    check_repo_id(repo_id)
    check_options(episodes, 1, seed, device, None, None)
    target = resolve_target(load, model)
    if target.config is None or target.run_dir is None:
        raise ConfigError(f"--load {load}: push needs a run folder (its config.json says which env and tasks the "
                          "model has), not a model file outside one")
    config = target.config
    agent = load_model(target.model_path, algo=config.get("algo"), device=device)
    out = Path(local_dir)
    _prepare_folder(out)
    out.mkdir(parents=True, exist_ok=True)

    model_file = model_file_name(config)
    shutil.copyfile(target.model_path, out / model_file)
    # rlaux's evaluation (full games, raw scores); its results file is rewritten in huggingface_sb3's layout
    evaluation = evaluate_run(target.model_path, episodes=episodes, deterministic=deterministic, seed=seed,
                              device=device, output=out / "results.json", print_output_path=announce)
    results = _results(evaluation)
    atomic_write_bytes(out / "results.json", (json.dumps(results, indent=2) + "\n").encode())

    local = ("log_dir", "run_dir", "tensorboard_log", "trained_agent")  # this machine's folders: not published
    hub_info = {"repo_id": repo_id, "model_file": model_file, "model_choice": target.which,
                "rlaux_version": rlaux_version()}
    config = RunRecord({k: v for k, v in config.request.items() if k not in local},
                       {**{k: v for k, v in config.resolved.items() if k not in local},
                        "system_info": sb3.get_system_info(print_info=False)[0], "hub": hub_info}, config.code)
    RunFolder(out).write(config)

    has_video = False
    if video and not _moviepy_installed():
        print(VIDEO_NOTE, flush=True)
    elif video:
        agent.set_random_seed(seed)
        try:
            record_video(agent, spec_for(target), out / "replay.mp4", seed, deterministic)
            has_video = True
        except ConfigError as err:
            print(f"no replay video: {err}", flush=True)

    card = model_card(hub, agent, config, results, repo_id, model_file, has_video)
    card.save(out / "README.md")
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"package for {repo_id}: {out} ({files})" if announce else f"package for {repo_id}: {files}", flush=True)
    return out


def push_run(
    load: str | os.PathLike,
    repo_id: str,
    *,
    local_dir: str | os.PathLike | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    **package: Any,
) -> str:
    """Package the run ``load`` (see :func:`package_run`) and upload it to the Hub repository ``repo_id``.

    With ``local_dir``, write the package there and upload nothing (returns the folder). Otherwise
    package in a temporary folder and upload it as ``package_to_hub`` does (``HfApi.create_repo``,
    then ``HfApi.upload_folder``; the token from ``token``, ``HF_TOKEN`` or ``huggingface-cli login``);
    returns the repository's URL. ``package``: the options of :func:`package_run`.
    """
    _, hub = require_hub("push")
    if local_dir is not None:
        return str(package_run(load, local_dir, repo_id=repo_id, **package))
    if hub.constants.HF_HUB_OFFLINE:
        raise ConfigError("HF_HUB_OFFLINE is set, so nothing can be uploaded: give --local-dir DIR to write the "
                          "package there")
    check_repo_id(repo_id)
    check_options(package.get("episodes", 10), 1, package.get("seed", 0), package.get("device", "auto"), None, None)
    resolve_target(load, package.get("model"))  # a bad --load is named before the network is asked
    api = hub.HfApi(token=token)
    check_hub_access(hub, api, repo_id)  # before the evaluation and the video, which take minutes
    with tempfile.TemporaryDirectory(prefix="rlaux-hub-") as tmp:
        folder = package_run(load, Path(tmp) / "package", repo_id=repo_id, announce=False, **package)
        try:
            repo_url = api.create_repo(repo_id=repo_id, exist_ok=True)
            api.upload_folder(repo_id=repo_url.repo_id, folder_path=folder,
                              commit_message=commit_message or f"Upload {folder.name} with rlaux")
        except Exception as err:  # noqa: BLE001 - network, authentication, permission: one line
            raise ConfigError(f"upload to {repo_id} failed ({_first_line(err)}); nothing was uploaded: give "
                              "--local-dir DIR to keep the package and upload it later") from None
    print(f"uploaded to {repo_url}", flush=True)
    return str(repo_url)


# ------------------------------------------------------------------ loading


def load_from_hub(
    repo_id: str,
    filename: str | None = None,
    *,
    local_dir: str | os.PathLike | None = None,
    device: str = "auto",
) -> AuxPPO | AuxA2C | AuxRecurrentPPO:
    """The AuxPPO/AuxA2C of the Hub repository ``repo_id``, with its auxiliary tasks and heads.

    ``filename``: the model file (default: the one the package's config.json names). Downloads
    config.json with ``huggingface_hub.hf_hub_download`` and the model with huggingface_sb3's
    ``load_from_hub`` (which refuses unless ``TRUST_REMOTE_CODE=True``: a model file is a pickle).
    ``local_dir``: read the package from that folder instead (one written by ``push --local-dir``,
    or a downloaded repository); nothing is downloaded.
    """
    if local_dir is not None:
        folder = Path(local_dir)
        if not RunFolder(folder).is_run():
            raise ConfigError(f"{folder}: not a package of an rlaux run (no config.json)")
        config_path = RunFolder(folder).config_file
    else:
        sb3_hub, hub = require_hub("load_from_hub")
        try:
            config_path = Path(hub.hf_hub_download(repo_id=repo_id, filename="config.json", library_name="rlaux"))
        except Exception as err:  # noqa: BLE001 - network, missing repository or file
            raise ConfigError(f"{repo_id}: cannot download config.json ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None
    try:
        config = RunRecord.from_json(json.loads(config_path.read_text()))
        algo = config["algo"]
        name = filename or config.get("hub", {}).get("model_file") or model_file_name(config)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{repo_id}: config.json is not one of an rlaux run ({type(err).__name__}: {err})") from None
    if local_dir is not None:
        model_path = Path(local_dir) / name
        if not model_path.is_file():
            raise ConfigError(f"{local_dir}: no model file {name}")
    else:
        # The guard of newer huggingface_sb3 releases, checked here too: the PyPI release
        # huggingface-sb3 3.0 downloads without it.
        if os.environ.get("TRUST_REMOTE_CODE", "False").strip().lower() not in ("1", "true", "t", "yes", "y", "on"):
            raise ConfigError(f"{repo_id}: loading a model from the Hub unpickles it; set TRUST_REMOTE_CODE=True "
                              "if you trust this repository (huggingface_sb3's guard)")
        try:
            model_path = Path(sb3_hub.load_from_hub(repo_id, name))
        except ValueError as err:
            if "TRUST_REMOTE_CODE" in str(err):
                raise ConfigError(f"{repo_id}: loading a model from the Hub unpickles it; set TRUST_REMOTE_CODE=True "
                                  "if you trust this repository (huggingface_sb3's guard)") from None
            raise ConfigError(f"{repo_id}: cannot download {name} ({err})") from None
        except Exception as err:  # noqa: BLE001 - network, missing file
            raise ConfigError(f"{repo_id}: cannot download {name} ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None
    return load_model(model_path, algo=algo, device=device)


__all__ = ["check_hub_access", "check_repo_id", "load_from_hub", "model_file_name", "package_run", "push_run", "require_hub"]
