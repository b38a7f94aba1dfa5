"""Bad input: one clear message naming the file or key, exit status 2, no output left behind.

The catalogue, case by case, with the test that covers each, is docs/reliability.md.
"""

from __future__ import annotations

import json
import pathlib
import resource
import shutil
import signal

import h5py
import numpy as np
import pytest
import torch

from helpers import call, copy_built, edit_params, run
from test_parsers import make_ltcc

pytestmark = pytest.mark.slow

RGB = "data/raw/synthetic/rgb"
RUN_DIR = "results/synthetic/212"
TRAIN = ["train", "--dataset", "synthetic", "--exp", "212"]
EXTRACT = ["extract", "--dataset", "synthetic", "--exp", "212"]
EVALUATE = ["evaluate", "--dataset", "synthetic", "--exp", "212"]


def ccreid(project, *args, check=False, **kwargs):
    return run(["ccreid", *args], cwd=project, check=check, **kwargs)


def leftovers(folder):
    return [p for p in folder.rglob(".tmp-*")] if folder.exists() else []


def assert_refused(result, *expected):
    """Exit 2 with one message (no traceback) holding every expected fragment."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("ccreid: error:") == 1, result.stderr
    for fragment in expected:
        assert fragment in result.stderr, (fragment, result.stderr)


def in_both(project, *args):
    """`ccreid args` in a process of its own, checked to give the same exit status and stderr as in
    this one (helpers.call, which the catalogues below use for errors that fire before any data is read)."""
    in_process = call(list(args), cwd=project, check=False)
    process = ccreid(project, *args)
    assert (process.returncode, process.stderr) == (in_process.returncode, in_process.stderr)
    return process


@pytest.fixture
def copy_of_built(built_212, tmp_path):
    """A tiny project built through evaluation, the test's to change."""
    return copy_built(built_212, tmp_path / "project")


# ------------------------------------------------------------------ raw data
def test_missing_dataset(project):
    result = call(["prepare", "--dataset", "prcc"], cwd=project, check=False)
    assert_refused(result, "data/raw/prcc not found")
    assert not (project / "data/prepared/prcc").exists()


def test_wrong_layout_names_the_layout_it_has(project):
    """An LTCC copy placed where PRCC is expected."""
    ltcc = make_ltcc(project / "data/raw")
    ltcc.rename(project / "data/raw/prcc")
    result = call(["prepare", "--dataset", "prcc"], cwd=project, check=False)
    assert_refused(result, "data/raw/prcc/rgb", "has the 'ltcc' layout", "datasets.prcc.layout: ltcc")
    assert not (project / "data/prepared").exists()


DAMAGED_IMAGES = {
    "corrupt": lambda image: image.write_bytes(b"not a jpeg at all"),
    "truncated": lambda image: image.write_bytes(image.read_bytes()[:40]),
    "zero-byte": lambda image: image.write_bytes(b""),
}


@pytest.mark.parametrize("damage", list(DAMAGED_IMAGES))
def test_damaged_image_stops_prepare_naming_it(synthetic, damage):
    bad = next((synthetic / RGB / "test/C").rglob("*.jpg"))
    DAMAGED_IMAGES[damage](bad)
    result = ccreid(synthetic, "prepare", "--dataset", "synthetic")
    assert_refused(result, str(bad.relative_to(synthetic)), "on_bad_image: skip")
    assert not (synthetic / "data/prepared/synthetic").exists()
    assert leftovers(synthetic / "data/prepared") == []


def test_damaged_image_can_be_skipped_and_recorded(synthetic):
    bad = next((synthetic / RGB / "train").rglob("*.jpg"))
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    edit_params(synthetic, lambda p: p["datasets"]["synthetic"].update(on_bad_image="skip"))
    ccreid(synthetic, "prepare", "--dataset", "synthetic", check=True)
    skipped = json.loads((synthetic / "data/prepared/synthetic/skipped.json").read_text())
    assert len(skipped) == 1 and str(bad.relative_to(synthetic)) in skipped[0]


def _first_train_id(project):
    return sorted((project / RGB / "train").iterdir())[0]


def _test_id_copied_into_train(project):
    """Identity folder of the test split copied into train, named as train files are."""
    test_id = sorted((project / RGB / "test/A").iterdir())[0]
    for image in test_id.iterdir():
        target = project / RGB / "train" / test_id.name / f"A_{image.name}"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(image, target)
    return test_id.name


DAMAGED_TREES = {
    "non-image file": (lambda p: (_first_train_id(p) / "notes.txt").write_text("x"), ["notes.txt", "not images"]),
    "id folder not a number": (
        lambda p: _first_train_id(p).rename(p / RGB / "train/person1"),
        ["rgb/train/person1", "must be integers"],
    ),
    "train/test id overlap": (_test_id_copied_into_train, ["both in train and in the evaluation splits"]),
    "empty split": (lambda p: [shutil.rmtree(f) for f in (p / RGB / "test/C").iterdir()], ["query_cc"]),
}


@pytest.mark.parametrize("damage", list(DAMAGED_TREES))
def test_damaged_tree_stops_prepare(synthetic, damage):
    change, expected = DAMAGED_TREES[damage]
    change(synthetic)
    result = call(
        ["prepare", "--dataset", "synthetic"], cwd=synthetic, check=False
    )  # the tree is checked before any image is read
    assert_refused(result, *expected)
    assert not (synthetic / "data/prepared").exists()


def test_a_damaged_tree_stops_a_process_of_its_own_as_it_stops_the_cli_in_process(synthetic):
    change, expected = DAMAGED_TREES["id folder not a number"]
    change(synthetic)
    assert_refused(in_both(synthetic, "prepare", "--dataset", "synthetic"), *expected)


# ------------------------------------------------------------------ params.yaml
def _set(section: str, **values):
    return lambda p: p["experiments"]["212"].setdefault(section, {}).update(values)


BAD_PARAMS = {
    "typo'd key": (
        lambda p: p["experiments"]["212"].update(modle={"pooling": "avg"}),
        "experiment '212': unknown key 'modle'",
    ),
    "wrong type": (_set("train", lr="fast"), "experiment '212': key 'train.lr'"),
    "negative learning rate": (_set("train", lr=-0.1), "experiment '212': key 'train.lr'"),
    "missing base": (lambda p: p["experiments"]["212"].update(base="999"), "has base '999', which is not registered"),
    "cyclic base": (lambda p: p["experiments"]["212"].update(base="216"), "cyclic base chain"),
    "unknown backbone": (
        _set("model", backbone="resnet51"),
        "experiment '212': key 'model.backbone' = 'resnet51': no backbone of that name; valid backbones: osnet_x1_0",
    ),
    "unknown gate": (
        lambda p: p["experiments"]["212"].update(model={"multiscale": {"enabled": True, "gate": "se_maxx"}}),
        "experiment '212': key 'model.multiscale.gate' = 'se_maxx': no gate of that name; valid gates: conv7_avgmax",
    ),
    "unquoted experiment id": (lambda p: p["experiments"].update({212: p["experiments"].pop("212")}), "quote it"),
    "a loss that would add nothing": (
        _set("loss", adversarial={"weight": 0.0}),
        "experiment '212' on data set 'synthetic': key 'loss.adversarial.weight' = 0.0",
    ),
    "a start epoch past the end": (
        _set("loss", clothes={"start_epoch": 60}),
        "key 'loss.clothes.start_epoch' = 60 (2 after datasets.synthetic.schedule_scale 0.03)",
    ),
}


# In this process (helpers.call): these errors fire before any data is read; the test after this
# one checks a few of them against a process of its own.
@pytest.mark.parametrize("mistake", list(BAD_PARAMS))
def test_bad_params_stop_training_before_anything_is_written(prepared, mistake):
    change, expected = BAD_PARAMS[mistake]
    edit_params(prepared, change)
    result = call(TRAIN, cwd=prepared, check=False)
    assert_refused(result, expected)
    assert not (prepared / "results").exists()


@pytest.mark.parametrize("mistake", ["typo'd key", "cyclic base", "unknown gate", "a start epoch past the end"])
def test_bad_params_stop_a_process_of_its_own_as_they_stop_the_cli_in_process(prepared, mistake):
    change, expected = BAD_PARAMS[mistake]
    edit_params(prepared, change)
    assert_refused(in_both(prepared, *TRAIN), expected)
    assert not (prepared / "results").exists()


def test_a_batch_the_prepared_set_cannot_fill_stops_training(synthetic):
    """A set of unknown size (no synth: section) cannot be checked before prepare: training checks."""

    def add_set(params):
        synthetic = params["datasets"]["synthetic"]
        overrides = {**synthetic["overrides"], "train": {**synthetic["overrides"]["train"], "ids_per_batch": 9}}
        params["datasets"]["few"] = {**synthetic, "overrides": overrides}
        del params["datasets"]["few"]["synth"]

    edit_params(synthetic, add_set)
    ccreid(synthetic, "prepare", "--dataset", "few", check=True)  # the synthetic images: 8 training ids
    result = ccreid(synthetic, "train", "--dataset", "few", "--exp", "212")
    assert_refused(result, "train.ids_per_batch = 9 but the prepared training split has only 8 identities")
    assert [p.name for p in (synthetic / "results/few/212").iterdir()] == [".model.pt.lock"]


def test_a_key_given_twice_stops_training_naming_both_lines(prepared):
    params = prepared / "params.yaml"
    text = params.read_text()
    params.write_text(text + "  '212':\n    note: pasted twice\n")
    first = text.splitlines().index("  '212':") + 1  # as yaml.safe_dump quotes it
    result = call(TRAIN, cwd=prepared, check=False)
    assert_refused(result, f"key '212' appears twice in 'experiments' (lines {first} and {len(text.splitlines()) + 1})")
    assert not (prepared / "results").exists()


def test_unknown_experiment(project):
    result = call(["train", "--dataset", "synthetic", "--exp", "999"], cwd=project, check=False)
    assert_refused(result, "unknown experiment '999'")
    assert not (project / "results").exists()


# ------------------------------------------------------------------ stage inputs
def without_input(project, missing):
    """Delete `missing` (a stage's input) and every file of the built run but its model and features."""
    for path in (project / RUN_DIR).iterdir():
        if not path.name.startswith(("model.pt", "features.h5")):  # keep the inputs, drop the outputs
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    target = project / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()


@pytest.mark.parametrize(
    "stage, missing",
    [
        (TRAIN, "data/prepared/synthetic"),
        (EXTRACT, f"{RUN_DIR}/model.pt"),
        (EVALUATE, f"{RUN_DIR}/features.h5"),
    ],
)
def test_missing_stage_input_is_named(copy_of_built, stage, missing):
    without_input(copy_of_built, missing)
    before = sorted(copy_of_built.rglob("*"))
    result = call(stage, cwd=copy_of_built, check=False)
    assert_refused(result, missing, "not found; build it first")
    assert sorted(copy_of_built.rglob("*")) == before


def test_a_missing_stage_input_stops_a_process_of_its_own_as_it_stops_the_cli_in_process(copy_of_built):
    without_input(copy_of_built, f"{RUN_DIR}/model.pt")
    before = sorted(copy_of_built.rglob("*"))
    assert_refused(in_both(copy_of_built, *EXTRACT), f"{RUN_DIR}/model.pt", "not found; build it first")
    assert sorted(copy_of_built.rglob("*")) == before


DAMAGED_PREPARED = {  # a prepared set edited or damaged after `ccreid prepare` (its record vouches only for its build)
    "samples.csv not text": ("samples.csv", b"\xff\xfe\x00garbage"),
    "samples.csv lost a column": ("samples.csv", b"path,pid\na.jpg,1\n"),
    "protocols.json not JSON": ("protocols.json", b"[{"),
    "protocols.json of something else": ("protocols.json", b"[1, 2]"),
}


@pytest.mark.parametrize("damage", list(DAMAGED_PREPARED))
def test_damaged_prepared_set_is_named(copy_of_built, damage):
    name, content = DAMAGED_PREPARED[damage]
    (copy_of_built / "data/prepared/synthetic" / name).write_bytes(content)
    result = ccreid(copy_of_built, *EXTRACT, "--out", "f.h5")
    assert_refused(result, "data/prepared/synthetic", "re-run `ccreid prepare`")
    assert not (copy_of_built / "f.h5").exists() and leftovers(copy_of_built) == []


def test_a_record_that_is_not_text_means_rebuild(copy_of_built):
    metrics = copy_of_built / RUN_DIR / "metrics.json"
    record = metrics.with_name("metrics.json.fingerprint.json")
    expected = metrics.read_bytes()
    metrics.write_text("{}")
    record.write_bytes(b"\xff\xfe not a record")
    ccreid(copy_of_built, *EVALUATE, check=True)
    assert metrics.read_bytes() == expected and json.loads(record.read_text())["stage"] == "ccreid.stages.evaluate"


def test_truncated_features_file(copy_of_built):
    features = copy_of_built / RUN_DIR / "features.h5"
    features.write_bytes(features.read_bytes()[:2000])
    out = copy_of_built / "m.json"
    result = ccreid(copy_of_built, *EVALUATE, "--out", str(out))
    assert_refused(result, str(features.relative_to(copy_of_built)))
    assert not out.exists() and leftovers(copy_of_built) == []


@pytest.mark.parametrize("content", ["hdf5 header only", "hdf5 of something else"])
def test_foreign_features_file(project, content):
    foreign = project / "features.h5"
    if content == "hdf5 header only":
        foreign.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    else:
        with h5py.File(foreign, "w") as store:
            store["embeddings"] = np.zeros((4, 8), np.float32)
    result = ccreid(project, *EVALUATE, "--features", str(foreign), "--out", str(project / "m.json"))
    assert_refused(result, "features.h5")
    assert not (project / "m.json").exists()


def test_truncated_model_file(copy_of_built):
    model = copy_of_built / RUN_DIR / "model.pt"
    model.write_bytes(model.read_bytes()[:5000])
    out = copy_of_built / "f.h5"
    result = ccreid(copy_of_built, *EXTRACT, "--model", str(model), "--out", str(out))
    assert_refused(result, str(model))
    assert not out.exists()


# ------------------------------------------------------------------ results files run no code
class Payload:
    """Unpickling this creates `marker`: what a crafted results file could do instead."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def crafted_file(path, marker):
    """A torch file shaped like ccreid's, but carrying the payload."""
    torch.save({"format": 1, "model": Payload(marker), "config_json": "{}", "num_ids": 1, "num_clothes": 1}, path)
    return path


def test_the_crafted_file_really_runs_its_payload_when_unpickled(tmp_path):
    """The control for the next test: loading it as ccreid did before (weights_only=False) runs it."""
    marker = tmp_path / "MARKER"
    torch.load(crafted_file(tmp_path / "model.pt", marker), weights_only=False)
    assert marker.exists()


# stage, the input it reads that is replaced by a crafted file, what must not be left behind
CRAFTED_INPUTS = {
    "extract": (EXTRACT + ["--out", "f.h5"], f"{RUN_DIR}/model.pt", "f.h5"),
    # 211 has no model yet: training reads the checkpoint to resume from
    "train resume": (
        ["train", "--dataset", "synthetic", "--exp", "211"],
        "results/synthetic/211/checkpoint.pt",
        "results/synthetic/211/model.pt",
    ),
    "evaluate": (EVALUATE + ["--out", "m/metrics.json"], f"{RUN_DIR}/features.h5", "m/metrics.json"),
}


@pytest.mark.parametrize("stage", list(CRAFTED_INPUTS))
def test_a_results_file_carrying_a_pickle_payload_is_refused_unrun(copy_of_built, stage):
    args, crafted, output = CRAFTED_INPUTS[stage]
    marker = copy_of_built / "MARKER"
    (copy_of_built / crafted).parent.mkdir(parents=True, exist_ok=True)
    crafted_file(copy_of_built / crafted, marker)
    result = ccreid(copy_of_built, *args)
    assert_refused(result, crafted)
    assert not marker.exists(), "the payload ran"
    assert not (copy_of_built / output).exists() and leftovers(copy_of_built) == []


def test_model_and_checkpoint_of_an_older_format_are_refused_naming_the_remedy(copy_of_built):
    model = copy_of_built / RUN_DIR / "model.pt"
    saved = torch.load(model, weights_only=True)
    # ccreid < format 1 stored the config as a dict and no format stamp
    torch.save(
        {
            "model": saved["model"],
            "config": json.loads(saved["config_json"]),
            "num_ids": saved["num_ids"],
            "num_clothes": saved["num_clothes"],
        },
        model,
    )
    result = ccreid(copy_of_built, *EXTRACT, "--out", "f.h5")
    assert_refused(
        result,
        f"{model.relative_to(copy_of_built)}: not a ccreid model file of this ccreid version",
        "format None, expected 1",
        "delete it and re-run `ccreid train`",
    )
    # checkpoint format 2 held NumPy's generator state as an ndarray: unpickling it needs NumPy code
    checkpoint = copy_of_built / "results/synthetic/211/checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"format": 2, "rng": [{"numpy": np.random.get_state()}]}, checkpoint)
    result = ccreid(copy_of_built, "train", "--dataset", "synthetic", "--exp", "211")
    assert_refused(
        result, str(checkpoint.relative_to(copy_of_built)), "refused", "numpy", "delete it to train from scratch"
    )
    assert not (copy_of_built / "f.h5").exists() and not checkpoint.with_name("model.pt").exists()


# ------------------------------------------------------------------ a full disk
def file_size_limit(limit_bytes: int):
    """preexec_fn: writes past `limit_bytes` fail with EFBIG, as on a full disk (the signal the
    kernel sends first is ignored, as a process that handles write errors must)."""

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


FULL_DISK = {  # stage, its output, a size limit below that output's size
    "prepare": (["prepare", "--dataset", "synthetic", "--out", "data/prepared/again"], "data/prepared/again", 50_000),
    "train": (["train", "--dataset", "synthetic", "--exp", "211"], "results/synthetic/211/checkpoint.pt", 200_000),
    "extract": (EXTRACT + ["--out", "f.h5"], "f.h5", 10_000),
    "evaluate": (EVALUATE + ["--out", "m/metrics.json"], "m/per_query.csv", 500),
}


@pytest.mark.parametrize("stage", list(FULL_DISK))
def test_disk_full_while_writing_names_the_output_and_keeps_nothing(copy_of_built, stage):
    args, output, limit = FULL_DISK[stage]
    before = sorted(
        p.relative_to(copy_of_built).as_posix()
        for p in copy_of_built.rglob("*")
        if p.is_file() and not p.name.endswith(".lock")
    )
    result = ccreid(copy_of_built, *args, preexec_fn=file_size_limit(limit))
    assert_refused(result, f"{output}: ran out of space while writing it", "rerun the same command")
    after = sorted(
        p.relative_to(copy_of_built).as_posix()
        for p in copy_of_built.rglob("*")
        if p.is_file() and not p.name.endswith(".lock")
    )
    new = set(after) - set(before)
    assert all("/live/" in f"/{path}" for path in new), new  # training's live log is not an output


def test_prepare_refuses_at_once_when_the_disk_cannot_hold_the_set(synthetic):
    edit_params(synthetic, lambda p: p["datasets"]["synthetic"].update(size=[100_000, 50_000]))  # ~1 TiB
    result = ccreid(synthetic, "prepare", "--dataset", "synthetic")
    assert_refused(result, "preparing data set 'synthetic' needs about", "GiB in", "free")
    assert not (synthetic / "data/prepared/synthetic").exists()
