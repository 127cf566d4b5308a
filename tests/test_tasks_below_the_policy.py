"""Tasks sit below the policy: no task module imports a policy class, and a task's loss runs on tensors with a
small stand-in for the policy (``rlaux.tasks.base.TaskPolicy``), no SB3 policy built."""

from __future__ import annotations

import ast
from pathlib import Path

import torch as th
from gymnasium import spaces
from torch import nn

from rlaux.replay import ReplayBatch
from rlaux.tasks import TASKS
from rlaux.tasks.pixel_control import PixelControl
from rlaux.tasks.reward_prediction import RewardPrediction
from rlaux.tasks.value_replay import ValueReplay

TASKS_DIR = Path(__file__).resolve().parents[1] / "rlaux" / "tasks"


def test_no_task_module_imports_the_policy():
    for path in TASKS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not any(m == "rlaux.policy" or m.startswith("rlaux.policy.") or m.startswith("rlaux.algorithms")
                       or m.startswith("rlaux.objective") for m in imported), (path.name, sorted(imported))


class StandIn(nn.Module):
    """The few calls a task reads of a policy, on 1 x 8 x 8 uint8 frames: a linear encoder and value head."""

    recurrent = False

    def __init__(self, n_actions: int = 3) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0, 255, (1, 8, 8), dtype="uint8")
        self.action_space = spaces.Discrete(n_actions)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.value_net = nn.Linear(16, 1)

    device = property(lambda self: th.device("cpu"))
    features_dim = property(lambda self: 16)
    core_dim = property(lambda self: 16)

    def preprocess(self, obs: th.Tensor) -> th.Tensor:
        return obs.float() / 255.0

    def encode(self, obs: th.Tensor) -> th.Tensor:
        return self.encoder(self.preprocess(obs))

    def encode_sequences(self, batch: ReplayBatch) -> th.Tensor:
        return self.encode(batch.obs.flatten(0, 1)).unflatten(0, batch.obs.shape[:2])

    core_sequences = encode_sequences

    def values_of_sequences(self, batch: ReplayBatch, through_shared_lstm: bool = False) -> th.Tensor:
        return self.value_net(self.encode_sequences(batch)).squeeze(-1)


def batch(seq_len: int, n_obs: int, b: int = 4) -> ReplayBatch:
    gen = th.Generator().manual_seed(0)
    rewards = th.tensor([[0.0] * (seq_len - 1) + [r] for r in (1.0, -1.0, 0.0, 1.0)][:b])
    return ReplayBatch(obs=th.randint(0, 256, (b, n_obs, 1, 8, 8), generator=gen, dtype=th.uint8),
                       actions=th.randint(0, 3, (b, seq_len), generator=gen), rewards=rewards,
                       dones=th.zeros(b, seq_len), mask=th.ones(b, seq_len), rewarding_share=0.75)


def test_unreal_losses_run_on_tensors_and_a_stand_in_and_train_it():
    policy = StandIn()
    cases = [(RewardPrediction(), batch(3, 3)), (ValueReplay(gamma=0.9), batch(5, 6)), (PixelControl(), batch(5, 6))]
    for task, sample in cases:
        task.check(policy.observation_space, policy.action_space)
        task.configure(gamma=0.99, env_steps_per_update=20)
        head = task.build_head(policy)
        params = list(policy.parameters()) + (list(head.parameters()) if head is not None else [])
        loss, metrics = task.loss(policy, head, sample)
        assert loss.dim() == 0 and th.isfinite(loss), task.name
        loss.backward()
        # the loss reaches the encoder (reward prediction, pixel control) or the value head (value replay)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters()), task.name
        for p in params:
            p.grad = None


def test_every_registered_task_names_the_protocol_not_a_policy_class():
    import inspect

    for cls in TASKS.values():
        hint = str(inspect.signature(cls.loss).parameters["policy"].annotation)
        assert "TaskPolicy" in hint, (cls.name, hint)
