"""What a packed folder's ``run.py`` runs (``rlport pack``): check the probes, then play episodes if the env exists.

The device has numpy and, usually, gymnasium and the env's package (``requirements.txt``). The
probes (the actions recorded at export) are always checked: they need nothing but numpy. Episodes
follow when the env can be made here; when it cannot (gymnasium or the env's package missing, an
id this gymnasium does not register), one line says why and the probe check is the answer.

Exit codes: 0 the probes match, 1 they do not (or the env's spaces differ), 2 the bundle or the
arguments are bad. Never a traceback.

Example:
    >>> main("cartpole.rlp", ["--episodes", "3"])                 # doctest: +SKIP
    max probe error 0 over 256 probes, tolerance 0: PASS
    CartPole-v1: mean return 500.00 over 3 episodes
    0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlport.errors import RlportError

__all__ = ["main", "probe_error"]


def probe_error(policy: Any) -> float | None:
    """The largest difference between the policy's actions and the recorded probe actions (``None``: no probes)."""
    probes = policy.bundle.probes
    if not probes or "action" not in probes:
        return None
    obs = probes["obs"] if "obs" in probes else {k[4:]: v for k, v in probes.items() if k.startswith("obs.")}
    expected = probes["action"]
    if "episode_start" not in probes:
        actions = policy.predict(obs, deterministic=True)[0]
    else:
        state, actions = None, []
        for i, start in enumerate(probes["episode_start"]):
            step = {k: v[i : i + 1] for k, v in obs.items()} if isinstance(obs, dict) else obs[i : i + 1]
            action, state = policy.predict(step, state=state, episode_start=start[None] > 0, deterministic=True)
            actions.append(np.asarray(action)[0])
    diff = np.asarray(actions, dtype=np.float64).reshape(expected.shape) - expected.astype(np.float64)
    return float(np.max(np.abs(diff))) if diff.size else 0.0


def _check_probes(policy: Any) -> bool:
    """Print the probe check; ``True`` unless it failed (the rule of ``rlport verify``'s parity check)."""
    from rlport.verify.checks import check_parity

    verdict = check_parity(policy.bundle)
    error = probe_error(policy)
    if error is None:
        print(f"no probes recorded: nothing to compare ({verdict.status})")
        return True
    count = len(policy.bundle.probes["action"])
    tolerance = verdict.data.get("tolerance", 0)
    print(f"max probe error {error:.3g} over {count} probes, tolerance {tolerance:g}: {verdict.status}")
    return verdict.status != "FAIL"


def _play(policy: Any, episodes: int, seed: int) -> bool:
    """Play episodes in the bundle's env when it can be made here; ``False`` if its spaces differ."""
    from rlport.envs import check_spaces, make_env, run_episodes

    env_id = policy.bundle.env.id
    if not env_id:
        print("no env recorded in the bundle: no episodes played")
        return True
    try:
        env = make_env(policy.bundle.env)
    except (RlportError, ImportError) as exc:  # gymnasium or the env's package missing, an unknown id
        print(f"env {env_id} cannot be made here, so no episodes were played: {exc}")
        return True
    try:
        check_spaces(policy, env, exact=False)
    except RlportError as exc:
        print(f"env {env_id}: {exc}")
        return False
    stats = run_episodes(policy, env, episodes=episodes, seed=seed)
    print(f"{env_id}: mean return {stats.mean_return:.2f} over {episodes} episodes")
    return True


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=10, help="episodes to play when the env can be made")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode (then seed + 1 ...)")
    args = parser.parse_args(argv)
    if not 1 <= args.episodes <= 1_000_000 or args.seed < 0:
        parser.error("--episodes must be in 1 .. 1,000,000 and --seed at least 0")
    return args


def main(bundle_path: str, argv: Sequence[str] | None = None) -> int:
    """Check the probes of ``bundle_path``, then play ``--episodes`` when the env can be made; return the exit code."""
    import rlport
    from rlport.cli.output import plain_warnings

    args = _arguments(argv)
    with plain_warnings("run.py"):
        try:
            policy = rlport.load(bundle_path, seed=args.seed)
            probes_ok = _check_probes(policy)
            spaces_ok = _play(policy, args.episodes, args.seed)
        except RlportError as exc:
            print(f"run.py: {exc}", file=sys.stderr)
            return 2
    return 0 if probes_ok and spaces_ok else 1
