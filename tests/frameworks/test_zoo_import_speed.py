"""Issue 12: `rlport import` of an RL Zoo run records no verification without making the env (gymnasium is not
even imported, unless the run's env id was renamed and today's is chosen by its spaces); the zoo's YAML reads
alike with libyaml's parser and with PyYAML's own, and both refuse what the other refuses."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from rlport.errors import BundleError, UnsafeFileError
from rlport.frameworks.zoo import files
from zoo import needs_zoo

_CHILD = """
import sys, warnings
import rlport
warnings.simplefilter("ignore")
bundle = rlport.import_zoo(sys.argv[1], probes=8, fingerprint=sys.argv[2] == "yes")
print(bundle.env.id, "gymnasium" in sys.modules, "torch" in sys.modules)
"""


def _fresh_import(run, fingerprint: bool) -> tuple[str, bool]:
    """The env id of the bundle and whether gymnasium was imported, in a fresh process."""
    argv = [sys.executable, "-c", _CHILD, str(run), "yes" if fingerprint else "no"]
    env_id, loaded, torch = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    assert torch == "False", "importing a zoo run imported torch (~1.5 s); a file's import never needs it"
    return env_id, loaded == "True"


@needs_zoo
def test_an_import_without_verification_makes_no_env(zoo_sample):
    assert _fresh_import(zoo_sample / "ppo" / "CartPole-v1_1", fingerprint=False) == ("CartPole-v1", False)


@needs_zoo
def test_an_import_with_a_fingerprint_makes_the_env(zoo_sample):  # the twin: the check above can fail
    assert _fresh_import(zoo_sample / "ppo" / "CartPole-v1_1", fingerprint=True) == ("CartPole-v1", True)


@needs_zoo
def test_a_renamed_env_id_is_chosen_by_its_spaces_without_verification_too(zoo_sample):
    assert _fresh_import(zoo_sample / "dqn" / "LunarLander-v2_1", fingerprint=False) == ("LunarLander-v3", True)


@pytest.fixture(params=["libyaml", "pyyaml"])
def parser(request, monkeypatch):
    """Each test once with libyaml's parser (when PyYAML has it) and once with PyYAML's own."""
    if request.param == "libyaml" and not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    if request.param == "pyyaml":
        monkeypatch.setattr(files, "_parser", lambda yaml: yaml.SafeLoader)
    return request.param


def test_libyaml_is_used_when_pyyaml_has_it():
    expected = "CSafeParser" if yaml.__with_libyaml__ else "SafeLoader"
    assert files._parser(yaml).__name__ == expected


@needs_zoo
def test_both_parsers_read_the_zoo_files_alike(zoo_sample, monkeypatch):
    paths = sorted(zoo_sample.glob("*/*/*/*.yml"))
    assert len(paths) >= 10
    read = [files.read_zoo_yaml(p) for p in paths]
    monkeypatch.setattr(files, "_parser", lambda yaml: yaml.SafeLoader)
    assert [files.read_zoo_yaml(p) for p in paths] == read
    assert all(isinstance(r, dict) and r for r in read)


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 10_000 + "]" * 10_000,
        "a: " + "[" * 40 + "]" * 40,
        "a:\n" + "- " * 2_000 + "1",
        "a:\n" + "- " * 40 + "1",
    ],
    ids=["flow-10000", "flow-40", "block-2000", "block-40"],
)
def test_deep_yaml_is_refused_by_both_parsers(tmp_path, parser, text):
    path = tmp_path / "config.yml"
    path.write_text(text + "\n")
    with pytest.raises(BundleError, match="nested more than 32 levels"):
        files.read_zoo_yaml(path)


def test_shallow_yaml_is_read_by_both_parsers(tmp_path, parser):  # the twin of the refusals above
    path = tmp_path / "config.yml"
    path.write_text("a: " + "[" * 20 + "1" + "]" * 20 + "\nb:\n" + "- " * 20 + "2\n")
    nested = [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]
    assert files.read_zoo_yaml(path) == {"a": nested, "b": [[[[[[[[[[[[[[[[[[[[2]]]]]]]]]]]]]]]]]]]]}


def test_python_tags_are_refused_by_both_parsers(tmp_path, parser):
    path = tmp_path / "config.yml"
    path.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(UnsafeFileError, match="refused YAML tag"):
        files.read_zoo_yaml(path)
