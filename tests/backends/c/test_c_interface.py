"""The C export's interface and checks: the README's example, hostile names, errors, the library cache, sampling.

Each check the C code or the backend makes has a test that trips it: a mask that allows nothing,
a discrete observation outside its space, an op the exporter lacks, a missing compiler.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from c_toolchain import COMPILERS, STRICT, needs_compiler, strict_compile

import rlport
from rlport.backends.c import compiler as c_compiler
from rlport.backends.c import ops as c_ops
from rlport.backends.c.export import FILES, export_c
from rlport.backends.c.runtime import CPolicy
from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.bundle import Bundle
from rlport.bundle.spaces import BoxSpec, DictSpec, DiscreteSpec
from rlport.errors import BundleError, MissingDependencyError, ObservationError, UnsupportedError
from rlport.graph.builder import GraphBuilder

pytestmark = needs_compiler

HOSTILE = "x*/ #include <stdio.h> /* \"\\\n?? ' é"
"""A name that would break out of a comment, a string or a line of C if it reached the source."""


def _mlp(names: str = "", key: str | None = None, n: int = 3, seed: int = 0) -> Bundle:
    """obs (a Box(4), or a dict with one Box(4) key) -> linear/tanh/linear -> categorical over ``n``."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    obs = b.input(f"obs{names}", "observation", **({"key": (key,)} if key else {}))
    w1 = b.tensor(f"w1{names}", rng.standard_normal((8, 4)).astype(np.float32))
    w2 = b.tensor(f"w2{names}", rng.standard_normal((n, 8)).astype(np.float32))
    h = b.add("tanh", [b.add("linear", [obs], {"weight": w1}, name=f"h{names}")], name=f"t{names}")
    logits = b.add("linear", [h], {"weight": w2}, name=f"logits{names}")
    action = b.add("categorical", [logits], name=f"action{names}")
    box = BoxSpec.create(-5.0, 5.0, (4,))
    space = DictSpec(((key, box),)) if key else box
    return Bundle(observation_space=space, action_space=DiscreteSpec(n), graph=b.build(action), tensors=b.tensors)


def test_the_readme_example_compiles_runs_and_acts_as_numpy(tmp_path):
    bundle = _mlp()
    folder = export_c(bundle, tmp_path / "policy")
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    example = re.search(r"```c\n(.*?)```", (folder / "README.md").read_text(), re.S).group(1)
    example = example.replace("rlport_observation obs = {0};", "rlport_observation obs = {{1.5f, -2.0f, 0.25f, 3.0f}};")
    (folder / "main.c").write_text(example)
    for compiler in COMPILERS:
        exe = tmp_path / f"example-{compiler}"
        build = [compiler, *STRICT, "main.c", "rlport_policy.c", "-o", str(exe), "-lm"]
        subprocess.run(build, cwd=folder, check=True, capture_output=True)
        printed = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
        action, _ = NumpyPolicy(bundle).predict(np.float32([1.5, -2.0, 0.25, 3.0]), deterministic=True)
        assert int(float(printed)) == int(action)


def test_names_from_the_bundle_never_reach_the_source(tmp_path):
    bundle = _mlp(names=HOSTILE, key=HOSTILE)
    folder = export_c(bundle, tmp_path / "policy")
    strict_compile(folder)
    for name in ("rlport_policy.h", "rlport_policy.c"):
        text = (folder / name).read_text()
        assert text.isascii() and "<stdio.h>" not in text and "x*/" not in text
    assert (
        "x*/" not in (folder / "README.md").read_text()
        and "see `RLPORT_OBS0_KEY`" in (folder / "README.md").read_text()
    )
    # the dict key is there as an escaped string literal that C reads back as the key itself
    (folder / "key.c").write_text('#include <stdio.h>\n#include "rlport_policy.h"\n'
                                  'int main(void) { fputs(RLPORT_OBS0_KEY, stdout); return 0; }\n')  # fmt: skip
    subprocess.run([COMPILERS[0], *STRICT, "key.c", "-o", "key"], cwd=folder, check=True, capture_output=True)
    assert subprocess.run([str(folder / "key")], check=True, capture_output=True).stdout == HOSTILE.encode()
    obs = {HOSTILE: np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)}
    np.testing.assert_array_equal(CPolicy(bundle).predict(obs, deterministic=True)[0],
                                  NumpyPolicy(bundle).predict(obs, deterministic=True)[0])  # fmt: skip


def test_an_op_the_exporter_lacks_is_named_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delitem(c_ops.EMITTERS, "tanh")
    with pytest.raises(UnsupportedError, match=r"op 'tanh' is not supported by the C export .*--format onnx"):
        export_c(_mlp(), tmp_path / "policy")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UnsupportedError, match="op 'tanh' is not implemented by the c backend; use backend='numpy'"):
        rlport.load(_mlp(), backend="c")


def test_a_float16_value_is_refused_by_name(tmp_path):
    b = GraphBuilder()
    action = b.add("categorical", [b.add("cast", [b.input("obs", "observation")], attrs={"dtype": "float16"})])
    bundle = Bundle(BoxSpec.create(-1.0, 1.0, (3,)), DiscreteSpec(3), b.build(action), {})
    with pytest.raises(UnsupportedError, match="no C type for values of dtype float16"):
        export_c(bundle, tmp_path / "policy")
    assert list(tmp_path.iterdir()) == []


def test_destinations(tmp_path):
    bundle = _mlp()
    with pytest.raises(BundleError, match="does not exist; create it first"):
        export_c(bundle, tmp_path / "missing" / "policy")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(BundleError, match="it is a file; give a folder"):
        export_c(bundle, tmp_path / "file")
    folder = export_c(bundle, tmp_path / "policy")
    (folder / "rlport_policy.c").write_text("stale")
    export_c(_mlp(seed=1), folder)  # an existing folder: its three files are replaced
    assert (folder / "rlport_policy.c").read_text().startswith("/* rlport_policy.c")


def test_a_mask_that_allows_nothing_is_refused_by_the_c_code():
    b = GraphBuilder()
    obs, mask = b.input("obs", "observation"), b.input("mask", "action_mask", size=3)
    weight = b.tensor("w", np.eye(3, 4, dtype=np.float32))
    action = b.add("categorical", [b.add("linear", [obs], {"weight": weight}), mask])
    bundle = Bundle(BoxSpec.create(-5.0, 5.0, (4,)), DiscreteSpec(3), b.build(action), b.tensors)
    policy = CPolicy(bundle)
    obs = np.float32([[3, 2, 1, 0], [3, 2, 1, 0]])
    action, _ = policy.predict(obs, deterministic=True, action_masks=[[False, True, True], [False, False, True]])
    np.testing.assert_array_equal(action, [1, 2])
    with pytest.raises(ObservationError, match="allows no action at all"):
        policy.predict(obs, deterministic=True, action_masks=[[True, True, True], [False, False, False]])


def test_a_discrete_observation_outside_its_space_is_refused_by_the_c_code():
    b = GraphBuilder()
    hot = b.add("one_hot", [b.input("obs", "observation")], attrs={"n": 4})
    action = b.add("categorical", [hot])
    policy = CPolicy(Bundle(DiscreteSpec(4), DiscreteSpec(4), b.build(action), {}))
    np.testing.assert_array_equal(policy._run([np.array([3, 0])], True)[0], [3, 0])
    for outside in (4, -1):  # predict refuses these first; the C code checks on its own too
        with pytest.raises(ObservationError, match="outside its space"):
            policy._run([np.array([0, outside])], True)


def test_a_missing_compiler_says_how_to_install_one(monkeypatch, tmp_path):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependencyError, match="needs a C compiler and none was found.*apt-get install gcc"):
        rlport.load(_mlp(), backend="c")
    monkeypatch.setenv("CC", "no-such-cc --fast")
    with pytest.raises(MissingDependencyError, match=r"\$CC='no-such-cc --fast', which is not on PATH"):
        CPolicy(_mlp())


def test_the_library_is_cached_by_the_export_digest(monkeypatch, tmp_path):
    monkeypatch.delenv("RLPORT_C_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first = CPolicy(_mlp()).library_path
    assert first.is_relative_to(tmp_path / "xdg" / "rlport" / "c")
    stamp = first.stat().st_mtime_ns
    assert CPolicy(_mlp()).library_path == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert CPolicy(_mlp(seed=1)).library_path != first  # other weights: another library
    assert [p.name for p in first.parent.parent.iterdir() if p.name.startswith(".")] == []  # no build folder left


def test_a_failing_compiler_is_reported_with_its_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", f"{COMPILERS[0]} -DRLPORT_BROKEN -include {tmp_path / 'broken.h'}")
    (tmp_path / "broken.h").write_text("#error this compiler is broken\n")
    with pytest.raises(c_compiler.CompilerError, match="could not build the export .*this compiler is broken"):
        CPolicy(_mlp())


# ---- sampling with the caller's uniform numbers ------------------------------------------------------


def test_sampled_categorical_actions_follow_the_softmax():
    bundle = _mlp(n=4, seed=3)
    obs = np.tile(np.float32([0.3, -0.2, 0.1, 0.4]), (20000, 1))
    actions, _ = CPolicy(bundle, seed=0).predict(obs, deterministic=False)
    logits = np.tanh(obs[0] @ bundle.tensors["w1"].T) @ bundle.tensors["w2"].T
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    frequencies = np.bincount(actions, minlength=4) / len(actions)
    np.testing.assert_allclose(frequencies, probs, atol=4 * np.sqrt(probs * (1 - probs) / len(actions)).max())


def test_sampled_gaussian_and_greedy_heads_have_their_spread():
    b = GraphBuilder()
    obs = b.input("obs", "observation")
    log_std = b.tensor("log_std", np.float32([-1.0, 0.5]))
    action = b.add("gaussian", [b.add("linear", [obs], {"weight": b.tensor("w", np.eye(2, dtype=np.float32))})],
                   {"log_std": log_std})  # fmt: skip
    gaussian = Bundle(
        BoxSpec.create(-1.0, 1.0, (2,)), BoxSpec.create(-np.inf, np.inf, (2,)), b.build(action), b.tensors
    )
    samples, _ = CPolicy(gaussian, seed=1).predict(np.zeros((20000, 2), np.float32) + 0.5, deterministic=False)
    np.testing.assert_allclose(samples.mean(axis=0), 0.5, atol=0.05)
    np.testing.assert_allclose(samples.std(axis=0), np.exp([-1.0, 0.5]), rtol=0.03)
    b = GraphBuilder()
    q = b.add("linear", [b.input("obs", "observation")], {"weight": b.tensor("w", np.eye(5, 2, dtype=np.float32))})
    action = b.add("greedy", [q], attrs={"n": 5, "epsilon": 0.2})
    greedy = Bundle(BoxSpec.create(-1.0, 1.0, (2,)), DiscreteSpec(5), b.build(action), b.tensors)
    actions, _ = CPolicy(greedy, seed=2).predict(np.tile(np.float32([1, 0]), (20000, 1)), deterministic=False)
    # greedy picks 0; exploring (20 %) picks each of the 5 actions uniformly
    np.testing.assert_allclose(np.bincount(actions, minlength=5) / 20000, [0.84, 0.04, 0.04, 0.04, 0.04], atol=0.01)


def test_threads_sharing_the_library_get_their_own_actions():
    """Two policies of one bundle share the loaded library and its static scratch: calls must not interleave."""
    import threading

    rng = np.random.default_rng(9)
    b = GraphBuilder()
    h = b.input("obs", "observation")
    for k, (n_in, n_out) in enumerate(((4, 256), (256, 256), (256, 5))):
        h = b.add("linear", [h], {"weight": b.tensor(f"w{k}", rng.standard_normal((n_out, n_in)).astype(np.float32))})
        h = b.add("tanh", [h]) if k < 2 else h
    bundle = Bundle(BoxSpec.create(-5.0, 5.0, (4,)), DiscreteSpec(5), b.build(b.add("categorical", [h])), b.tensors)
    policies = [CPolicy(bundle), CPolicy(bundle)]
    batches = [rng.standard_normal((64, 4)).astype(np.float32) for _ in range(2)]
    expected = [NumpyPolicy(bundle).predict(obs, deterministic=True)[0] for obs in batches]
    wrong = []

    def hammer(k: int) -> None:
        for _ in range(150):
            if not np.array_equal(policies[k].predict(batches[k], deterministic=True)[0], expected[k]):
                wrong.append(k)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_cached_library_others_may_write_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("RLPORT_C_CACHE", str(tmp_path / "cache"))
    library = CPolicy(_mlp(seed=4)).library_path
    library.chmod(0o666)  # group- and world-writable: someone may have replaced it
    with pytest.raises(c_compiler.CompilerError, match="refusing to load .*others may write it"):
        CPolicy(_mlp(seed=4))
