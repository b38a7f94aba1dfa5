"""params.yaml resolution: inheritance, deep merge, and errors that name the experiment and key."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from pydantic import ValidationError

from ccreid.core.config import Params, load_params, model_owner
from ccreid.core.errors import CCReIDError
from ccreid.core.sections import EVAL_KEYS, EXTRACT_KEYS, canonical_json, eval_section, prepare_section, train_section
from ccreid.data.synthetic import synth_section
from helpers import REPO


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_resolve_every_entry(raw):
    params = Params(raw)
    lab_log = [
        "196",
        "197",
        "198",
        "199",
        "200",
        "201",
        "202",
        "203",
        "206",
        "208",
        "209",
        "210",
        "211",
        "212",
        "213",
        "214",
        "215",
        "216",
        "218",
    ]
    # CAL's CE baseline, the untrained network, and both on 24 of CAL's 60 epochs: not in the lab log
    controls = ["212ce", "212init", "212ep24", "212ep24ce"]
    assert sorted(params.experiments) == sorted(lab_log + controls)
    assert params.resolve("212").model.backbone == "resnet50"
    assert not params.resolve("212ce").loss.clothes.enabled
    assert not params.resolve("212ce").loss.adversarial.enabled


def test_the_short_schedule_pair_is_cal_and_its_ce_control_scaled_by_0_4(raw):
    """212ep24 is 212 with every epoch count of its schedule × 0.4, as `schedule_scale: 0.4` would
    train it; 212ep24ce differs from it in the clothes losses only, as 212ce from 212."""
    scaled = copy.deepcopy(raw)
    scaled["datasets"]["synthetic"]["schedule_scale"] = 0.4
    raw["datasets"]["synthetic"]["schedule_scale"] = 1.0
    for short, full in (("212ep24", "212"), ("212ep24ce", "212ce")):
        assert train_section(Params(raw).run_config("synthetic", short)) == train_section(
            Params(scaled).run_config("synthetic", full)
        )
    assert Params(raw).run_config("prcc", "212ep24").train.epochs == 24


def test_inheritance_deep_merges_along_the_chain(raw):
    params = Params(raw)
    assert params.chain("199") == ["212", "196", "197", "199"]
    resolved = params.resolve("199")
    multiscale = {"enabled": True, "block": "osnet", "gate": "conv7_avgmax", "blocks": 2, "reduction": 16}
    assert resolved.model.multiscale.model_dump() == multiscale
    assert resolved.model.correction is True  # from 196
    assert resolved.train.epochs == 120  # from 196
    assert resolved.train.lr == raw["defaults"]["train"]["lr"]  # untouched default


def test_dataset_scales_schedule_and_applies_overrides(raw):
    scale = 0.4
    raw["datasets"]["synthetic"]["schedule_scale"] = scale
    params = Params(raw)
    run = params.run_config("synthetic", "196")
    assert run.train.epochs == round(120 * scale)
    assert run.train.milestones == (round(40 * scale), round(80 * scale))
    assert run.loss.clothes.start_epoch == round(25 * scale)
    assert run.model.width == raw["datasets"]["synthetic"]["overrides"]["model"]["width"]
    assert params.run_config("prcc", "196").train.epochs == 120


def test_evaluation_only_variants_share_the_trained_model(raw):
    params = Params(raw)
    assert model_owner(params, "prcc", "210") == "209"
    assert model_owner(params, "prcc", "218") == "216"
    assert model_owner(params, "prcc", "212") == "212"
    # Not only along a base chain: the registry's 208 and 213 resolve to the same training.
    assert model_owner(params, "prcc", "213") == "208"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda r: r["experiments"]["213"]["model"].update(multiscal={"enabled": True}),
            "experiment '213': unknown key 'model.multiscal'",
        ),
        (lambda r: r["experiments"]["212"].update(train={"lr": "fast"}), "experiment '212': key 'train.lr'"),
        (lambda r: r["experiments"]["212"].update(train={"lr": -0.1}), "experiment '212': key 'train.lr'"),
        (
            lambda r: r["experiments"]["214"].update(base="999"),
            "experiment '214' has base '999', which is not registered",
        ),
        (lambda r: r["experiments"]["212"].update(base="216"), "cyclic base chain"),
        (lambda r: r["defaults"]["model"].pop("pooling"), "missing key 'model.pooling'"),
        (lambda r: r["experiments"].update({213: r["experiments"].pop("213")}), "quote it"),
        (lambda r: r["datasets"]["synthetic"].update(size="big"), "datasets.synthetic"),
        (lambda r: r["datasets"]["synthetic"]["overrides"]["model"].update(widht=1), "unknown key 'model.widht'"),
    ],
)
def test_bad_params_are_rejected_with_the_key(raw, mutate, expected):
    bad = copy.deepcopy(raw)
    mutate(bad)
    with pytest.raises(CCReIDError, match=None) as error:
        Params(bad)
    assert expected in str(error.value)


def _on(exp: str, section: str, **values):
    """Set values in an experiment's (or, for "defaults", the defaults') section."""

    def change(raw):
        entry = raw["defaults"] if exp == "defaults" else raw["experiments"][exp]
        target = entry
        for part in section.split("."):
            target = target.setdefault(part, {})
        target.update(values)

    return change


SCALE = 0.4  # the messages below name the scaled values
SYNTH = f"datasets.synthetic.schedule_scale {SCALE}"
SILENT_MISTAKES = {  # valid key by key, but a loss, module or schedule step would do nothing
    "start epoch past the end once scaled": (
        _on("208", "loss.aux", start_epoch=59),
        f"experiment '208' on data set 'synthetic': key 'loss.aux.start_epoch' = 59 (24 after {SYNTH}): "
        f"at or past train.epochs = 60 (24 after {SYNTH})",
    ),
    "clothes start epoch at the end": (  # on the real data sets only: unscaled
        lambda raw: (_on("212", "loss.clothes", start_epoch=60)(raw), raw["datasets"].pop("synthetic")),
        "experiment '212' on data set 'prcc': key 'loss.clothes.start_epoch' = 60: "
        "at or past train.epochs = 60 (epochs count from 0): the clothes classifier and the adversarial loss would never start",
    ),
    "unsorted milestones": (
        _on("206", "train", milestones=[40, 20]),
        "experiment '206' on data set 'synthetic': key 'train.milestones' = [40, 20] "
        f"([16, 8] after {SYNTH}): not in increasing order",
    ),
    "milestone past the end": (
        _on("206", "train", milestones=[20, 70]),
        "experiment '206' on data set 'synthetic': key 'train.milestones' = [20, 70] ([8, 28] "
        f"after {SYNTH}): milestone(s) [28] at or past train.epochs = 60 (24 after {SYNTH})",
    ),
    "gamma 1": (
        _on("212", "train", gamma=1.0),
        "experiment '212' on data set 'synthetic': key 'train.gamma' = 1.0: "
        "multiplying by 1 at each milestone changes nothing",
    ),
    "warmup past the end": (_on("212", "train", warmup_epochs=80), "key 'train.warmup_epochs' = 80 (32 after"),
    "validation never reached": (_on("212", "train", val_every=61), "key 'train.val_every' = 61: past train.epochs"),
    "adversarial weight 0": (
        _on("212", "loss.adversarial", weight=0.0),
        "experiment '212' on data set 'synthetic': key 'loss.adversarial.weight' = 0.0: "
        "the adversarial loss is enabled but would add nothing",
    ),
    "adversarial without the clothes classifier": (
        _on("212", "loss.clothes", enabled=False),
        "key 'loss.adversarial.enabled' = True: the adversarial loss needs "
        "the clothes classifier, and loss.clothes.enabled is false",
    ),
    "auxiliary loss weight 0": (
        _on("208", "loss.aux", weight=0.0),
        "experiment '208' on data set 'synthetic': key 'loss.aux.weight' = 0.0: loss.aux is "
        "enabled but would add nothing",
    ),
    "distillation weight 0": (
        _on("216", "loss.distill", weight=0.0),
        "experiment '216' on data set 'synthetic': key 'loss.distill.weight' = 0.0",
    ),
    "triplet with one image per identity": (
        lambda raw: (_on("212", "loss.triplet", enabled=True)(raw), _on("212", "train", images_per_id=1)(raw)),
        "key 'train.images_per_id' = 1: the triplet loss (loss.triplet.enabled) needs two images",
    ),
    "triplet with one identity per batch": (
        lambda raw: (_on("212", "loss.triplet", enabled=True)(raw), _on("212", "train", ids_per_batch=1)(raw)),
        "key 'train.ids_per_batch' = 1: the triplet loss (loss.triplet.enabled) needs two identities",
    ),
    "triplet of weight 0": (
        _on("212", "loss.triplet", enabled=True, weight=0.0),
        "key 'loss.triplet.weight' = 0.0: loss.triplet is enabled but would add nothing",
    ),
    "more ids per batch than the synthetic set trains on": (
        _on("defaults", "train", ids_per_batch=241),
        "experiment '212' on data set 'synthetic': key 'train.ids_per_batch' "
        "= 241: the data set's training split has 240 identities (datasets.synthetic.synth.train_ids)",
    ),
    "crop at scale 1": (
        _on("212", "augment.crop", scale=1.0),
        "key 'augment.crop.scale' = 1.0: upscaled by it, a 64×32 image stays 64×32",
    ),
    "crop at a scale too small for the image": (
        _on("212", "augment.crop", scale=1.005),
        "key 'augment.crop.scale' = 1.005: upscaled by it, a 64×32 image",
    ),
}


OUT_OF_RANGE = {  # accepted by plain comparisons, then fatal to the arithmetic or the generators
    "an infinite weight": (
        _on("212", "loss.adversarial", weight=float("inf")),
        "experiment '212': key 'loss.adversarial.weight' = inf: Input should be a finite number",
    ),
    "an infinite schedule scale": (
        lambda raw: raw["datasets"]["synthetic"].update(schedule_scale=float("inf")),
        "datasets.synthetic: key 'schedule_scale' = inf: Input should be a finite number",
    ),
    "a schedule scale past any epoch count": (
        lambda raw: raw["datasets"]["synthetic"].update(schedule_scale=1e308),
        "datasets.synthetic: key 'schedule_scale' = 1e+308: scales the schedule past any number of epochs",
    ),
    "a negative seed": (_on("212", "train", seed=-1), "experiment '212': key 'train.seed' = -1"),
    "a seed past 64 bits": (
        lambda raw: raw["experiments"]["212"].update(seeds=[1, 2**64]),
        f"experiment '212': key 'seeds' = [1, {2**64}]: expected a non-empty list of distinct "
        "integers from 0 to 2**64 - 1",
    ),
    # Shown, not trained on: still one line at load, not a traceback in `ccreid config list`.
    "a note that is not text": (
        lambda raw: raw["experiments"]["206"].update(note=True),
        "experiment '206': key 'note' = True: Input should be a valid string",
    ),
    "a reported figure that is not a fraction": (
        lambda raw: raw["experiments"]["212"].update(reported={"dataset": "prcc", "mAP": 56.7, "R1": 0.6}),
        "experiment '212': key 'reported.mAP' = 56.7",
    ),
    "a crop scale past any image size": (
        _on("212", "augment.crop", scale=1e308),
        "key 'augment.crop.scale' = 1e+308: upscales the image past any size",
    ),
}


def refusal(raw: dict, mutate) -> str:
    """The message Params gives for `raw` after `mutate`."""
    mutate(raw)
    with pytest.raises(CCReIDError) as error:
        Params(raw)
    return str(error.value)


@pytest.mark.parametrize("mistake", list(OUT_OF_RANGE))
def test_values_no_generator_or_arithmetic_can_take_are_named(raw, mistake):
    mutate, expected = OUT_OF_RANGE[mistake]
    assert expected in refusal(raw, mutate)


@pytest.mark.parametrize("mistake", list(SILENT_MISTAKES))
def test_settings_that_would_silently_do_nothing_are_named(raw, mistake):
    mutate, expected = SILENT_MISTAKES[mistake]
    raw["datasets"]["synthetic"]["schedule_scale"] = SCALE
    message = refusal(raw, mutate)
    assert expected in message
    assert message.startswith("params.yaml: experiment ")


def test_the_start_epoch_of_a_loss_that_is_off_is_not_checked(raw):
    raw["defaults"]["loss"]["aux"]["start_epoch"] = 500  # aux and distill are off in 212
    raw["experiments"]["208"]["loss"]["aux"]["start_epoch"] = 25
    raw["experiments"]["213"]["loss"]["aux"]["start_epoch"] = 25
    assert Params(raw).run_config("prcc", "212").loss.aux.start_epoch == 500


def test_unknown_experiment_is_named(raw):
    with pytest.raises(CCReIDError, match="unknown experiment '999'"):
        Params(raw).resolve("999")


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(CCReIDError, match="params file not found"):
        load_params(tmp_path / "params.yaml")


def test_params_file_that_is_not_text_is_named(tmp_path):
    (tmp_path / "params.yaml").write_bytes(b"run: \xff\xfe")
    with pytest.raises(CCReIDError, match="params.yaml: not a text file"):
        load_params(tmp_path / "params.yaml")


def _write_params(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def _line_of(text: str, fragment: str, after: int = 0) -> int:
    """1-based line number of the first line holding `fragment` after line `after`."""
    lines = text.splitlines()
    return next(n for n in range(after + 1, len(lines) + 1) if fragment in lines[n - 1])


def test_an_experiment_block_given_twice_is_named_with_both_lines(tmp_path):
    text = (REPO / "params.yaml").read_text()
    # a second "213": block at the end of experiments (the file ends with them)
    text += '  "213":\n    base: "212"\n    note: "pasted again"\n'
    first = _line_of(text, '  "213":')
    second = _line_of(text, '  "213":', after=first)
    with pytest.raises(CCReIDError) as error:
        load_params(_write_params(tmp_path, text))
    assert str(error.value) == (
        f"{tmp_path / 'params.yaml'}: key '213' appears twice in 'experiments' (lines {first} and {second}): "
        "YAML would keep only the second, silently; merge the two or delete one"
    )


def test_a_key_given_twice_at_any_depth_is_named(tmp_path):
    text = (REPO / "params.yaml").read_text().replace("    lr: 3.5e-4\n", "    lr: 3.5e-4\n    lr: 1.0e-3\n", 1)
    first = _line_of(text, "    lr: 3.5e-4")
    with pytest.raises(
        CCReIDError, match=rf"key 'lr' appears twice in 'defaults.train' \(lines {first} and {first + 1}\)"
    ):
        load_params(_write_params(tmp_path, text))
    flow = (REPO / "params.yaml").read_text().replace("crop: {p: 0.5,", "crop: {p: 0.5, p: 0.1,", 1)
    with pytest.raises(CCReIDError, match=r"key 'p' appears twice in 'defaults.augment.crop' \(both on line"):
        load_params(_write_params(tmp_path, flow))


def test_yaml_merge_keys_may_override_what_they_merge(tmp_path):
    """`<<: *anchor` then a key of the anchor is an override by design, not a duplicate."""
    text = (REPO / "params.yaml").read_text().replace(
        '  "213":\n', '  "213": &full\n', 1
    ) + '  "300":\n    <<: *full\n    note: "213 again"\n'
    params = load_params(_write_params(tmp_path, text))
    assert params.resolve("300") == params.resolve("213")


def test_seeds_expand_to_runs_that_share_models_along_the_chain(raw):
    raw["experiments"]["209"]["seeds"] = [4, 5]
    params = Params(raw)
    assert params.runs("209") == ["209", "209@5"] and params.runs("210") == ["210", "210@5"]
    assert params.resolve("209").train.seed == 4  # the first seed is the plain run's
    assert params.resolve("210@5").train.seed == 5
    assert model_owner(params, "prcc", "210@5") == "209@5"
    assert "212@5" not in params.all_runs and params.runs("212") == ["212"]


def test_bad_seeds_are_named(raw):
    raw["experiments"]["213"]["seeds"] = [1, 1]
    with pytest.raises(CCReIDError, match="experiment '213': key 'seeds'"):
        Params(raw)


def test_a_data_set_gives_some_experiments_more_seeds_there_only(raw):
    """`datasets.<ds>.seeds` (the demo's 3 seeds of the compared pair): those experiments on that
    data set only, not inherited by the entries based on them, and not part of any run's
    training config (adding seeds retrains nothing that was built)."""
    before = Params(copy.deepcopy(raw))
    raw["datasets"]["synthetic"]["seeds"] = {"212": [5, 6, 7]}
    params = Params(raw)
    assert params.runs("212", "synthetic") == ["212", "212@6", "212@7"]
    assert params.runs("213", "synthetic") == ["213"]  # based on 212: not inherited
    assert params.runs("212", "prcc") == ["212"] and params.runs("212") == ["212"]
    assert params.run_config("synthetic", "212").train.seed == 5  # the plain run is the first seed
    assert params.run_config("synthetic", "212@7").train.seed == 7
    assert params.run_config("prcc", "212").train.seed == before.run_config("prcc", "212").train.seed
    assert {"212@6", "212@7"} <= set(params.all_runs)
    for exp in ("213", "214"):
        assert train_section(params.run_config("synthetic", exp)) == train_section(before.run_config("synthetic", exp))


@pytest.mark.parametrize(
    "seeds, names",
    [
        ({"999": [1, 2]}, "datasets.synthetic.seeds names experiment '999', which is not registered"),
        ({"212": [1, 1]}, r"datasets.synthetic.seeds.212 = \[1, 1\]: expected a non-empty list of distinct"),
        ({"212": []}, r"datasets.synthetic.seeds.212 = \[\]: expected a non-empty list"),
    ],
)
def test_bad_data_set_seeds_are_named(raw, seeds, names):
    raw["datasets"]["synthetic"]["seeds"] = seeds
    with pytest.raises(CCReIDError, match=names):
        Params(raw)


def test_tables_are_configuration(raw):
    """`tables:` names the comparisons, `default:` what `snakemake --cores all` builds; a new entry
    in no table is named as such (it runs only when asked for), and no run's training config
    carries any of it."""
    before = Params(copy.deepcopy(raw))
    raw["experiments"]["219"] = {"base": "213", "note": "the next entry", "model": {"multiscale": {"gate": "se_avg"}}}
    raw["tables"]["mine"] = ["213", "219"]
    params = Params(raw)
    assert params.table("mine") == ["213", "219"]
    assert params.table(params.default.table) == before.table("demo")
    assert params.unlisted() == [] and Params(copy.deepcopy(raw) | {"tables": before.tables}).unlisted() == ["219"]
    assert train_section(params.run_config("prcc", "213")) == train_section(before.run_config("prcc", "213"))
    with pytest.raises(CCReIDError, match="unknown table 'theirs'"):
        params.table("theirs")


@pytest.mark.parametrize(
    "change, names",
    [
        (
            lambda raw: raw["tables"].update(mine=["213", "999"]),
            "tables.mine names experiment '999', which is not registered",
        ),
        (lambda raw: raw["tables"].update(mine=[]), "tables.mine = []: expected a non-empty list"),
        (lambda raw: raw["tables"].update(mine=[213]), "tables.mine = [213]: expected a non-empty list of quoted"),
        (lambda raw: raw["tables"].update({"my table": ["213"]}), "tables: 'my table' is not a valid table name"),
        (lambda raw: raw["default"].update(table="mine"), "default.table = 'mine' is not defined"),
        (lambda raw: raw["default"].update(baseline="999"), "default.baseline = '999' is not defined"),
        (lambda raw: raw["default"].update(dataset="market"), "unknown data set 'market'"),
        (lambda raw: raw.pop("tables"), "'tables' must be a mapping of table names to lists of experiment ids"),
    ],
)
def test_bad_tables_are_named(raw, change, names):
    change(raw)
    with pytest.raises(CCReIDError) as error:
        Params(raw)
    assert names in str(error.value)


def test_run_config_is_resolved_once_shared_frozen_and_keeps_no_error():
    """Planning asks for a run's config hundreds of times: it is resolved once and shared, so it
    is frozen (one caller cannot change another's), and an error is not cached."""
    params = load_params(REPO / "params.yaml")
    first = params.run_config("synthetic", "212")
    for section, key in ((first.train, "lr"), (first.loss.clothes, "enabled"), (first, "experiment")):
        with pytest.raises(ValidationError, match="frozen"):
            setattr(section, key, -1.0)
    assert params.run_config("synthetic", "212") is first
    assert first == Params(copy.deepcopy(params.raw)).run_config("synthetic", "212")
    for _ in range(2):
        with pytest.raises(CCReIDError, match="unknown"):
            params.run_config("synthetic", "no-such-experiment")


def recorded_sections(params: Params) -> dict[str, str]:
    """Every stage's recorded config section (what its fingerprint holds) for every run of the
    repository's registry on every data set, as canonical JSON."""
    sections = {}
    for name, data in params.datasets.items():
        sections[f"{name}/prepare"] = canonical_json(prepare_section(data))
        if data.synth is not None:
            sections[f"{name}/synth"] = canonical_json(synth_section(data.synth))
        for exp in params.experiments:
            for run in params.runs(exp, name):
                cfg = params.run_config(name, run)
                sections[f"{name}/{run}/train"] = canonical_json(train_section(cfg))
                sections[f"{name}/{run}/extract"] = canonical_json(eval_section(cfg.eval, EXTRACT_KEYS))
                sections[f"{name}/{run}/evaluate"] = canonical_json(eval_section(cfg.eval, EVAL_KEYS))
    return sections


def test_every_recorded_config_section_is_byte_identical_to_the_one_before_the_typed_config():
    """tests/data/recorded_sections.json was written by the dict-based config (e733901) for the
    repository's params.yaml: the typed config records exactly the same bytes, so the move
    rebuilds nothing through a config. A deliberate change of a section (a new key) rewrites the
    file in the same commit, and CHANGELOG.md says what rebuilds."""
    before = json.loads((REPO / "tests/data/recorded_sections.json").read_text())
    now = recorded_sections(load_params(REPO / "params.yaml"))
    assert now.keys() == before.keys()
    assert {key for key in now if now[key] != before[key]} == set()
