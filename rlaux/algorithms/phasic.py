"""Phasic Policy Gradient (Cobbe, Hilton, Klimov and Schulman, ICML 2021) on SB3's PPO: ``AuxPPG``.

A cycle is N_pi policy-phase iterations, each SB3's PPO ``train()`` on one rollout (E_pi = ``n_epochs``; the
value network trained with it, or for E_V epochs of its own), then one auxiliary phase over the N_pi stored
rollouts: E_aux epochs of

    L_joint = 0.5 (V_aux(s) - V_targ)^2 + beta_clone KL(pi_old(.|s) || pi(.|s))       (policy network)
            + w_distill 0.5 (V(s) - V_targ)^2                                         (value network)

with ``V_targ`` the GAE(lambda) returns computed when the rollout was collected and ``pi_old`` the policy
just before the phase, on minibatches of whole env rollouts, with an Adam optimizer of its own. What rlaux
takes from where is in docs/ppg.md. rlaux's own auxiliary tasks join the policy phase as they join PPO.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.policies import BasePolicy
from torch.nn import functional as F

from rlaux.algorithms.feedforward import AuxPPO
from rlaux.algorithms.settings import AuxSettings
from rlaux.errors import ConfigError
from rlaux.policy.phasic import (
    PhasicActorCriticCnnPolicy,
    PhasicActorCriticPolicy,
    PhasicMultiInputActorCriticPolicy,
    distribution_parameters,
    kl_from_parameters,
    parameter_width,
)

#: The share of the memory available when the model is made that PPG's stored rollouts may take.
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def bytes_per_stored_step(observation_space: spaces.Space, action_space: spaces.Space) -> int:
    """Bytes PPG keeps per env step for its auxiliary phase: the observation in its space's dtype (uint8 images
    stay uint8), the float32 value target and the float32 parameters of the pre-phase policy."""
    observation = int(np.prod(observation_space.shape)) * np.dtype(observation_space.dtype).itemsize
    return observation + 4 + 4 * parameter_width(action_space)


def check_phasic_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """Raise ConfigError where PPG's store or its KL cannot work with these spaces."""
    if not isinstance(observation_space, spaces.Box):
        raise ConfigError(f"--algo ppg stores Box observations for its auxiliary phase, not "
                          f"{type(observation_space).__name__}")
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        raise ConfigError(f"--algo ppg keeps its pre-phase policy for Discrete or Box actions, not "
                          f"{type(action_space).__name__}")


def check_phasic_memory(n_pi: int, n_steps: int, n_envs: int, observation_space: spaces.Space,
                        action_space: spaces.Space, available: int | None = None) -> int:
    """The bytes of one auxiliary phase's store; ConfigError, naming ``ppg_n_pi`` and the limit, where it is more
    than :data:`MEMORY_SHARE` of the memory available (``available``, else read now)."""
    per_step = bytes_per_stored_step(observation_space, action_space)
    total = n_pi * n_steps * n_envs * per_step
    available = available_memory() if available is None else available
    if available is not None and total > MEMORY_SHARE * available:
        most = int(MEMORY_SHARE * available // (n_steps * n_envs * per_step))
        raise ConfigError(
            f"ppg_n_pi={n_pi} would keep {n_pi} x {n_steps} steps x {n_envs} envs x {per_step} bytes = "
            f"{total / 2**30:.2f} GiB for the auxiliary phase, more than {MEMORY_SHARE:.0%} of the "
            f"{available / 2**30:.2f} GiB available; use ppg_n_pi <= {most}, or fewer n_steps or envs")
    return total


class RolloutStore:
    """The N_pi rollouts of one PPG cycle, in CPU memory: observations [N_pi, n_steps, n_envs, *obs_shape] in the
    space's own dtype and value targets [N_pi, n_steps, n_envs] float32."""

    def __init__(self, capacity: int, n_steps: int, n_envs: int, observation_space: spaces.Box) -> None:
        self.capacity = capacity
        self.obs = np.empty((capacity, n_steps, n_envs, *observation_space.shape), dtype=observation_space.dtype)
        self.returns = np.empty((capacity, n_steps, n_envs), dtype=np.float32)
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def add(self, observations: np.ndarray, returns: np.ndarray) -> None:
        """One rollout: SB3 rollout buffer's ``observations`` [n_steps, n_envs, ...] and ``returns`` [n_steps, n_envs]."""
        self.obs[self.size] = observations
        self.returns[self.size] = returns
        self.size += 1

    def clear(self) -> None:
        self.size = 0

    def state(self) -> dict[str, th.Tensor]:
        """The stored rollouts as CPU tensors (a checkpoint's ``rollout.pt``)."""
        return {"ppg_obs": th.from_numpy(self.obs[:self.size]), "ppg_returns": th.from_numpy(self.returns[:self.size])}

    def load_state(self, state: Mapping[str, th.Tensor]) -> None:
        obs, returns = state["ppg_obs"].numpy(), state["ppg_returns"].numpy()
        if obs.shape[1:] != self.obs.shape[1:] or returns.shape[1:] != self.returns.shape[1:] \
                or len(obs) > self.capacity or len(obs) != len(returns):
            raise ValueError(f"stored rollouts of shape {obs.shape} do not fit a store of {self.obs.shape}")
        self.size = len(obs)
        self.obs[:self.size] = obs
        self.returns[:self.size] = returns


class AuxPPG(AuxPPO):
    """Phasic Policy Gradient on SB3's PPO, with rlaux's auxiliary tasks in its policy phase:
    ``AuxPPG("CnnPolicy", env, n_epochs=1, ppg_n_pi=32)``.

    Its settings are ``AuxSettings``' ``ppg_*`` fields, given as keyword arguments or in ``aux_settings``;
    ``n_epochs`` is E_pi. Everything else is SB3's PPO, with one change the authors' code makes: advantages are
    normalised over the whole rollout, not per minibatch (where ``normalize_advantage`` is on).
    """

    algo_name = "ppg"
    weights_like = "ppo"
    phasic = True
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": PhasicActorCriticPolicy,
        "CnnPolicy": PhasicActorCriticCnnPolicy,
        "MultiInputPolicy": PhasicMultiInputActorCriticPolicy,
    }

    def __init__(self, policy: str | type[PhasicActorCriticPolicy], env: Any, *args: Any,
                 ppg_n_pi: int | None = None, ppg_aux_epochs: int | None = None, ppg_value_epochs: int | None = None,
                 ppg_beta_clone: float | None = None, ppg_value_distill_weight: float | None = None,
                 ppg_aux_minibatch_rollouts: int | None = None, ppg_aux_learning_rate: float | None = None,
                 ppg_arch: str | None = None, **kwargs: Any) -> None:
        given = {name: value for name, value in (
            ("ppg_n_pi", ppg_n_pi), ("ppg_aux_epochs", ppg_aux_epochs), ("ppg_value_epochs", ppg_value_epochs),
            ("ppg_beta_clone", ppg_beta_clone), ("ppg_value_distill_weight", ppg_value_distill_weight),
            ("ppg_aux_minibatch_rollouts", ppg_aux_minibatch_rollouts),
            ("ppg_aux_learning_rate", ppg_aux_learning_rate), ("ppg_arch", ppg_arch)) if value is not None}
        self.ppg_store: RolloutStore | None = None
        self.ppg_aux_optimizer: th.optim.Optimizer | None = None
        self.ppg_value_optimizer: th.optim.Optimizer | None = None
        #: Auxiliary phases run so far, over all ``learn()`` calls; saved with the model.
        self.ppg_aux_phases = 0
        super().__init__(policy, env, *args, **given, **kwargs)

    @classmethod
    def check_run(cls, settings: AuxSettings, hyperparams: Mapping[str, Any], n_envs: int,
                  observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """PPG's spaces, and its store against the memory available, before the run's env is built."""
        check_phasic_spaces(observation_space, action_space)
        n_steps = hyperparams.get("n_steps", inspect.signature(PPO.__init__).parameters["n_steps"].default)
        check_phasic_memory(settings.ppg_n_pi, n_steps, n_envs, observation_space, action_space)

    def _setup_model(self) -> None:
        self._adopt_loaded_settings()
        settings = self.aux_settings
        arch = settings.ppg_arch
        share = self.policy_kwargs.get("share_features_extractor")
        if share is not None and share != (arch != "dual"):
            raise ConfigError(f"policy_kwargs share_features_extractor={share} contradicts ppg_arch='{arch}' "
                              f"({'separate' if arch == 'dual' else 'one shared'} encoder); leave it out")
        check_phasic_spaces(self.observation_space, self.action_space)
        check_phasic_memory(settings.ppg_n_pi, self.n_steps, self.n_envs, self.observation_space, self.action_space)
        kept = self.policy_kwargs
        self.policy_kwargs = {**kept, "share_features_extractor": arch != "dual", "detach_critic": arch == "detach"}
        try:
            super()._setup_model()
        finally:
            self.policy_kwargs = kept
        self.ppg_store = RolloutStore(settings.ppg_n_pi, self.n_steps, self.n_envs, self.observation_space)
        rate = self.lr_schedule(1)
        self.ppg_aux_optimizer = th.optim.Adam(self.policy.parameters(), lr=settings.ppg_aux_learning_rate or rate)
        if settings.ppg_value_epochs is not None:  # the authors' second optimizer, for value epochs apart
            self.ppg_value_optimizer = th.optim.Adam(self.policy.parameters(), lr=rate)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        extra = ["ppg_aux_optimizer"] + (["ppg_value_optimizer"] if self.ppg_value_optimizer is not None else [])
        return [*state_dicts, *extra], variables

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "ppg_store", "ppg_aux_optimizer", "ppg_value_optimizer"]

    def rollout_state(self) -> dict[str, th.Tensor]:
        """The rollouts stored since the last auxiliary phase (the position in the cycle): a checkpoint keeps them,
        so a resumed run's next auxiliary phase sees what an uninterrupted one would. ``save()`` leaves them out."""
        return self.ppg_store.state()

    def load_rollout_state(self, state: dict[str, th.Tensor]) -> None:
        self.ppg_store.load_state(state)

    # ------------------------------------------------------------------ policy phase

    def train(self) -> None:
        started = time.perf_counter()
        buffer = self.rollout_buffer
        # Stored before SB3's minibatching flattens the buffer: observations in their own dtype, the value targets.
        self.ppg_store.add(buffer.observations, buffer.returns)
        normalize, vf_coef = self.normalize_advantage, self.vf_coef
        if normalize:  # over the whole rollout, as the authors' compute_advantage (SB3: per minibatch)
            buffer.advantages = ((buffer.advantages - buffer.advantages.mean())
                                 / (buffer.advantages.std() + 1e-8)).astype(np.float32)
        if self.ppg_value_optimizer is not None:
            self._value_epochs(self.aux_settings.ppg_value_epochs)
            self.vf_coef = 0.0  # the policy epochs train the policy alone
        self.normalize_advantage = False
        try:
            super().train()
        finally:
            self.normalize_advantage, self.vf_coef = normalize, vf_coef
        self.logger.record("ppg/policy_phase_s", time.perf_counter() - started)
        self.logger.record("ppg/stored_rollouts", self.ppg_store.size)
        if self.ppg_store.full:
            if self.aux_settings.ppg_aux_epochs > 0:
                self._auxiliary_phase()
            self.ppg_store.clear()

    def _value_epochs(self, epochs: int) -> None:
        """E_V epochs of the value loss alone on the rollout, with their own optimizer (the authors' code, where
        E_V differs from E_pi)."""
        optimizer = self.ppg_value_optimizer
        self._update_learning_rate(optimizer)
        self.policy.set_training_mode(True)
        for _ in range(epochs):
            for data in self.rollout_buffer.get(self.batch_size):
                values = self.policy.predict_values(data.observations).flatten()
                loss = self.vf_coef * F.mse_loss(data.returns, values)
                optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                optimizer.step()

    # ------------------------------------------------------------------ auxiliary phase

    def _auxiliary_phase(self) -> None:
        """E_aux epochs of the joint loss over the stored rollouts, minibatches of whole env rollouts."""
        started = time.perf_counter()
        settings, store, policy = self.aux_settings, self.ppg_store, self.policy
        n_rollouts, n_steps, n_envs = store.size, store.obs.shape[1], store.obs.shape[2]
        policy.set_training_mode(False)
        with th.no_grad():  # the policy before the phase, which the KL holds the policy to
            old = th.stack([distribution_parameters(policy.phasic_forward(self._tensor(store.obs[r].reshape(
                n_steps * n_envs, *store.obs.shape[3:])))[0]).cpu().view(n_steps, n_envs, -1)
                for r in range(n_rollouts)])
        policy.set_training_mode(True)
        optimizer = self.ppg_aux_optimizer
        rate = settings.ppg_aux_learning_rate or self.lr_schedule(self._current_progress_remaining)
        for group in optimizer.param_groups:
            group["lr"] = rate
        pairs = np.array([(r, e) for r in range(n_rollouts) for e in range(n_envs)])
        sums = {"aux_value_loss": 0.0, "value_distill_loss": 0.0, "kl": 0.0}
        steps = skipped = 0
        for _ in range(settings.ppg_aux_epochs):
            order = np.random.permutation(len(pairs))
            for start in range(0, len(order), settings.ppg_aux_minibatch_rollouts):
                rollouts, envs = pairs[order[start:start + settings.ppg_aux_minibatch_rollouts]].T
                obs = self._tensor(store.obs[rollouts, :, envs]).flatten(0, 1)  # [m, T, ...] -> [m T, ...]
                targets = self._tensor(store.returns[rollouts, :, envs]).flatten()
                old_parameters = old[rollouts, :, envs].flatten(0, 1).to(self.device)
                distribution, aux_values, values = policy.phasic_forward(obs)
                losses = {"aux_value_loss": 0.5 * F.mse_loss(aux_values, targets),
                          "value_distill_loss": 0.5 * F.mse_loss(values, targets),
                          "kl": kl_from_parameters(old_parameters, distribution).mean()}
                loss = (losses["aux_value_loss"] + settings.ppg_beta_clone * losses["kl"]
                        + settings.ppg_value_distill_weight * losses["value_distill_loss"])
                if not th.isfinite(loss):
                    skipped += 1
                    continue
                optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(policy.parameters(), self.max_grad_norm)
                optimizer.step()
                steps += 1
                for name, value in losses.items():
                    sums[name] += value.item()
        self.ppg_aux_phases += 1
        for name, total in sums.items():
            self.logger.record(f"ppg/{name}", total / max(steps, 1))
        self.logger.record("ppg/aux_phase_s", time.perf_counter() - started)
        self.logger.record("ppg/aux_phases", self.ppg_aux_phases)
        self.logger.record("ppg/aux_learning_rate", rate)
        self.logger.record("ppg/aux_skipped_steps", skipped)

    def _tensor(self, array: np.ndarray) -> th.Tensor:
        return th.as_tensor(np.ascontiguousarray(array), device=self.device)


__all__ = ["MEMORY_SHARE", "AuxPPG", "RolloutStore", "available_memory", "bytes_per_stored_step",
           "check_phasic_memory", "check_phasic_spaces"]
