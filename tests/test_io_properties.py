"""Property tests of istn_sk.io's manifest and config parsing."""

import difflib
import json
import string

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from istn_sk import ISTNAdapter, TaskClassifier
from istn_sk.io import (
    REFERENCE_ALIASES,
    REFERENCE_KEYS,
    canonical_config,
    parse_value,
    read_config,
    read_manifest,
)

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
#: Text pandas reads as something else (missing values, booleans, infinities).
NOT_TEXT = {"na", "n/a", "nan", "null", "none", "true", "false", "inf", "infinity"}

words = st.text(string.ascii_letters + string.digits + "_- ,.", min_size=1, max_size=8).filter(
    lambda text: text[0].isalpha() and text.strip() == text and text.lower() not in NOT_TEXT)
paths = st.lists(st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True), min_size=1,
                 max_size=3).map(lambda parts: "/".join(parts) + ".nii.gz")
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
labels = st.sampled_from(["int", "float", "text", "float-with-missing"])


@st.composite
def tables(draw):
    """A manifest table: unique image paths, a site and a label column of one kind."""
    n = draw(st.integers(1, 6))
    images = draw(st.lists(paths, min_size=n, max_size=n, unique=True))
    kind = draw(labels)
    column = {
        "int": st.integers(-10**9, 10**9),
        "float": finite,
        "text": words,
        "float-with-missing": st.one_of(finite, st.just(float("nan"))),
    }[kind]
    return pd.DataFrame({
        "image": images,
        "site": draw(st.lists(words, min_size=n, max_size=n)),
        "label": draw(st.lists(column, min_size=n, max_size=n)),
    })


@SETTINGS
@given(table=tables(), suffix=st.sampled_from([".tsv", ".csv"]))
def test_a_manifest_reads_back_identically(tmp_path, table, suffix):
    path = tmp_path / f"manifest{suffix}"
    table.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    manifest = read_manifest(path, check_files=False)
    pd.testing.assert_frame_equal(manifest.table, table, check_dtype=False)
    assert manifest.paths == [tmp_path / image for image in table["image"]]
    site = table["site"].iloc[0]
    kept = manifest.where({"site": site})
    assert kept.table["image"].tolist() == table["image"][table["site"] == site].tolist()


@SETTINGS
@given(table=tables(), key=st.sampled_from(["lable", "sites", "imag", "age"]))
def test_a_missing_column_is_named_with_the_closest(tmp_path, table, key):
    path = tmp_path / "manifest.tsv"
    table.to_csv(path, sep="\t", index=False)
    manifest = read_manifest(path, check_files=False)
    with pytest.raises(ValueError, match=f"has no column '{key}'") as error:
        manifest.column(key)
    close = difflib.get_close_matches(key, list(table.columns), n=1)
    assert (f"did you mean '{close[0]}'?" in str(error.value)) if close else (
        "did you mean" not in str(error.value))


plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), finite,
              st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                      max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.from_regex(r"[a-z_]{1,6}", fullmatch=True),
                                            inner, max_size=3)),
    max_leaves=6)
configs = st.dictionaries(st.sampled_from(sorted(REFERENCE_KEYS | {"lr", "mode", "nf"})),
                          plain, max_size=6)


@SETTINGS
@given(config=configs, suffix=st.sampled_from([".json", ".yaml", ".yml"]))
def test_config_values_round_trip_through_json_and_yaml(tmp_path, config, suffix):
    path = tmp_path / f"config{suffix}"
    path.write_text(json.dumps(config) if suffix == ".json"
                    else yaml.safe_dump(config, allow_unicode=True))
    assert read_config(path) == config


@SETTINGS
@given(value=plain.filter(lambda value: not isinstance(value, str) and value is not None))
def test_set_values_parse_back(value):
    assert parse_value(json.dumps(value)) == value


def _cli_settings() -> set[str]:
    from istn_sk.cli.main import main

    return {param.name for command in main.commands.values()
            for param in getattr(command, "params", [])}


def test_every_reference_key_and_alias_maps_to_a_real_setting():
    estimator = set(ISTNAdapter().get_params()) | set(TaskClassifier().get_params())
    from istn_sk.cli._train import _fit_extra_settings

    # settings without an option: fit's reference sites and cyc_loss, train-task's dataset_name
    known = estimator | _cli_settings() | set(_fit_extra_settings()) | {"dataset_name"}
    assert set(REFERENCE_ALIASES) <= REFERENCE_KEYS
    for alias, name in REFERENCE_ALIASES.items():
        assert name in known, f"{alias} -> {name} is no parameter or option"
        assert alias not in estimator, alias
    no_effect = {"num_classes"}   # documented as accepted, checked against the labels
    for key in REFERENCE_KEYS - set(REFERENCE_ALIASES) - no_effect:
        assert key in known, f"reference key {key} is no parameter or option"


KNOWN = sorted(set(ISTNAdapter().get_params()) | {"train_set", "label_key", "source_site"})


@st.composite
def one_edit(draw):
    """A known key with one letter deleted, replaced or inserted, not itself known."""
    key = draw(st.sampled_from([key for key in KNOWN if len(key) >= 4]))
    i = draw(st.integers(0, len(key) - 1))
    letter = draw(st.sampled_from(string.ascii_lowercase))
    edit = draw(st.sampled_from(["delete", "replace", "insert"]))
    typo = {"delete": key[:i] + key[i + 1:], "replace": key[:i] + letter + key[i + 1:],
            "insert": key[:i] + letter + key[i:]}[edit]
    return typo


@SETTINGS
@given(typo=one_edit().filter(lambda typo: typo not in set(KNOWN) | REFERENCE_KEYS))
def test_a_typo_raises_with_a_suggestion(typo):
    with pytest.raises(ValueError, match=f"--set: unknown key '{typo}'") as error:
        canonical_config({typo: 1}, KNOWN, origin="--set")
    suggestion = str(error.value).split("did you mean '")[1].rstrip("'?)")
    assert suggestion in set(KNOWN) | REFERENCE_KEYS


@SETTINGS
@given(key=st.text(min_size=1, max_size=12).filter(
    lambda key: key not in set(KNOWN) | REFERENCE_KEYS and not key.startswith("optimizer__")))
def test_unknown_keys_always_raise(key):
    with pytest.raises(ValueError, match="unknown key") as error:
        canonical_config({key: 1}, KNOWN, origin="config.yaml")
    close = difflib.get_close_matches(key, sorted(set(KNOWN) | REFERENCE_KEYS), n=1)
    assert repr(key) in str(error.value)
    assert ("did you mean" in str(error.value)) == bool(close)


@SETTINGS
@given(config=st.dictionaries(st.sampled_from(sorted(REFERENCE_ALIASES)), st.integers(0, 9),
                              max_size=3),
       routed=st.from_regex(r"optimizer__[a-z_]{1,8}", fullmatch=True))
def test_reference_keys_are_renamed_and_routed_keys_pass(config, routed):
    merged = {key: value for key, value in config.items() if key not in ("itn_path", "stn_path")}
    result = canonical_config({**merged, routed: 0.5}, KNOWN, origin="c.json",
                              prefixes=("optimizer__",))
    assert result == {**{REFERENCE_ALIASES[key]: value for key, value in merged.items()},
                      routed: 0.5}


@pytest.mark.parametrize(("value", "policy"), [(1, "reference"), (True, "reference"),
                                               (0, None), (False, None), ("shift", "shift")])
def test_reference_augmentation_flag_names_a_policy(value, policy):
    assert canonical_config({"augmentation": value}, set(), origin="c") == {"augmentation": policy}


@pytest.mark.parametrize("value", [2, 0.5, [1]])
def test_augmentation_that_is_no_flag_nor_policy_name_is_refused(value):
    with pytest.raises(ValueError, match=r"config.json: augmentation must be 0/1"):
        canonical_config({"augmentation": value}, set(), origin="config.json")
