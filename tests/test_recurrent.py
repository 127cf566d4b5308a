"""AuxRecurrentPPO: sb3-contrib's RecurrentPPO bit for bit without tasks; the replay's LSTM states; sequences
replayed through the LSTM (stored state, burn-in); UNREAL's LSTM inputs; resume after SIGTERM; evaluation."""

import json

import numpy as np
import pandas as pd
import pytest
import torch as th
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger

from rlaux import AuxRecurrentPPO, ConfigError
from rlaux.envs import make_vec_env as rlaux_vec_env
from rlaux.envs import resolve_env
from rlaux.envs.families import miniworld_available
from rlaux.evaluate import evaluate, load_model
from rlaux.networks import sb3_policy_kwargs
from rlaux.replay import ReplayRequest
from rlaux.run import RunConfig, resume, train
from rlaux.run import checkpoint as ck
from rlaux.run_folder import RunFolder
from rlaux.tasks import make_tasks

SMALL_LSTM = dict(lstm_hidden_size=16)
UNREAL_SCALARS = {f"aux/{task}/{name}" for task in ("reward_pred", "value_replay", "pixel_control")
                  for name in ("loss", "weight", "encoder_grad_norm")} | {
    "aux/reward_pred/accuracy", "aux/value_replay/mean_return", "aux/pixel_control/mean_max_q",
    "aux/pixel_control/mean_pseudo_reward", "aux/grad_norm", "aux/clip_fraction", "train/grad_norm"}


def cartpole(n_envs=2):
    return make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)


def minatar(n_envs=1, game="Breakout"):
    return rlaux_vec_env(resolve_env("MinAtar", game=game), n_envs=n_envs, seed=0, vec_env="dummy")


def minatar_policy(**extra):
    return {**sb3_policy_kwargs(resolve_env("MinAtar").policy_kwargs), **SMALL_LSTM, **extra}


def train_and_record(cls, steps=256, **kwargs):
    """Learn on CartPole, recording every value the logger gets (wall-clock figures aside)."""
    kwargs.setdefault("policy_kwargs", dict(SMALL_LSTM))
    model = cls("MlpLstmPolicy", cartpole(), seed=0, device="cpu", **kwargs)
    seen: list[dict] = []
    model.set_logger(Logger(folder=None, output_formats=[]))
    record = model.logger.record

    def spy(key, value, exclude=None):
        if not key.startswith("time/"):
            seen.append({key: value})
        record(key, value, exclude)

    model.logger.record = spy
    model.learn(steps)
    return model, seen


# ------------------------------------------------------------------------------- exactness


def test_without_tasks_behaves_exactly_as_sb3_contrib():
    kwargs = dict(n_steps=32, batch_size=16, n_epochs=2)
    ours, our_logs = train_and_record(AuxRecurrentPPO, **kwargs)
    theirs, their_logs = train_and_record(RecurrentPPO, **kwargs)
    # rlaux adds one scalar, the RL gradient's norm before the clip; all else is sb3-contrib's
    grad_norms = [d["train/grad_norm"] for d in our_logs if "train/grad_norm" in d]
    assert len(grad_norms) == 256 // (2 * 32) and all(g > 0 for g in grad_norms)
    assert [d for d in our_logs if "train/grad_norm" not in d] == their_logs and len(their_logs) > 5
    ours_state, theirs_state = ours.policy.state_dict(), theirs.policy.state_dict()
    assert list(ours_state) == list(theirs_state)
    for name, value in ours_state.items():
        assert th.equal(value, theirs_state[name]), name


def test_lstm_one_pass_trains_as_sb3_contrib_to_float_rounding():
    kwargs = dict(n_steps=32, batch_size=16, n_epochs=2)
    ours, _ = train_and_record(AuxRecurrentPPO, policy_kwargs={**SMALL_LSTM, "lstm_one_pass": True}, **kwargs)
    theirs, _ = train_and_record(RecurrentPPO, **kwargs)
    assert ours.policy.lstm_one_pass and not AuxRecurrentPPO("MlpLstmPolicy", cartpole()).policy.lstm_one_pass
    theirs_state = theirs.policy.state_dict()
    for name, value in ours.policy.state_dict().items():
        assert th.allclose(value, theirs_state[name], atol=1e-5), name


@pytest.mark.parametrize("mid_sequence_start", [False, True])
def test_one_lstm_call_equals_sb3_contribs_step_by_step_pass(mid_sequence_start):
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

    from rlaux.policy import lstm_pass

    th.manual_seed(0)
    lstm, n_seq, steps = th.nn.LSTM(24, 16), 6, 40
    features = th.randn(n_seq * steps, 24, requires_grad=True)
    states = (th.randn(1, n_seq, 16), th.randn(1, n_seq, 16))
    starts = th.zeros(n_seq, steps)
    starts[[0, 2, 3], 0] = 1.0  # sb3-contrib's minibatches: episodes start at a sequence's first step
    if mid_sequence_start:
        starts[4, 17] = 1.0  # a replayed sequence across an episode's end: the step-by-step pass
    ours = lstm_pass(features, states, starts.flatten(), lstm)
    theirs = RecurrentActorCriticPolicy._process_sequence(features, states, starts.flatten(), lstm)
    assert th.equal(ours[0], theirs[0]) and all(th.equal(a, b) for a, b in zip(ours[1], theirs[1], strict=True))
    grad_ours, = th.autograd.grad(ours[0].square().sum(), features)
    grad_theirs, = th.autograd.grad(theirs[0].square().sum(), features)
    assert th.allclose(grad_ours, grad_theirs, atol=1e-6) and grad_ours.abs().sum() > 0


def test_rl_gradient_is_clipped_by_the_guard_at_sb3_contribs_threshold():
    """RecurrentPPO.train clips with max_grad_norm; the mixin moves that clip into the guard (inf for sb3-contrib)."""
    model = AuxRecurrentPPO("MlpLstmPolicy", cartpole(), n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu",
                            max_grad_norm=1e-3, policy_kwargs=dict(SMALL_LSTM))
    steps = []
    model.policy.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: steps.append(th.nn.utils.get_total_norm(
            [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None])))
    model.learn(64)
    assert model.max_grad_norm == 1e-3 and model.update_guard.max_grad_norm == 1e-3
    assert steps and all(n <= 1e-3 * (1 + 1e-4) for n in steps)  # the guard's hook runs first, then this one


# ------------------------------------------------------------------------------- the replay's LSTM state


class StateRecorder(BaseCallback):
    """Records, at every env step, the LSTM state the policy had for it, the value it computed and the action."""

    def __init__(self):
        super().__init__()
        self.states, self.inputs, self.values, self.actions, self.rewards, self.starts = [], [], [], [], [], []

    def _on_step(self):
        model = self.model
        states = model._last_lstm_states
        self.states.append(model.policy.flat_lstm_state(states).numpy().copy())
        self.inputs.append(states.pi[2].numpy().copy() if len(states.pi) > 2 else None)
        self.values.append(self.locals["values"].numpy().reshape(-1).copy())
        self.actions.append(np.array(self.locals["actions"]).copy())
        self.rewards.append(np.array(self.locals["rewards"]).copy())
        self.starts.append(np.array(model._last_episode_starts).copy())
        return True


def recurrent_model(dtype="float32", steps=128, **kwargs):
    """One CartPole env, weights frozen (learning rate 0): the replay and the recorder see the same policy."""
    model = AuxRecurrentPPO("MlpLstmPolicy", cartpole(n_envs=1), aux_tasks=["value_replay"], n_steps=64, batch_size=64,
                            n_epochs=1, learning_rate=0.0, seed=0, device="cpu", aux_replay_capacity=400,
                            aux_lstm_state_dtype=dtype, aux_task_kwargs={"value_replay": {"seq_len": 10, "burn_in": 5}},
                            policy_kwargs=dict(SMALL_LSTM, last_action_reward=True), **kwargs)
    recorder = StateRecorder()
    model.learn(steps, callback=recorder)
    return model, recorder


def test_the_replay_keeps_the_lstm_state_and_inputs_the_policy_had_at_each_step():
    model, rec = recurrent_model("float32")
    replay = model.aux_replay
    n = len(rec.states)
    assert replay.size == n == 128  # slot t is step t (one env, capacity > steps)
    np.testing.assert_array_equal(replay.lstm_states[:n, 0], np.concatenate(rec.states))
    np.testing.assert_array_equal(replay.lstm_inputs[:n, 0], np.concatenate(rec.inputs))
    assert replay.lstm_states.shape[-1] == model.policy.lstm_state_dim == 4 * 16  # actor and critic h, c
    # UNREAL's inputs of step t: the action of t-1 (one-hot) and its reward, clipped (zeroed at episode starts)
    for t in range(1, n):
        if not rec.starts[t][0]:
            assert np.argmax(replay.lstm_inputs[t, 0, :2]) == rec.actions[t - 1][0]
            assert replay.lstm_inputs[t, 0, 2] == np.clip(rec.rewards[t - 1][0], -1, 1)
    # float16 storage: the same states, rounded (2 bytes per value)
    half, rec16 = recurrent_model("float16")
    np.testing.assert_array_equal(half.aux_replay.lstm_states[:n, 0], np.concatenate(rec16.states).astype(np.float16))
    assert half.aux_replay.lstm_states.nbytes == 400 * 1 * half.policy.lstm_state_dim * 2


def _batch(model, request, ends):
    return model.aux_replay.sequences_ending_at(request, np.asarray(ends))


def test_a_sequence_replayed_from_its_stored_state_reproduces_the_rollout():
    model, rec = recurrent_model("float32")
    policy, values = model.policy, np.concatenate(rec.values)
    hidden = np.concatenate(rec.states)[:, :16]  # the actor's h before each step = its LSTM output at the step before
    ends = [e for e in model.aux_replay.valid_ends(ReplayRequest(10, 1, next_obs=True, recurrent=True, burn_in=5,
                                                                 min_len=1)) if e < 126][:6]
    assert len(ends) == 6
    for burn_in in (0, 5):
        request = ReplayRequest(10, len(ends), next_obs=True, min_len=1, recurrent=True, burn_in=burn_in)
        batch = _batch(model, request, ends)
        with th.no_grad():
            replayed = policy.values_of_sequences(batch).numpy()  # [B, 11]
            core = policy.core_sequences(batch).numpy()  # [B, 11, 16]
        for row, end in enumerate(ends):
            steps = np.arange(end - 9, end + 2)
            np.testing.assert_allclose(replayed[row], values[steps], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(core[row, :-1], hidden[steps[:-1] + 1], rtol=1e-5, atol=1e-6)
    # from zeros (UNREAL), the same sequences give other values wherever no episode began just before
    zeros = _batch(model, ReplayRequest(10, len(ends), next_obs=True, min_len=1, recurrent=True, lstm_start="zeros"), ends)
    with th.no_grad():
        from_zeros = policy.values_of_sequences(zeros).numpy()
    assert not np.allclose(from_zeros, np.stack([values[np.arange(e - 9, e + 2)] for e in ends]), atol=1e-4)


def test_burn_in_steps_get_no_loss_and_no_gradient():
    """With burn-in from the state stored 5 steps earlier, value replay and pixel control give the loss and
    gradient of the sequence alone started from the state the rollout had: the burn-in adds neither."""
    model = AuxRecurrentPPO("CnnLstmPolicy", minatar(game="Freeway"), aux_tasks=["value_replay", "pixel_control"], n_steps=64,
                            batch_size=64, n_epochs=1, learning_rate=0.0, seed=0, device="cpu", aux_replay_capacity=400,
                            aux_lstm_state_dtype="float32", policy_kwargs=minatar_policy(last_action_reward=True))
    model.learn(192)
    policy, replay = model.policy, model.aux_replay
    value_replay, pixel_control = model.aux_tasks
    assert value_replay.replay_request() == pixel_control.replay_request()  # one batch, one LSTM pass
    assert value_replay.replay_request().burn_in == 5 and value_replay.replay_request().stored_state
    # windows inside one episode (Freeway's last 2,500 steps): the burn-in state is what the sequence starts from
    ends = [e for e in replay.valid_ends(value_replay.replay_request()) if replay.episode_step[e, 0] >= 25][:4]
    assert len(ends) == 4
    results = []
    for burn_in in (5, 0):
        request = ReplayRequest(20, 4, next_obs=True, min_len=1, recurrent=True, burn_in=burn_in)
        batch = _batch(model, request, ends)
        assert batch.recurrent.burn_in_obs.shape[1] == burn_in and batch.recurrent.starts.shape[1] == burn_in + 21
        policy.optimizer.zero_grad()
        losses = [task.loss(policy, policy.aux_head(task.name), batch)[0] for task in (value_replay, pixel_control)]
        sum(losses).backward()
        grads = {name: p.grad.clone() for name, p in policy.named_parameters() if p.grad is not None}
        results.append(([float(x.detach()) for x in losses], grads))
    (loss_burn, grad_burn), (loss_plain, grad_plain) = results
    np.testing.assert_allclose(loss_burn, loss_plain, rtol=1e-5)
    assert grad_burn.keys() == grad_plain.keys() and "lstm_actor.weight_ih_l0" in grad_burn
    for name, grad in grad_burn.items():
        th.testing.assert_close(grad, grad_plain[name], rtol=1e-4, atol=1e-6, msg=name)


# ------------------------------------------------------------------------------- configuration


def test_tasks_that_cannot_train_a_recurrent_policy_say_so_in_one_line():
    for name in ("drac", "deep_supervision"):
        with pytest.raises(ConfigError) as err:
            AuxRecurrentPPO("CnnLstmPolicy", minatar(), aux_tasks=[name], device="cpu",
                            policy_kwargs=minatar_policy())
        message = str(err.value)
        assert f"aux task '{name}' cannot train a recurrent policy" in message and "\n" not in message
    from rlaux.run import resolve

    with pytest.raises(ConfigError, match="aux task 'drac' cannot train a recurrent policy"):
        resolve(RunConfig(env="MinAtar", algo="ppo_lstm", aux=["drac"], device="cpu"))
    with pytest.raises(ConfigError, match="lstm_start must be one of stored, zeros"):
        make_tasks("value_replay", task_kwargs={"value_replay": {"lstm_start": "random"}})
    with pytest.raises(ConfigError, match="burn_in must be an integer >= 0"):
        make_tasks("pixel_control", task_kwargs={"pixel_control": {"burn_in": -1}})
    with pytest.raises(ConfigError, match="aux_lstm_state_dtype must be one of float16, float32"):
        AuxRecurrentPPO("MlpLstmPolicy", cartpole(), aux_lstm_state_dtype="int8", device="cpu")


def test_ppo_lstm_presets_rl_zoo3s_atari_values_and_unreals_lstm_inputs_on_top():
    from rlaux.run.config import agent_preset

    plain, unreal = agent_preset("ppo_lstm"), agent_preset("ppo_lstm_unreal")
    assert plain["algo"] == unreal["algo"] == "ppo_lstm" and plain["aux"] == [] and unreal["aux"] == ["unreal"]
    atari = plain["hyperparams"]["atari"]  # rl-zoo3 hyperparams/ppo_lstm.yml, atari
    assert (atari["n_steps"], atari["n_epochs"], atari["batch_size"], atari["learning_rate"], atari["clip_range"]) == \
        (128, 4, 256, "lin_2.5e-4", "lin_0.1")
    assert unreal["hyperparams"]["atari"]["policy_kwargs"] == {
        "enable_critic_lstm": False, "lstm_hidden_size": 128, "lstm_one_pass": True, "last_action_reward": True}
    for kind in ("minatar", "miniworld", "default"):
        assert unreal["hyperparams"][kind]["policy_kwargs"]["last_action_reward"] is True
        assert plain["hyperparams"][kind]["policy_kwargs"]["lstm_one_pass"] is True
        assert "last_action_reward" not in plain["hyperparams"][kind].get("policy_kwargs", {})


def test_ppo_lstm_takes_ppos_default_weights_and_feed_forward_tasks_keep_their_requests():
    model = AuxRecurrentPPO("CnnLstmPolicy", minatar(), aux_tasks="unreal", device="cpu", policy_kwargs=minatar_policy())
    weights = {t.name: t.weight for t in model.aux_tasks}
    assert weights == {t.name: t.weight for t in make_tasks("unreal", algo="ppo")}
    requests = {t.name: t.replay_request() for t in model.aux_tasks}
    assert not requests["reward_pred"].recurrent  # conv features, feed-forward (as in the paper)
    assert requests["value_replay"].recurrent and requests["pixel_control"].recurrent
    # pixel control sits on the actor's LSTM output
    assert model.policy.aux_heads["pixel_control"].fc[0].in_features == model.policy.lstm_output_dim == 16


# ------------------------------------------------------------------------------- runs, resume, evaluation


def run_config(tmp_path, name, env="MinAtar", **kwargs):
    base = dict(env=env, agent="ppo_lstm_unreal", timesteps=640, n_envs=1, seed=3, device="cpu", log_dir=str(tmp_path),
                run_name=name, save_freq=128, save_replay=True, progress_bar=False, verbose=0, vec_env="dummy",
                keep_checkpoints=0, hyperparams=dict(n_steps=64, batch_size=64, n_epochs=2))
    base.update(kwargs)
    return RunConfig(**base)


def test_resume_after_sigterm_equals_the_uninterrupted_run(tmp_path):
    """CPU, one env, ppo_lstm with UNREAL's tasks and LSTM inputs: SIGTERM mid-run, resume, same losses and weights."""
    from test_checkpoint import cli_process, sigterm_after_a_checkpoint

    whole = train(run_config(tmp_path, "whole"))
    args = ["--env", "MinAtar", "--agent", "ppo_lstm_unreal", "-n", "640", "--n-envs", "1", "--vec-env", "dummy",
            "--save-freq", "128", "--save-replay", "--keep-checkpoints", "0", "-params", "n_steps=64", "batch_size=64",
            "n_epochs=2", "--no-progress", "-v", "0", "-f", str(tmp_path), "--run-name", "cut", "--device", "cpu",
            "--seed", "3"]
    cut, log = tmp_path / "cut", tmp_path / "log.txt"
    proc = cli_process(args, log)
    sigterm_after_a_checkpoint(proc, cut, timeout=120)
    assert proc.exitcode == 143, log.read_text()
    last = ck.checkpoint_dirs(cut)[-1]
    state = json.loads((last / "state.json").read_text())
    assert state["reason"] == "signal" and state["num_timesteps"] < 640 and "rollout.pt" in state["files"]
    resume(cut)

    pa, pb = pd.read_csv(whole / "progress.csv"), pd.read_csv(cut / "progress.csv")
    cols = [c for c in pa.columns if not c.startswith("time/") or c in ("time/total_timesteps", "time/iterations")]
    assert UNREAL_SCALARS <= set(cols)
    assert pa[cols].equals(pb[cols])
    ma = AuxRecurrentPPO.load(whole / "final_model.zip", device="cpu")
    mb = AuxRecurrentPPO.load(cut / "final_model.zip", device="cpu")
    for (name, x), y in zip(ma.policy.state_dict().items(), mb.policy.state_dict().values(), strict=True):
        assert th.equal(x, y), name


def test_a_checkpoint_without_its_lstm_states_is_refused(tmp_path):
    run = train(run_config(tmp_path, "r", timesteps=256, agent="ppo_lstm", save_replay=False))
    path = ck.checkpoint_dirs(run)[0]
    state = json.loads((path / "state.json").read_text())
    del state["files"]["rollout.pt"]
    (path / "state.json").write_text(json.dumps(state))
    env = rlaux_vec_env(resolve_env("MinAtar"), n_envs=1, seed=0, vec_env="dummy")
    with pytest.raises(ck.CheckpointError, match="needs rollout.pt"):
        ck.load_checkpoint(path, env, device="cpu")


class PredictSpy:
    """Wraps a model's ``predict``: the state and episode starts it gets, and what it returns."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.policy, self.observation_space, self.action_space = model.policy, model.observation_space, model.action_space

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        copy = None if state is None else tuple(np.array(s) for s in state)
        actions, new_state = self.model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
        self.calls.append((np.array(obs), copy, np.array(episode_start), new_state))
        return actions, new_state


def test_evaluate_carries_the_lstm_state_and_resets_it_at_episode_starts():
    model = AuxRecurrentPPO("MlpLstmPolicy", cartpole(1), seed=0, device="cpu",
                            policy_kwargs=dict(SMALL_LSTM, last_action_reward=True))
    spy = PredictSpy(model)
    env = make_vec_env("CartPole-v1", n_envs=1, seed=5)
    returns, lengths = evaluate(spy, env, episodes=3)
    assert len(returns) == 3 and len(spy.calls) == sum(lengths)
    first_steps = np.cumsum([0, *lengths[:-1]])
    fresh = [model.predict(obs, state=None, episode_start=np.ones(1, bool), deterministic=True)[1]
             for obs, *_ in (spy.calls[i] for i in first_steps)]
    for k, (_, given, start, returned) in enumerate(spy.calls):
        if k in first_steps:  # an episode starts: the state is reset, whatever came in
            assert start[0]
            i = list(first_steps).index(k)
            for a, b in zip(returned[:2], fresh[i][:2]):
                np.testing.assert_allclose(a, b, rtol=1e-6)
            if k:
                assert np.abs(given[0]).sum() > 0  # a carried state came in, and was reset
        else:  # carried: the state returned at the step before, with that step's reward written in
            assert not start[0]
            previous = spy.calls[k - 1][3]
            for a, b in zip(given, previous):
                np.testing.assert_array_equal(a, b)
            assert given[2][0, -1] == 1.0  # CartPole's reward, in the reward slot
            assert np.argmax(given[2][0, :2]) in (0, 1) and given[2][0, :2].sum() == 1.0


def test_a_model_file_says_it_is_ppo_lstm(tmp_path):
    model = AuxRecurrentPPO("MlpLstmPolicy", cartpole(1), seed=0, device="cpu", policy_kwargs=dict(SMALL_LSTM))
    model.save(tmp_path / "m.zip")
    loaded = load_model(tmp_path / "m.zip", device="cpu")
    assert type(loaded) is AuxRecurrentPPO


def test_compare_accepts_ppo_lstm(tmp_path, capsys):
    from rlaux.cli import main

    code = main(["compare", "--env", "MinAtar", "--aux", "none,unreal", "--seeds", "1", "-n", "1000", "--algo",
                 "ppo_lstm", "--dry-run", "--out", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert code == 0 and out.count("--algo ppo_lstm") == 2 and "--aux unreal" in out


def test_short_unreal_run_on_minatar_logs_every_aux_scalar(tmp_path):
    run = train(run_config(tmp_path, "m", timesteps=256, save_freq=0, save_replay=False,
                           hyperparams=dict(n_steps=64, batch_size=64, n_epochs=1,
                                            policy_kwargs=dict(SMALL_LSTM, last_action_reward=True))))
    columns = set(pd.read_csv(run / "progress.csv").columns)
    assert UNREAL_SCALARS <= columns
    from test_checkpoint import tb_steps

    assert UNREAL_SCALARS <= set(tb_steps(run))
    config = RunFolder(run).read()
    assert config["algo"] == "ppo_lstm" and config["hyperparams"]["policy_kwargs"]["last_action_reward"] is True


def test_short_unreal_run_on_miniworld_logs_every_aux_scalar(tmp_path):
    ok, reason = miniworld_available()
    if not ok:
        pytest.skip(f"MiniWorld cannot render here: {reason}")
    run = train(run_config(tmp_path, "w", env="MiniWorld", game="FourRooms", timesteps=128, save_freq=0,
                           save_replay=False, hyperparams=dict(n_steps=64, batch_size=64, n_epochs=1,
                                                               policy_kwargs=SMALL_LSTM)))
    assert UNREAL_SCALARS <= set(pd.read_csv(run / "progress.csv").columns)


def test_unreal_lstm_inputs_are_reset_at_episode_starts():
    model = AuxRecurrentPPO("MlpLstmPolicy", cartpole(1), seed=0, device="cpu",
                            policy_kwargs=dict(SMALL_LSTM, last_action_reward=True))
    policy = model.policy
    assert policy.lstm_actor.input_size == policy.features_dim + 3  # CartPole: 2 actions + the reward
    obs = th.as_tensor(model.env.reset(), dtype=th.float32)
    zeros, filled = policy.initial_state(1), policy.initial_state(1)
    filled.pi[2][:] = th.tensor([[0.0, 1.0, 1.0]])
    with th.no_grad():
        for start, same in ((1.0, True), (0.0, False)):
            starts = th.tensor([start])
            value_zero = policy(obs, zeros, starts, deterministic=True)[1]
            value_filled = policy(obs, filled, starts, deterministic=True)[1]
            assert th.equal(value_zero, value_filled) is same


@pytest.mark.parametrize("through", [False, True])
def test_value_replay_reaches_the_shared_lstm_only_when_asked(through):
    """UNREAL's one LSTM for policy and value: with shared_lstm and value_replay through_shared_lstm the value-replay
    gradient reaches the LSTM the actor reads; by default (sb3-contrib's detach) it does not."""
    model = AuxRecurrentPPO("MlpLstmPolicy", cartpole(n_envs=1), aux_tasks=["value_replay"], n_steps=64, batch_size=64,
                            n_epochs=1, seed=0, device="cpu",
                            aux_task_kwargs={"value_replay": {"through_shared_lstm": through}},
                            policy_kwargs={"shared_lstm": True, "enable_critic_lstm": False})
    model.learn(128)
    task = model.aux_tasks[0]
    loss, _ = task.loss(model.policy, None, model.aux_replay.sample(task.replay_request()))
    model.policy.optimizer.zero_grad()
    loss.backward()
    grads = [p.grad for p in model.policy.lstm_actor.parameters()]
    reached = any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    assert reached == through


def test_value_replay_through_shared_lstm_needs_a_shared_lstm():
    with pytest.raises(ConfigError, match="through_shared_lstm needs a recurrent policy whose actor and critic share"):
        AuxRecurrentPPO("MlpLstmPolicy", cartpole(n_envs=1), aux_tasks=["value_replay"], device="cpu",
                        aux_task_kwargs={"value_replay": {"through_shared_lstm": True}})


def test_the_shared_lstm_agent_preset_resolves():
    from rlaux.run import RunConfig, resolve

    run = resolve(RunConfig(env="CartPole-v1", agent="ppo_lstm_unreal_shared", aux=["value_replay"], timesteps=64))
    assert run.hyperparams["policy_kwargs"]["shared_lstm"] is True
    assert run.aux.task_kwargs["value_replay"] == {"through_shared_lstm": True}
