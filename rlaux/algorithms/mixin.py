"""What AuxPPO, AuxA2C and AuxRecurrentPPO add to their SB3 base class: the lifecycle of the tasks."""

from __future__ import annotations

import inspect
import math
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, ConvertCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor

from rlaux.algorithms.callbacks import ReplayFeeder, frame_stack_of
from rlaux.algorithms.settings import ARGUMENTS, AUX_MIN_SEQUENCES, PHASIC_FIELDS, AuxSettings, check_tasks
from rlaux.errors import ConfigError
from rlaux.minibatch import current_minibatch, rollout_buffer_class_for
from rlaux.networks import SharedMLP, sb3_policy_kwargs
from rlaux.objective import AuxiliaryObjective, UpdateGuard, can_reuse_gradient
from rlaux.policy import (
    AuxActorCriticCnnPolicy,
    AuxActorCriticPolicy,
    AuxMultiInputActorCriticPolicy,
)
from rlaux.replay import AuxReplayBuffer
from rlaux.tasks import AuxTask, SharedEncoderDefault, warn_if_encoder_is_parameter_free
from rlaux.tasks.base import sequences_per_update

PHASIC_ARGUMENTS = tuple(ARGUMENTS[name] for name in PHASIC_FIELDS)


def _stacklevel_outside_algorithms() -> int:
    """The ``stacklevel`` that points a warning, given by its caller, at the first frame outside
    ``rlaux/algorithms`` (the user's ``AuxPPO(...)``, however many of our ``__init__`` lie between)."""
    here, frame, level = os.path.dirname(__file__), sys._getframe(1), 1
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        frame, level = frame.f_back, level + 1
    return level


def _setting(name: str) -> property:
    """A read-only attribute of the algorithm that is the field ``name`` of its ``aux_settings``."""
    return property(lambda self: getattr(self.aux_settings, name),
                    doc=f"``aux_settings.{name}`` (read-only; make new settings to change it).")


class AuxAlgorithmMixin:
    """What AuxPPO, AuxA2C and AuxRecurrentPPO add to their SB3 (sb3-contrib) base class.

    The auxiliary settings are one :class:`~rlaux.algorithms.settings.AuxSettings` (``aux_settings``), or its
    fields as keyword arguments (each documented there):

    :param aux_tasks: task names, a comma-separated string, or task objects.
    :param aux_weights: task name -> weight lambda_k, overriding the defaults.
    :param aux_task_kwargs: task name -> constructor arguments.
    :param aux_weighting: task name (or "*" for all) -> weighting spec (``rlaux.weighting``), e.g.
        ``{"*": "cosine"}`` or ``{"pixel_control": "linear:1:0:0.5"}``.
    :param aux_replay_capacity: steps kept per env in the auxiliary replay (UNREAL: 2,000).
    :param max_skipped_updates: stop (``rlaux.objective.NonFiniteUpdates``) after this many optimizer
        steps in a row with a non-finite loss or gradient, each skipped (0: never stop).
    :param aux_clip: how the RL and auxiliary gradients are joined and clipped (``rlaux.objective``):
        ``rl_plus_aux`` (default: SB3's clipped RL gradient plus the weighted auxiliary gradient),
        ``sum``, ``heads_apart`` or ``each``.
    :param aux_max_grad_norm: the safety clip of the auxiliary gradient under ``rl_plus_aux``.
    :param aux_env_steps_per_sequence: the data rate of the replaying tasks (reward prediction, value
        replay, pixel and feature control) left at ``batch_size=None``: one sequence per task per this many
        collected env steps, spread evenly over the optimizer steps (UNREAL: 20; see
        ``rlaux.tasks.base.sequences_per_update`` and :meth:`env_steps_per_optimizer_step`).
    :param aux_every: compute the auxiliary gradient on one optimizer step in k of an update, from k times
        the sequences, and add that same gradient on the k - 1 steps that follow (the sequences per env step
        and each step's expected auxiliary gradient are unchanged; the reused gradient is up to k - 1 steps
        old). ``"auto"``: the smallest k that gives each replaying task at least ``AUX_MIN_SEQUENCES``
        sequences, at most the minibatches of one epoch. Only where every task samples the replay and
        no weighting reads the step's RL gradient (``rlaux.objective.can_reuse_gradient``); else 1.
    :param aux_settings: all of the above as one object; then none of them may be given apart.
    """

    algo_name: ClassVar[str]
    #: The algorithm whose default task weights it takes (``AuxTask.default_weights``).
    weights_like: ClassVar[str]
    #: Whether its policy has an LSTM.
    recurrent: ClassVar[bool] = False
    #: Whether it takes Phasic Policy Gradient's settings (``ppg_*``; ``AuxPPG``).
    phasic: ClassVar[bool] = False
    #: The policy of an env preset's policy name (``CnnPolicy``, ...), where it differs.
    env_policies: ClassVar[dict[str, str]] = {}
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": AuxActorCriticPolicy,
        "CnnPolicy": AuxActorCriticCnnPolicy,
        "MultiInputPolicy": AuxMultiInputActorCriticPolicy,
    }

    def __init__(
        self,
        policy: str | type[AuxActorCriticPolicy],
        env: Any,
        *args: Any,
        aux_tasks: str | Iterable[str | AuxTask] | None = None,
        aux_weights: Mapping[str, float] | None = None,
        aux_task_kwargs: Mapping[str, Mapping] | None = None,
        aux_weighting: Mapping[str, str] | None = None,
        aux_replay_capacity: int | None = None,
        max_skipped_updates: int | None = None,
        aux_clip: str | None = None,
        aux_max_grad_norm: float | None = None,
        aux_env_steps_per_sequence: int | None = None,
        aux_every: int | str | None = None,
        aux_settings: AuxSettings | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        given = {name: value for name, value in (
            ("aux_tasks", aux_tasks), ("aux_weights", aux_weights), ("aux_task_kwargs", aux_task_kwargs),
            ("aux_weighting", aux_weighting), ("aux_replay_capacity", aux_replay_capacity),
            ("max_skipped_updates", max_skipped_updates), ("aux_clip", aux_clip),
            ("aux_max_grad_norm", aux_max_grad_norm), ("aux_env_steps_per_sequence", aux_env_steps_per_sequence),
            ("aux_every", aux_every),
            ("aux_lstm_state_dtype", kwargs.pop("aux_lstm_state_dtype", None) if type(self).recurrent else None),
            *((argument, kwargs.pop(argument, None)) for argument in PHASIC_ARGUMENTS),
        ) if value is not None}
        if aux_settings is not None and given:
            raise ConfigError(f"give the aux settings either as aux_settings or as arguments, not both "
                              f"(got aux_settings and {', '.join(given)})")
        if aux_settings is not None and not isinstance(aux_settings, AuxSettings):
            raise ConfigError(f"aux_settings must be an rlaux.AuxSettings, got {type(aux_settings).__name__}")
        #: Every auxiliary setting, validated once (``AuxSettings``); ``aux_clip`` and the others read it.
        self.aux_settings: AuxSettings = aux_settings or AuxSettings.from_arguments(**given)
        phasic = self.aux_settings.phasic_given()
        if phasic and not type(self).phasic:
            raise ConfigError(f"{', '.join(phasic)} {'is a setting' if len(phasic) == 1 else 'are settings'} of "
                              f"Phasic Policy Gradient (AuxPPG, --algo ppg), not of {type(self).__name__}")
        #: The task objects, built once from the settings; the algorithm hands them to the policy.
        self.aux_tasks: list[AuxTask] = self.aux_settings.take_tasks(self.weights_like)
        self.aux_replay: AuxReplayBuffer | None = None
        self.aux_objective: AuxiliaryObjective | None = None
        self.update_guard: UpdateGuard | None = None
        #: Finished rollout + train iterations, over all ``learn()`` calls; saved with the model.
        self.iterations = 0
        #: The env's state (``rlaux.run.env_state``) while a checkpoint is written or right after one
        #: is loaded, else None. Left out of ``save()`` unless named in its ``include``.
        self.env_state: dict[str, Any] | None = None
        self._iteration_offset = 0
        self._stop_requested = False
        #: The algorithm's name, saved with the model so that a model file says what it holds.
        self.algo_name = type(self).algo_name
        setup = kwargs.pop("_init_setup_model", True)
        # TOML-friendly names work from Python too: features_extractor = "shared_mlp", activation_fn = "tanh".
        super().__init__(policy, env, *args, policy_kwargs=sb3_policy_kwargs(policy_kwargs or {}),
                         _init_setup_model=False, **kwargs)
        if setup:  # not when SB3's load() builds the model: its saved policy_kwargs say which encoder it has
            self._default_to_a_shared_encoder()
            self._setup_model()

    aux_replay_capacity = _setting("replay_capacity")
    max_skipped_updates = _setting("max_skipped_updates")
    aux_clip = _setting("clip")
    aux_max_grad_norm = _setting("max_grad_norm")
    aux_env_steps_per_sequence = _setting("env_steps_per_sequence")
    aux_every = _setting("every")
    aux_lstm_state_dtype = _setting("lstm_state_dtype")

    @classmethod
    def check_run(cls, settings: AuxSettings, hyperparams: Mapping[str, Any], n_envs: int,
                  observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """Raise ConfigError where this algorithm cannot run with these settings, hyperparameters and spaces,
        before its env is built (``rlaux.run.config.resolve``); the tasks' own checks are ``check_tasks``."""

    def _default_to_a_shared_encoder(self) -> None:
        """On vector observations, give tasks that train only the encoder and their heads a shared
        encoder with parameters (:class:`rlaux.networks.SharedMLP`), in place of ``MlpPolicy``'s
        parameter-free ``FlattenExtractor``, unless ``policy_kwargs`` names an extractor; say so once.
        Not for recurrent policies, whose LSTM those tasks train, nor for tasks of weight 0."""
        kwargs = self.policy_kwargs
        encoder_only = [t.name for t in self.aux_tasks if not t.trains_actor_critic and t.weight != 0]
        default = next((p.default for k in self.policy_class.__mro__ if "__init__" in vars(k)
                        for p in [inspect.signature(k.__init__).parameters.get("features_extractor_class")]
                        if p is not None), None)
        vector = (isinstance(self.observation_space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete,
                                                      spaces.MultiBinary))
                  and not is_image_space(self.observation_space, check_channels=False))
        if (not encoder_only or self.recurrent or "features_extractor_class" in kwargs or not vector
                or default is not FlattenExtractor):
            return
        try:
            check_tasks(self.aux_tasks, self.observation_space, self.action_space, self.recurrent)
        except ConfigError:
            return  # refused in _setup_model, with its reason; no note before the error
        kwargs["features_extractor_class"] = SharedMLP
        warnings.warn(
            f"aux task(s) {', '.join(encoder_only)} on vector observations: the policy gets a shared encoder, "
            "rlaux.networks.SharedMLP (two Tanh layers of 64; policy_kwargs features_extractor = \"shared_mlp\"), "
            "since MlpPolicy's FlattenExtractor has no parameters for them to shape; name another "
            "features_extractor_class in policy_kwargs to choose",
            SharedEncoderDefault, stacklevel=_stacklevel_outside_algorithms(),
        )

    def _adopt_loaded_settings(self) -> None:
        """After SB3's ``load()``: settings given to ``load(**kwargs)`` (e.g. ``max_skipped_updates``), and those
        of a model saved before ``aux_settings`` existed (attributes, tasks in ``policy_kwargs``), land as plain
        attributes; fold them into ``aux_settings`` and ``aux_tasks``."""
        loose = {argument: self.__dict__.pop(argument) for argument in ARGUMENTS.values()
                 if argument in self.__dict__ and argument not in ("aux_tasks",)}
        if "aux_tasks" in self.policy_kwargs:  # a model saved before the algorithm held its tasks
            saved = list(self.policy_kwargs["aux_tasks"])
            self.policy_kwargs = {k: v for k, v in self.policy_kwargs.items() if k != "aux_tasks"}
            if saved and not self.aux_tasks:
                self.aux_tasks = saved
                self.aux_settings = self.aux_settings.replace(tasks=tuple(t.name for t in saved))
        if loose:
            fields_of = {argument: name for name, argument in ARGUMENTS.items()}
            self.aux_settings = self.aux_settings.replace(**{fields_of[k]: v for k, v in loose.items()})

    def _setup_model(self) -> None:
        self._adopt_loaded_settings()
        tasks = self.aux_tasks
        # Tasks that train on SB3's minibatch need a rollout buffer that records it (rlaux.minibatch).
        self.rollout_buffer_class = rollout_buffer_class_for(tasks, self.rollout_buffer_class, self.observation_space,
                                                             self._minibatch_readers())
        # The spaces are checked once, before the policy builds the heads.
        check_tasks(tasks, self.observation_space, self.action_space, self.recurrent)
        # The policy gets the tasks for this one construction (it builds their heads); the algorithm keeps them.
        policy_kwargs, self.policy_kwargs = self.policy_kwargs, {**self.policy_kwargs, "aux_tasks": tasks}
        try:
            super()._setup_model()
        finally:
            self.policy_kwargs = policy_kwargs
        for task in tasks:
            task.check_policy(self.policy)
        warn_if_encoder_is_parameter_free(tasks, self.policy, stacklevel=_stacklevel_outside_algorithms())
        settings = self.aux_settings
        if not tasks:
            # Only reads the gradient norm: finite updates stay exactly SB3's.
            self.update_guard = UpdateGuard(self.policy.optimizer, settings.max_skipped_updates)
            return
        every = self._gradient_reuse_steps()
        for task in tasks:
            task.configure(
                gamma=self.gamma, recurrent=self.recurrent, env_steps_per_sequence=settings.env_steps_per_sequence,
                env_steps_per_update=self.env_steps_per_optimizer_step() * every, steps_per_batch=every,
            )
        self.aux_objective = AuxiliaryObjective(
            tasks, self.policy, lambda: self.aux_replay, settings.max_skipped_updates,
            minibatch=lambda: current_minibatch(self.rollout_buffer),
            aux_clip=settings.clip, aux_max_grad_norm=settings.max_grad_norm,
        )
        self.aux_objective.every = every
        self.update_guard = self.aux_objective.guard

    def _minibatch_readers(self) -> list[str]:
        """Settings besides the tasks that read SB3's training minibatch (``rlaux.minibatch``): none here."""
        return []

    def optimizer_steps_per_update(self) -> int:
        """Optimizer steps of one ``train()``: PPO's ``n_epochs`` x minibatches, A2C's one."""
        batch_size = getattr(self, "batch_size", None)
        if batch_size is None:
            return 1
        return self.n_epochs * math.ceil(self.n_steps * self.n_envs / batch_size)

    def _gradient_reuse_steps(self) -> int:
        """k of ``aux_every`` for this agent and its tasks."""
        steps = self.optimizer_steps_per_update()
        setting = self.aux_settings.every
        if steps == 1 or not can_reuse_gradient(self.aux_tasks):
            return 1
        if setting != "auto":
            return min(int(setting), steps)
        rate = sequences_per_update(self.env_steps_per_optimizer_step(), self.aux_settings.env_steps_per_sequence)
        # k at most one epoch's minibatches: a held gradient is at most one epoch old. The cycles of k run on
        # across epoch boundaries where k does not divide the minibatches (ppo_lstm on MinAtar: k = 17 of 32).
        return min(steps // self.n_epochs, math.ceil(AUX_MIN_SEQUENCES / rate))

    def env_steps_per_optimizer_step(self) -> float:
        """Env steps collected per optimizer step: a rollout (``n_steps`` x ``n_envs``) over PPO's
        ``n_epochs`` x minibatches per rollout, or over A2C's one step per rollout."""
        return self.n_steps * self.n_envs / self.optimizer_steps_per_update()

    @property
    def needs_replay(self) -> bool:
        """Whether a task samples the auxiliary replay (minibatch-only tasks such as drac do not)."""
        return self.aux_objective is not None and any(t.replay_request() for t in self.aux_tasks)

    def ensure_replay(self) -> None:
        """Make the replay, sized for the current env, unless one of that size exists (at the start of
        ``learn``, and when a checkpoint is loaded)."""
        env = self.env
        stack = frame_stack_of(env) if is_image_space(self.observation_space) else 1
        for task in self.aux_tasks:
            request = task.replay_request()
            if request is not None and request.n_obs + request.burn_in + stack > self.aux_replay_capacity:
                raise ConfigError(
                    f"aux task '{task.name}' samples {request.n_obs + request.burn_in} steps, more than aux_replay_capacity="
                    f"{self.aux_replay_capacity} allows: raise the capacity or shorten the sequences"
                )
        replay = self.aux_replay
        if replay is None or replay.n_envs != env.num_envs:
            self.aux_replay = AuxReplayBuffer(
                self.aux_replay_capacity,
                env.num_envs,
                self.observation_space,
                self.action_space,
                frame_stack=stack,
                seed=None if self.seed is None else self.seed + 1_000_003,
                **self._replay_lstm_layout(),
            )

    def _replay_lstm_layout(self) -> dict[str, Any]:
        """What the replay keeps of the LSTM per step (``AuxReplayBuffer``'s ``lstm_*`` arguments): nothing here."""
        return {}

    def _replay_lstm_step(self) -> dict[str, Any]:
        """The LSTM state (and inputs) of the step ``ReplayFeeder`` adds, as ``AuxReplayBuffer.add`` takes them."""
        return {}

    def _step_feeders(self) -> list[BaseCallback]:
        """Callbacks that run first at every env step: the replay's feeder when a task samples the replay
        (minibatch-only tasks, drac and deep supervision, leave the per-step path untouched)."""
        if not self.needs_replay:
            return []
        self.ensure_replay()
        return [ReplayFeeder()]

    def _init_callback(self, callback: Any, progress_bar: bool = False) -> BaseCallback:
        feeders = self._step_feeders()
        if feeders:
            if callback is None:
                callbacks = []
            elif isinstance(callback, list):
                callbacks = callback
            else:
                callbacks = [callback if isinstance(callback, BaseCallback) else ConvertCallback(callback)]
            callback = [*feeders, *callbacks]
        return super()._init_callback(callback, progress_bar)

    def rollout_state(self) -> dict[str, th.Tensor]:
        """What the next rollout continues from besides SB3's saved ``_last_obs`` and
        ``_last_episode_starts``, as CPU tensors (a checkpoint keeps it): nothing for PPO and A2C."""
        return {}

    def load_rollout_state(self, state: dict[str, th.Tensor]) -> None:  # noqa: B027 - nothing to restore here
        """Put back what :meth:`rollout_state` returned."""

    def learn(self, *args: Any, **kwargs: Any) -> Any:
        """SB3's ``learn``; TensorBoard runs are named after this class (``AuxPPO_1``), not the base's (``PPO_1``),
        unless ``tb_log_name`` is given.

        A run that finishes within SB3's first log interval (one PPO update; A2C's first 100) would never
        write its training scalars (losses, aux metrics): SB3 dumps the log before each update, every
        ``log_interval`` updates. Such a run dumps the last update's scalars when it ends, at its last step.
        """
        if len(args) < 4:  # tb_log_name is learn's fourth parameter in SB3 and sb3-contrib
            kwargs.setdefault("tb_log_name", type(self).__name__)
        bound = inspect.signature(super().learn).bind(*args, **kwargs)  # type: ignore[misc]
        bound.apply_defaults()
        model = super().learn(*args, **kwargs)  # type: ignore[misc]
        interval = bound.arguments.get("log_interval")
        finished = self.num_timesteps >= getattr(self, "_total_timesteps", 0)
        logger = self.logger
        if finished and interval and 0 < self.iterations <= interval and logger.name_to_value:
            # dump() clears the values; they stay readable after learn(), as SB3 leaves them
            kept = (dict(logger.name_to_value), dict(logger.name_to_count), dict(logger.name_to_excluded))
            logger.dump(step=self.num_timesteps)
            logger.name_to_value.update(kept[0])
            logger.name_to_count.update(kept[1])
            logger.name_to_excluded.update(kept[2])
        return model

    def request_stop(self) -> None:
        """End the current (or next) ``learn()`` at the next boundary of two iterations, where a
        checkpoint holds everything the next iteration depends on (e.g. from a signal handler).
        The request is used up when ``learn()`` acts on it."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        """Whether a stop was requested and ``learn()`` has not acted on it yet."""
        return self._stop_requested

    def continue_iteration_count(self) -> None:
        """Number the iterations logged by the next ``learn()`` calls (``time/iterations``) on from
        :attr:`iterations`, as a resumed run does; SB3 restarts them at 1 in each ``learn()``."""
        self._iteration_offset = self.iterations

    def dump_logs(self, iteration: int = 0) -> None:
        super().dump_logs(iteration + self._iteration_offset)

    def collect_rollouts(self, *args: Any, **kwargs: Any) -> bool:
        if self._stop_requested:
            self._stop_requested = False
            return False
        return super().collect_rollouts(*args, **kwargs)

    def train(self) -> None:
        for task in self.aux_tasks:  # share of training done, for tasks with a schedule
            task.progress = 1.0 - self._current_progress_remaining
        # The guard clips instead of SB3 (the same rule when there is no task), so that it sees the RL
        # gradient before any clip: SB3's clip_grad_norm_ at inf multiplies by exactly 1.
        max_grad_norm, self.max_grad_norm = self.max_grad_norm, math.inf
        self.update_guard.max_grad_norm = max_grad_norm
        if self.aux_objective is not None:
            self.aux_objective.begin_update()
        try:
            super().train()
        finally:
            self.max_grad_norm = max_grad_norm
            (self.aux_objective or self.update_guard).record(self.logger)  # the objective records its guard too
        self.iterations += 1

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "aux_replay", "aux_objective", "update_guard", "env_state",
                "_iteration_offset", "_stop_requested"]

    def aux_loss(self) -> Any:
        """The current weighted auxiliary loss on fresh replay batches (for inspection and tests)."""
        return None if self.aux_objective is None else self.aux_objective.loss()


__all__ = ["AuxAlgorithmMixin"]
