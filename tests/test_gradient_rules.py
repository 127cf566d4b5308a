"""How the RL and auxiliary gradients are joined: the weights scale the update, clips are counted."""

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from rlaux import AuxPPO, ConfigError
from rlaux.objective import GRADIENT_RULES, ClipEach, ClipHeadsApart, ClipSum, RLPlusAux


class LinearEncoder(BaseFeaturesExtractor):
    def __init__(self, observation_space):
        super().__init__(observation_space, features_dim=8)
        self.net = th.nn.Sequential(th.nn.Linear(observation_space.shape[0], 8), th.nn.Tanh())

    def forward(self, obs):
        return self.net(obs)


def model(weight: float, **kwargs) -> AuxPPO:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    m = AuxPPO("MlpPolicy", env, aux_tasks=["reward_pred", "value_replay"], n_steps=32, batch_size=64, n_epochs=1,
               aux_weights={"reward_pred": weight, "value_replay": weight}, seed=0, device="cpu",
               policy_kwargs=dict(features_extractor_class=LinearEncoder), **kwargs)
    m.learn(64)
    return m


def step_gradient(m: AuxPPO, rl: list[th.Tensor]) -> list[th.Tensor]:
    """The gradient the optimizer would step, for RL gradient ``rl`` and a fixed replay batch."""
    params = list(m.policy.parameters())
    for p, g in zip(params, rl):
        p.grad = g.clone()
    m.aux_replay.rng = __import__("numpy").random.default_rng(7)  # the same batches for every call
    assert m.aux_objective.add_auxiliary_gradient(params, th.nn.utils.get_total_norm(rl))
    return [p.grad.clone() for p in params]


def test_doubling_the_weights_doubles_the_auxiliary_part_of_every_parameters_update():
    m = model(0.5)
    gen = th.Generator().manual_seed(0)
    rl = [th.randn(p.shape, generator=gen) for p in m.policy.parameters()]  # norm >> 0.5: SB3's clip binds
    clipped_rl = [g * (m.max_grad_norm / (th.nn.utils.get_total_norm(rl) + 1e-6)) for g in rl]
    grads = {}
    for weight in (0.05, 0.1, 0.0):  # the ordinary regime: the safety clip (10) does not bind
        for task in m.aux_tasks:
            task.weight = weight
        grads[weight] = step_gradient(m, rl)
    aux_half = [g - r for g, r in zip(grads[0.05], clipped_rl)]
    aux_one = [g - r for g, r in zip(grads[0.1], clipped_rl)]
    encoder = [n for n, _ in m.policy.named_parameters()].index("features_extractor.net.0.weight")
    assert aux_half[encoder].abs().max() > 1e-4  # the tasks do reach the shared encoder
    for half, one in zip(aux_half, aux_one):
        th.testing.assert_close(one, 2 * half, rtol=1e-4, atol=1e-6)
    for got, want in zip(grads[0.0], clipped_rl):  # weight 0: exactly SB3's clipped RL gradient
        th.testing.assert_close(got, want, rtol=0, atol=1e-7)


def test_the_safety_clip_is_counted_and_the_aux_scalars_are_logged():
    m = model(1.0, aux_max_grad_norm=1e-6)  # every auxiliary gradient is larger than this
    logger = Logger(folder=None, output_formats=[])
    m.aux_objective.record(logger)
    m.set_logger(logger)
    seen = {}
    record = logger.record
    logger.record = lambda key, value, exclude=None: (seen.__setitem__(key, value), record(key, value, exclude))
    m.learn(64, reset_num_timesteps=False)
    assert seen["aux/clip_fraction"] == 1.0
    assert seen["aux/grad_norm"] > 1e-6 and seen["train/grad_norm"] > 0
    assert seen["aux/reward_pred/encoder_grad_norm"] > 0 and seen["aux/value_replay/encoder_grad_norm"] > 0
    m.aux_objective.mixer.aux_max_grad_norm = 1e9
    seen.clear()
    m.learn(64, reset_num_timesteps=False)
    assert seen["aux/clip_fraction"] == 0.0


def grads_of(*norms: float) -> list[th.Tensor]:
    return [th.full((4,), n / 2.0) for n in norms]  # a 4-vector of n/2 has norm n


@pytest.mark.parametrize("aux_norm,binds", [(3.0, True), (0.5, False)])
def test_each_rule_reports_whether_a_clip_changed_the_auxiliary_gradient(aux_norm, binds):
    """Two parameters: an agent parameter (zero RL gradient) and a head parameter with an aux gradient."""
    agent, head = th.zeros(4, requires_grad=True), th.zeros(4, requires_grad=True)
    rl = grads_of(0.0)
    rules = {"rl_plus_aux": RLPlusAux({id(head)}, aux_max_grad_norm=1.0), "sum": ClipSum(),
             "heads_apart": ClipHeadsApart({id(head)}), "each": ClipEach()}
    assert set(rules) == set(GRADIENT_RULES)
    for name, rule in rules.items():
        agent.grad, head.grad = None, grads_of(aux_norm)[0]
        clipped = rule.mix([agent, head], [rl[0].clone(), None], th.tensor(0.0), max_grad_norm=1.0)
        assert bool(clipped) == binds, name
        assert float(th.linalg.vector_norm(head.grad)) == pytest.approx(min(aux_norm, 1.0), rel=1e-4), name
        assert th.equal(agent.grad, rl[0])


def test_an_unknown_rule_is_one_line():
    with pytest.raises(ConfigError, match="aux_clip must be one of rl_plus_aux, .*, got 'bogus'"):
        model(1.0, aux_clip="bogus")
