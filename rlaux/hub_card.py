"""The model card of a run pushed to the Hugging Face Hub (``README.md``): huggingface_sb3's metadata, the
tasks with their weights, the evaluation, and the aux settings the model was trained with."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from rlaux.algorithms import AuxA2C, AuxPPO, AuxRecurrentPPO
from rlaux.algorithms.settings import PHASIC_FIELDS
from rlaux.run_folder import RunRecord

#: The libraries an rlaux algorithm extends one of: top-level module -> (name, address).
LIBRARIES = {"stable_baselines3": ("Stable-Baselines3", "https://github.com/DLR-RM/stable-baselines3"),
             "sb3_contrib": ("sb3-contrib", "https://github.com/Stable-Baselines-Team/stable-baselines3-contrib")}
_CARD = """---
{{ card_data }}
---

# {{ algo_class }} with auxiliary tasks playing {{ env_id }}

This is an **{{ algo_class }}** agent ({{ base_class }} of [{{ library }}]({{ library_url }})
with auxiliary tasks) trained on **{{ env_id }}** for {{ timesteps }} env steps with
**rlaux** (UNREAL-style auxiliary tasks for Stable-Baselines3's PPO and A2C and sb3-contrib's RecurrentPPO).

## Auxiliary tasks

{% if phasic %}**Phasic Policy Gradient** (Cobbe et al. 2021): every {{ phasic.ppg_n_pi }} PPO iterations, an auxiliary phase of
{{ phasic.ppg_aux_epochs }} epochs distils the value into the policy network (KL weight beta_clone {{ phasic.ppg_beta_clone }},
architecture `{{ phasic.ppg_arch }}`).
{% endif %}{% if tasks %}The loss is `L_rl + sum_k weight_k * L_aux_k` over these tasks:

| task | weight | weighting |
|---|---|---|
{% for task in tasks %}| `{{ task.name }}` | {{ task.weight }} | {{ task.weighting }} |
{% endfor %}{% elif phasic %}No rlaux task joins the policy phase.{% else %}None: this agent is a plain {{ base_class }} baseline.
{% endif %}
## Evaluation

Mean return **{{ "%.2f" | format(mean) }} ± {{ "%.2f" | format(std) }}** over {{ episodes }} episodes
({{ "deterministic" if deterministic else "stochastic" }} actions; median {{ "%.2f" | format(median) }},
min {{ "%.2f" | format(min) }}, max {{ "%.2f" | format(max) }}): full games, raw scores (no reward
clipping, no episodic life), evaluated by `rlaux.evaluate`. Every episode is in `results.json`.
{% if video %}A replay of one episode is in `replay.mp4`.{% endif %}

## Usage

```bash
pip install "rlaux[hub]"
```

```python
from rlaux.hub import load_from_hub

model = load_from_hub("{{ repo_id }}")  # {{ algo_class }}, with its auxiliary tasks and heads
# SB3 model files are pickles: huggingface_sb3 asks you to set TRUST_REMOTE_CODE=True if you trust this repository.
```

Or download the repository and evaluate it with rlaux's command line (`config.json` rebuilds the env):

```bash
python train_agent.py evaluate --load <folder>/{{ model_file }} --episodes 10 --video
```

## Training

`config.json` holds every setting of the run (env preset, hyperparameters, tasks, seed).
Hyperparameters: `{{ hyperparams }}`; {{ n_envs }} envs, seed {{ seed }}.
Auxiliary settings (`rlaux.AuxSettings`; `AuxPPO(aux_settings=AuxSettings.from_json(...))` makes them again):
`{{ aux_settings }}`.
"""


def base_algorithm(agent: AuxPPO | AuxA2C | AuxRecurrentPPO) -> tuple[str, str, str]:
    """(class, library, address) of the algorithm ``agent`` extends: ``PPO`` of Stable-Baselines3,
    ``RecurrentPPO`` of sb3-contrib, ..."""
    for cls in type(agent).__mro__:
        library = LIBRARIES.get(cls.__module__.split(".")[0])
        if library:
            return (cls.__name__, *library)
    return (type(agent).__name__, *LIBRARIES["stable_baselines3"])


def model_card(hub: ModuleType, agent: AuxPPO | AuxA2C | AuxRecurrentPPO, config: RunRecord,
                results: dict[str, Any], repo_id: str, model_file: str, video: bool) -> Any:
    """The README.md model card (huggingface_hub's ``ModelCard``), with huggingface_sb3's metadata
    (library, tags, ``model-index`` from ``metadata_eval_result``) plus rlaux's tags. The tasks and
    their weights are the model's own (defaults filled in), the weighting specs the run's."""
    from huggingface_hub.repocard import metadata_eval_result

    algo_class = type(agent).__name__
    base_class, library, library_url = base_algorithm(agent)
    env_id = config["env_id"]
    weighting = agent.aux_settings.weighting
    tasks = [{"name": task.name, "weight": f"{task.weight:g}",
              "weighting": weighting.get(task.name, weighting.get("*", "fixed"))} for task in agent.aux_tasks]
    aux = [task["name"] for task in tasks]
    eval_result = metadata_eval_result(
        model_pretty_name=algo_class, task_pretty_name="reinforcement-learning", task_id="reinforcement-learning",
        metrics_pretty_name="mean_reward", metrics_id="mean_reward",
        metrics_value=f"{results['mean_reward']:.2f} +/- {results['std_reward']:.2f}",
        dataset_pretty_name=env_id, dataset_id=env_id)
    tags = [env_id, "deep-reinforcement-learning", "reinforcement-learning", "stable-baselines3",
            *(["sb3-contrib"] if library == "sb3-contrib" else []), "rlaux", "auxiliary-tasks", *aux]
    card_data = hub.ModelCardData(library_name="stable-baselines3", tags=tags, **eval_result)
    return hub.ModelCard.from_template(
        card_data, template_str=_CARD, algo_class=algo_class, base_class=base_class, library=library,
        library_url=library_url, env_id=env_id, tasks=tasks,
        timesteps=results["num_timesteps"], mean=results["mean_reward"], std=results["std_reward"],
        median=results["median_reward"], min=results["min_reward"], max=results["max_reward"],
        episodes=results["n_eval_episodes"], deterministic=results["is_deterministic"], video=video,
        repo_id=repo_id, model_file=model_file, hyperparams=json.dumps(config.get("hyperparams", {}), sort_keys=True),
        n_envs=config.get("n_envs"), seed=config.get("seed"),
        aux_settings=json.dumps(agent.aux_settings.to_json(), sort_keys=True),
        phasic={name: getattr(agent.aux_settings, name) for name in PHASIC_FIELDS} if agent.phasic else None)


__all__ = ["LIBRARIES", "base_algorithm", "model_card"]
