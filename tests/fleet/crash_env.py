"""CartPole envs that kill the worker process that resets them: a worker lost, as by a segfault or an OOM kill.

``CrashCartPole-v0`` always does; ``CrashOnceCartPole-v0`` only while the file named by
``RLPORT_TEST_CRASH_MARKER`` does not exist (it creates it first), so that a retry succeeds.
Both are otherwise CartPole-v1: the same spaces and dynamics.
"""

import os
from pathlib import Path

import gymnasium
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class CrashCartPole(CartPoleEnv):
    def reset(self, **kwargs):
        os._exit(3)


class CrashOnceCartPole(CartPoleEnv):
    def reset(self, **kwargs):
        marker = Path(os.environ["RLPORT_TEST_CRASH_MARKER"])
        if not marker.exists():
            marker.write_text("crashed once")
            os._exit(3)
        return super().reset(**kwargs)


gymnasium.register("CrashCartPole-v0", entry_point=CrashCartPole, max_episode_steps=500)
gymnasium.register("CrashOnceCartPole-v0", entry_point=CrashOnceCartPole, max_episode_steps=500)
