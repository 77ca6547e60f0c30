"""An independent plain-numpy re-implementation of SB2's TensorFlow forward pass, for the tests.

Written from stable-baselines 2's TF source (``common/tf_layers.py``: ``linear``, ``conv``, ``lstm``,
``_ln``, ``conv_to_fc``; ``common/policies.py``: ``nature_cnn``, ``mlp_extractor``, ``FeedForwardPolicy``,
``LstmPolicy``; ``common/distributions.py``; ``common/input.py``; ``deepq/policies.py``;
``sac|td3|ddpg/policies.py``; ``ddpg/ddpg.py``'s ``normalize``; each algorithm's ``predict``; HER's
``KEY_ORDER``). It shares no code with rlport's graph or backends: it computes in TF's own layouts
(NHWC, ``(in, out)`` kernels, SB2's gate order i, f, o, u).

Its :class:`Store` works like ``tf.get_variable``: the first pass *creates* every variable (random,
in TF's creation order, under TF's names), which gives the tests SB2-shaped parameter files in both
saved forms (by name, and as the ``get_parameter_list()`` list); later passes read them.
"""

from __future__ import annotations

from contextlib import contextmanager
from itertools import zip_longest

import numpy as np

KEY_ORDER = ["observation", "achieved_goal", "desired_goal"]  # her/utils.py
TF_CONTRIB_LN_EPSILON = 1e-12  # tf.contrib.layers.layer_norm's variance_epsilon
SB2_LN_EPSILON = 1e-5  # tf_layers._ln's default


class Store:
    """``tf.get_variable`` with scopes: creates a variable on first use (when ``rng`` is given), else reads."""

    def __init__(self, rng: np.random.Generator | None = None, values: dict | None = None) -> None:
        self.rng, self.values, self.order, self.scopes, self.counts = rng, dict(values or {}), [], [], {}

    @contextmanager
    def scope(self, name: str):
        self.scopes.append(name)
        try:
            yield
        finally:
            self.scopes.pop()

    def unique(self, base: str) -> str:
        """TF's layer auto-naming inside the current scope: base, base_1, base_2 ..."""
        key = ("/".join(self.scopes), base)
        n = self.counts.get(key, 0)
        self.counts[key] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def get(self, name: str, shape: tuple[int, ...], kind: str = "weight") -> np.ndarray:
        full = "/".join([*self.scopes, name]) + ":0"
        if full not in self.values:
            if self.rng is None:
                raise KeyError(full)
            self.values[full] = _init(self.rng, shape, kind)
            self.order.append(full)
        value = self.values[full]
        assert value.shape == tuple(shape), (full, value.shape, shape)
        return value


def _init(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "weight":
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        return (rng.normal(0.0, 1.0, shape) / np.sqrt(fan_in)).astype(np.float32)
    if kind == "gain":
        return (1.0 + 0.2 * rng.normal(0.0, 1.0, shape)).astype(np.float32)
    if kind == "positive":
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    return (0.3 * rng.normal(0.0, 1.0, shape)).astype(np.float32)


# ---- activations (TF names) ---------------------------------------------------------------------

ACT = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---- tf_layers --------------------------------------------------------------------------------------


def linear(s: Store, x, scope: str, n_hidden: int):
    with s.scope(scope):
        w = s.get("w", (x.shape[1], n_hidden))
        b = s.get("b", (n_hidden,), "bias")
    return x @ w + b


def dense(s: Store, x, n: int, name: str | None = None):
    """tf.layers.dense: scope ``name`` or dense, dense_1 ...; kernel, bias."""
    with s.scope(name or s.unique("dense")):
        return x @ s.get("kernel", (x.shape[1], n)) + s.get("bias", (n,), "bias")


def fully_connected(s: Store, x, n: int):
    """tf.contrib.layers.fully_connected(activation_fn=None): weights, biases."""
    with s.scope(s.unique("fully_connected")):
        return x @ s.get("weights", (x.shape[1], n)) + s.get("biases", (n,), "bias")


def contrib_layer_norm(s: Store, x):
    """tf.contrib.layers.layer_norm(center=True, scale=True): beta then gamma, moments over axis 1."""
    with s.scope(s.unique("LayerNorm")):
        beta = s.get("beta", (x.shape[1],), "bias")
        gamma = s.get("gamma", (x.shape[1],), "gain")
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + TF_CONTRIB_LN_EPSILON) * gamma + beta


def conv(s: Store, x, scope: str, n_filters: int, size: int, stride: int):
    """tf_layers.conv, NHWC, VALID, bias of shape [1, n_filters, 1, 1] reshaped to [1, 1, 1, n_filters]."""
    with s.scope(scope):
        w = s.get("w", (size, size, x.shape[3], n_filters))
        b = s.get("b", (1, n_filters, 1, 1), "bias")
    out_h, out_w = (x.shape[1] - size) // stride + 1, (x.shape[2] - size) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, n_filters), dtype=np.float64)
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * stride : i * stride + size, j * stride : j * stride + size, :]
            out[:, i, j, :] = np.einsum("bhwc,hwco->bo", patch, w)
    return out + b.reshape(1, 1, 1, n_filters)


def nature_cnn(s: Store, images):
    relu = ACT["relu"]
    h = relu(conv(s, images, "c1", 32, 8, 4))
    h = relu(conv(s, h, "c2", 64, 4, 2))
    h = relu(conv(s, h, "c3", 64, 3, 1))
    h = h.reshape(h.shape[0], -1)  # conv_to_fc: NHWC order
    return relu(linear(s, h, "fc1", 512))


def _ln(x, gain, bias, epsilon=SB2_LN_EPSILON):
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gain + bias


def lstm_step(s: Store, x, mask, cell_state_hidden, scope: str, n_hidden: int, layer_norm: bool):
    """tf_layers.lstm for one step (n_steps=1): state is concat([c, h]); gates i, f, o, u."""
    with s.scope(scope):
        wx = s.get("wx", (x.shape[1], 4 * n_hidden))
        wh = s.get("wh", (n_hidden, 4 * n_hidden))
        b = s.get("b", (4 * n_hidden,), "bias")
        if layer_norm:
            gx, bx = s.get("gx", (4 * n_hidden,), "gain"), s.get("bx", (4 * n_hidden,), "bias")
            gh, bh = s.get("gh", (4 * n_hidden,), "gain"), s.get("bh", (4 * n_hidden,), "bias")
            gc, bc = s.get("gc", (n_hidden,), "gain"), s.get("bc", (n_hidden,), "bias")
    c, h = cell_state_hidden[:, :n_hidden], cell_state_hidden[:, n_hidden:]
    c = c * (1 - mask[:, None])
    h = h * (1 - mask[:, None])
    if layer_norm:
        gates = _ln(x @ wx, gx, bx) + _ln(h @ wh, gh, bh) + b
    else:
        gates = x @ wx + h @ wh + b
    i, f, o, u = (gates[:, k * n_hidden : (k + 1) * n_hidden] for k in range(4))
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(u)
    h = _sigmoid(o) * np.tanh(_ln(c, gc, bc) if layer_norm else c)
    return h, np.concatenate([c, h], axis=1)


# ---- observation_input ----------------------------------------------------------------------------


def process_obs(obs, space: dict, scale: bool):
    """common/input.py observation_input: one-hot Discrete, float Box (scaled by its bounds when asked)."""
    if space["type"] == "discrete":
        return np.eye(space["n"])[np.asarray(obs)]
    x = np.asarray(obs, dtype=np.float64)
    low, high = space.get("low"), space.get("high")
    if scale and np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.any(high - low != 0):
        x = (x - low) / (high - low)
    return x


# ---- actor-critic policies --------------------------------------------------------------------------


def mlp_extractor(s: Store, flat, net_arch, act):
    latent, pi_only, vf_only = flat, [], []
    for idx, layer in enumerate(net_arch):
        if isinstance(layer, int):
            latent = act(linear(s, latent, f"shared_fc{idx}", layer))
        else:
            pi_only, vf_only = layer.get("pi", []), layer.get("vf", [])
            break
    pi, vf = latent, latent
    for idx, (p, v) in enumerate(zip_longest(pi_only, vf_only)):
        if p is not None:
            pi = act(linear(s, pi, f"pi_fc{idx}", p))
        if v is not None:
            vf = act(linear(s, vf, f"vf_fc{idx}", v))
    return pi, vf


def _distribution_mode(s: Store, pi_latent, vf_latent, ac_space: dict):
    """proba_distribution_from_latent + mode(): pi (and pi/logstd), q; returns the deterministic action."""
    kind = ac_space["type"]
    n = {"discrete": ac_space.get("n"), "box": int(np.prod(ac_space.get("shape", (0,)))),
         "multi_discrete": int(sum(ac_space.get("nvec", []))), "multi_binary": ac_space.get("n")}[kind]  # fmt: skip
    logits = linear(s, pi_latent, "pi", n)
    if kind == "box":
        s.get("pi/logstd", (1, n), "bias")
    linear(s, vf_latent, "q", n)
    if kind == "discrete":
        return np.argmax(logits, axis=-1)
    if kind == "multi_discrete":
        splits = np.split(logits, np.cumsum(ac_space["nvec"])[:-1], axis=-1)
        return np.stack([np.argmax(p, axis=-1) for p in splits], axis=-1)
    if kind == "multi_binary":
        return np.round(_sigmoid(logits))
    return logits


def feedforward(s: Store, obs, ob_space, ac_space, layers=None, net_arch=None, act="tanh", feature="mlp"):
    """FeedForwardPolicy (MlpPolicy / CnnPolicy) under scope model: deterministic action and value."""
    x = process_obs(obs, ob_space, scale=feature == "cnn")
    if net_arch is None:
        net_arch = [dict(vf=layers or [64, 64], pi=layers or [64, 64])]
    with s.scope("model"):
        if feature == "cnn":
            pi_latent = vf_latent = nature_cnn(s, x)
        else:
            pi_latent, vf_latent = mlp_extractor(s, x.reshape(x.shape[0], -1), net_arch, ACT[act])
        value = linear(s, vf_latent, "vf", 1)
        action = _distribution_mode(s, pi_latent, vf_latent, ac_space)
    return action, value


def lstm_policy(s: Store, obs, state, mask, ob_space, ac_space, n_lstm=256, layers=None, net_arch=None, act="tanh",
                layer_norm=False, feature="mlp"):  # fmt: skip
    """LstmPolicy for one step: deterministic action and the new state (concat([c, h]))."""
    x = process_obs(obs, ob_space, scale=feature == "cnn")
    act_fn = ACT[act]
    with s.scope("model"):
        if net_arch is None:
            if feature == "cnn":
                features = nature_cnn(s, x)
            else:
                features = x.reshape(x.shape[0], -1)
                for i, size in enumerate(layers or [64, 64]):
                    features = act_fn(linear(s, features, f"pi_fc{i}", size))
            out, new_state = lstm_step(s, features, mask, state, "lstm1", n_lstm, layer_norm)
            linear(s, out, "vf", 1)
            return _distribution_mode(s, out, out, ac_space), new_state
        latent, pi_only, vf_only, new_state = x.reshape(x.shape[0], -1), [], [], None
        for idx, layer in enumerate(net_arch):
            if isinstance(layer, int):
                latent = act_fn(linear(s, latent, f"shared_fc{idx}", layer))
            elif layer == "lstm":
                latent, new_state = lstm_step(s, latent, mask, state, "lstm1", n_lstm, layer_norm)
            else:
                pi_only, vf_only = layer.get("pi", []), layer.get("vf", [])
                break
        pi, vf = latent, latent
        for idx, size in enumerate(pi_only):
            pi = act_fn(linear(s, pi, f"pi_fc{idx}", size))
        for idx, size in enumerate(vf_only):
            vf = act_fn(linear(s, vf, f"vf_fc{idx}", size))
        linear(s, vf, "vf", 1)
        return _distribution_mode(s, pi, vf, ac_space), new_state


def actor_critic_predict(action, ac_space: dict):
    """ActorCriticRLModel.predict: Box actions clipped to the bounds."""
    if ac_space["type"] == "box":
        return np.clip(action, ac_space["low"], ac_space["high"])
    return action


# ---- DQN ----------------------------------------------------------------------------------------


def dqn_q_values(s: Store, obs, ob_space, n_actions, layers=None, layer_norm=False, dueling=True, act="relu",
                 feature="mlp"):  # fmt: skip
    """deepq FeedForwardPolicy under deepq/model: Q-values (dueling: V + A - mean(A))."""
    layers = layers or [64, 64]
    act_fn = ACT[act]
    x = process_obs(obs, ob_space, scale=feature == "cnn")
    with s.scope("deepq"):
        s.get("eps", (), "positive")  # build_act's exploration rate, created before the model
    with s.scope("deepq"), s.scope("model"):
        with s.scope("action_value"):
            if feature == "cnn":
                extracted = nature_cnn(s, x)
                action_out = extracted
            else:
                extracted = x.reshape(x.shape[0], -1)
                action_out = extracted
                for size in layers:
                    action_out = fully_connected(s, action_out, size)
                    if layer_norm:
                        action_out = contrib_layer_norm(s, action_out)
                    action_out = act_fn(action_out)
            scores = fully_connected(s, action_out, n_actions)
        if not dueling:
            return scores
        with s.scope("state_value"):
            state_out = extracted
            for size in layers:
                state_out = fully_connected(s, state_out, size)
                if layer_norm:
                    state_out = contrib_layer_norm(s, state_out)
                state_out = act_fn(state_out)
            state_score = fully_connected(s, state_out, 1)
        return state_score + scores - scores.mean(axis=1, keepdims=True)


# ---- SAC, TD3, DDPG --------------------------------------------------------------------------------


def _mlp(s: Store, x, layers, act_fn, layer_norm):
    """sac/policies.py mlp (also TD3's): fc{i} dense, optional contrib layer norm, activation."""
    for i, size in enumerate(layers):
        x = dense(s, x, size, name=f"fc{i}")
        if layer_norm:
            x = contrib_layer_norm(s, x)
        x = act_fn(x)
    return x


def off_policy_actor(s: Store, x, algo: str, n_act: int, layers, act: str, layer_norm: bool):
    """make_actor under model/pi: SAC tanh(mu) (log_std made too), TD3 tanh(dense), DDPG tanh(dense 'pi')."""
    act_fn = ACT[act]
    with s.scope("pi"):
        h = x.reshape(x.shape[0], -1)
        if algo == "ddpg":
            for i, size in enumerate(layers):
                h = dense(s, h, size, name=f"fc{i}")
                if layer_norm:
                    h = contrib_layer_norm(s, h)
                h = act_fn(h)
            return np.tanh(dense(s, h, n_act, name="pi"))
        h = _mlp(s, h, layers, act_fn, layer_norm)
        mu = dense(s, h, n_act)
        if algo == "sac":
            dense(s, h, n_act)  # log_std, clipped; the deterministic action is tanh(mu)
        return np.tanh(mu)


def off_policy_critics(s: Store, x, action, algo: str, layers, act: str, layer_norm: bool):
    """make_critics / make_critic under model: created after the actor (list-form parameter order)."""
    act_fn = ACT[act]
    if algo == "ddpg":
        with s.scope("qf"):
            h = x.reshape(x.shape[0], -1)
            for i, size in enumerate(layers):
                h = dense(s, h, size, name=f"fc{i}")
                if layer_norm:
                    h = contrib_layer_norm(s, h)
                h = act_fn(h)
                if i == 0:
                    h = np.concatenate([h, action], axis=-1)
            return dense(s, h, 1, name="qf_output")
    with s.scope("values_fn"):
        h = x.reshape(x.shape[0], -1)
        if algo == "sac":
            with s.scope("vf"):
                dense(s, _mlp(s, h, layers, act_fn, layer_norm), 1, name="vf")
        qf_h = np.concatenate([h, action], axis=-1)
        out = []
        for block in ("qf1", "qf2"):
            with s.scope(block):
                out.append(dense(s, _mlp(s, qf_h, layers, act_fn, layer_norm), 1, name=block))
        return out


def ddpg_normalize(s: Store, x, normalize: bool, observation_range=(-5.0, 5.0)):
    """ddpg.py: clip(normalize(processed_obs, obs_rms), *observation_range); obs_rms as mpi RunningMeanStd."""
    if normalize:
        with s.scope("input"), s.scope("obs_rms"):
            total = s.get("runningsum", x.shape[1:], "bias").astype(np.float64)
            total_sq = s.get("runningsumsq", x.shape[1:], "positive").astype(np.float64)
            count = np.float64(s.get("count", (), "positive"))
        mean = (total / count).astype(np.float32)
        std = np.sqrt(np.maximum((total_sq / count).astype(np.float32) - mean**2, 1e-2))
        x = (x - mean) / std
    return np.clip(x, observation_range[0], observation_range[1])


def unscale_action(action, low, high):
    """common/math_util.unscale_action: [-1, 1] -> [low, high]."""
    return low + 0.5 * (action + 1.0) * (high - low)


def her_obs(obs: dict):
    """HERGoalEnvWrapper.convert_dict_to_obs."""
    return np.concatenate([np.asarray(obs[key], dtype=np.float64) for key in KEY_ORDER], axis=-1)
