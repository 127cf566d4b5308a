"""Value function replay (UNREAL, Jaderberg et al. 2016, sec. 3.3).

Sample sequences of up to 20 consecutive steps from the replay (uniformly, not
reward-skewed), run them through the current network and regress the agent's
own value head onto n-step returns computed backwards from the last step,

    R_t = r_t + gamma * (1 - done_t) * R_{t+1},    R_T = V(s_T) (0 if the episode ended at T-1),

with the bootstrap V(s_T) from the current network, detached. The loss is
0.5 * squared error averaged over the steps, like the agent's own value loss.

Recurrent policies (``AuxRecurrentPPO``): the values come from the recurrent
value head, the sequence run through the critic's LSTM (the policy's
``values_of_sequences``), from the LSTM state stored with the step ``burn_in``
steps before the sequence (R2D2; ``lstm_start="stored"``, the default) or from
zeros (UNREAL; ``lstm_start="zeros"``). Burn-in steps are run without gradient
and get no loss.

Discount: the agent's ``gamma`` (the algorithm passes it through
``AuxTask.configure``), unless one is given explicitly.

Reward transform: none. The replay stores the rewards exactly as SB3's rollout
saw them, so whatever the training env does to rewards (Atari's
``ClipRewardEnv`` clipping, a ``VecNormalize`` scaling) is already applied, and
the value head is fitted to the same reward scale as in the agent's own value
loss (miyosuda/unreal clips rewards for value replay only, so its value head is
fitted to two reward scales). One difference is unavoidable: on a time-limit truncation SB3 bootstraps
with V(terminal observation), which the replay does not keep; here such a step
is treated as an episode end (bootstrap 0).
"""

from __future__ import annotations

import torch as th

from rlaux.errors import ConfigError
from rlaux.replay import ReplayBatch, ReplayRequest
from rlaux.tasks.base import (
    DEFAULT_BURN_IN,
    AuxTask,
    Metrics,
    TaskPolicy,
    check_batch_size,
    check_lstm_window,
    lstm_window,
)
from rlaux.tasks.functional import n_step_returns


def explained_variance(prediction: th.Tensor, target: th.Tensor) -> th.Tensor:
    """1 - Var(target - prediction) / Var(target) (NaN when the target is constant), as SB3 computes it."""
    var = target.var(unbiased=False)
    return 1.0 - (target - prediction).var(unbiased=False) / var if var > 0 else th.full((), float("nan"))


class ValueReplay(AuxTask):
    """``value_replay``: regress the agent's value head on n-step returns of replayed sequences.

    :param seq_len: steps per sequence (UNREAL: up to 20).
    :param batch_size: sequences per optimizer step; None (default): one per ``env_steps_per_sequence``
        collected env steps (UNREAL's rate, ``rlaux.tasks.base.sequences_per_update``).
    :param gamma: discount; ``None`` (the default) takes the agent's.
    :param lstm_start: recurrent policies only: where the LSTM starts, ``"stored"`` (the state the
        policy had, ``burn_in`` steps before the sequence) or ``"zeros"``.
    :param burn_in: recurrent policies only: steps run through the LSTM before the sequence, without loss.
    :param through_shared_lstm: recurrent policies with ``shared_lstm=True`` only: let the value-replay
        gradient flow into the LSTM the actor and critic share, as in UNREAL, where one LSTM serves the
        policy and the value and value replay shapes the policy's memory. sb3-contrib's shared LSTM
        detaches the critic's input (its own value loss never reaches the LSTM); by default value replay
        does the same.
    """

    name = "value_replay"
    trains_actor_critic = True  # the critic's own layers
    # Public ports: A2C ones weight it 1; the PPO one leaves it off. Swept under rlaux's gradient rule
    # (docs/results/unreal-weights): 0.25 for A2C, 0.0625 for PPO.
    default_weights = {"ppo": 0.0625, "a2c": 0.25}

    def __init__(
        self,
        weight: float | None = None,
        seq_len: int = 20,
        batch_size: int | None = None,
        gamma: float | None = None,
        lstm_start: str = "stored",
        burn_in: int = DEFAULT_BURN_IN,
        through_shared_lstm: bool = False,
    ) -> None:
        super().__init__(weight)
        if not isinstance(through_shared_lstm, bool):
            raise ConfigError(f"value_replay through_shared_lstm must be true or false, got {through_shared_lstm!r}")
        self.through_shared_lstm = through_shared_lstm
        check_lstm_window(self.name, lstm_start, burn_in)
        check_batch_size(self.name, batch_size)
        if seq_len < 1:
            raise ConfigError(f"value_replay needs seq_len >= 1, got seq_len={seq_len}")
        if gamma is not None and not 0.0 <= gamma <= 1.0:
            raise ConfigError(f"value_replay gamma must be in [0, 1], got {gamma}")
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.gamma = gamma
        self.lstm_start = lstm_start
        self.burn_in = burn_in
        self.agent_gamma: float | None = None

    def configure(self, *, gamma: float, **facts: object) -> None:
        super().configure(gamma=gamma, **facts)
        self.agent_gamma = float(gamma)

    @property
    def discount(self) -> float:
        """The discount in use: the explicit ``gamma``, else the agent's."""
        if self.gamma is not None:
            return self.gamma
        if self.agent_gamma is None:
            raise ConfigError("value_replay has no discount: pass gamma=... or train it with AuxPPO/AuxA2C")
        return self.agent_gamma

    def check_policy(self, policy: TaskPolicy) -> None:
        if self.through_shared_lstm and not getattr(policy, "shared_lstm", False):
            raise ConfigError("value_replay through_shared_lstm needs a recurrent policy whose actor and critic share "
                              "one LSTM (--algo ppo_lstm, policy_kwargs shared_lstm = true and enable_critic_lstm = "
                              "false; agent preset ppo_lstm_unreal_shared)")

    def replay_request(self) -> ReplayRequest:
        # "Up to seq_len" steps: sequences that start fewer steps after their episode began are masked.
        return ReplayRequest(
            seq_len=self.seq_len, batch_size=self.sequences, next_obs=True, allow_episode_end=True, min_len=1,
            **lstm_window(self),
        )

    def loss(self, policy: TaskPolicy, head, batch: ReplayBatch) -> tuple[th.Tensor, Metrics]:
        values = policy.values_of_sequences(batch, through_shared_lstm=self.through_shared_lstm)  # [B, T+1]
        predicted = values[:, :-1]
        bootstrap = values[:, -1].detach() * (1.0 - batch.dones[:, -1])
        returns = n_step_returns(batch.rewards.T, batch.dones.T, bootstrap, self.discount).T  # [B, T]
        mask = batch.mask
        n_valid = mask.sum()
        loss = 0.5 * ((returns - predicted).pow(2) * mask).sum() / n_valid
        metrics = {"mean_return": (returns * mask).sum() / n_valid}
        valid = mask.bool()
        ev = explained_variance(predicted.detach()[valid], returns[valid])
        if not th.isnan(ev):  # constant returns (e.g. no reward in the batch): nothing to log
            metrics["explained_variance"] = ev
        return loss, metrics
