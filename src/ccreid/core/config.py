"""params.yaml: schema, inheritance (`base:` + deep merge) and the resolved config of one run.

The schema lives here as pydantic models with ``extra="forbid"``: an unknown key or a wrong type
is reported with the experiment and the dotted key before any work starts. Values live only in
params.yaml (every field is required), so the file stays the single source of truth.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import Registry, member_ref, registry
from ccreid.core.sections import train_section

DEFAULT_PARAMS = Path("params.yaml")
META_KEYS = ("base", "note", "reported", "seeds")  # experiment keys that describe, not configure
SEED_MARK = "@"  # run "212@2": experiment 212 trained with seed 2 (results/<ds>/212@2/)

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
# Finite: an infinite weight, rate or scale passes "> 0" but breaks the arithmetic it feeds.
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, lt=2**64)]  # what both NumPy's and torch's generators accept
# YAML 1.1 (PyYAML) reads an unquoted `off` as False, and DVC's `-S` rewrites params.yaml unquoted.
Precision = Annotated[Literal["bf16", "fp16", "off"], BeforeValidator(lambda value: "off" if value is False else value)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


def _member_spec(value: str | dict[str, Any]) -> str | dict[str, Any]:
    member_ref(value)  # a name, or a mapping with `name:` and the member's arguments
    return value


# A registry member (core/registry.py): its name, or {name: ..., <argument>: value, ...}. Checked
# against the registry when params.yaml loads (Params._check_members).
MemberSpec = Annotated[str | dict[str, Any], AfterValidator(_member_spec)]


# --- model -----------------------------------------------------------------------------------
class MultiscaleCfg(Strict):
    enabled: bool
    block: MemberSpec  # models/blocks/
    gate: MemberSpec  # models/gates/
    blocks: PositiveInt
    reduction: PositiveInt


class ModelCfg(Strict):
    backbone: MemberSpec  # models/backbones/
    pretrained: str
    width: PositiveFloat  # channel scale of the backbone; 1.0 = the published network
    last_stride: Literal[1, 2]
    pooling: MemberSpec  # models/poolings/
    multiscale: MultiscaleCfg
    correction: bool
    neck_bias: bool  # train the BN neck's bias (CAL) or freeze it at 0 (BoT)
    classifier_bias: bool  # identity classifier with a bias (CAL) or without (BoT)


# --- losses ----------------------------------------------------------------------------------
class IdLossCfg(Strict):
    label_smoothing: Fraction


class ClothesCfg(Strict):
    enabled: bool
    start_epoch: NonNegativeInt
    scale: PositiveFloat
    label_smoothing: Fraction
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    # constant: its own lr throughout (CAL's optimizer_cc has no scheduler); main: decays with
    # train.milestones like the backbone.
    lr_schedule: Literal["constant", "main"]


class AdversarialCfg(Strict):
    enabled: bool
    epsilon: Fraction
    weight: NonNegativeFloat


class TripletCfg(Strict):
    enabled: bool
    weight: NonNegativeFloat
    margin: NonNegativeFloat


class AuxCfg(Strict):
    enabled: bool
    start_epoch: NonNegativeInt
    weight: NonNegativeFloat


class DistillCfg(Strict):
    enabled: bool
    weight: NonNegativeFloat
    temperature: PositiveFloat


class LossCfg(Strict):
    """The loss terms (engine/losses/), in the order they add up: the clothes classifier trains
    before the adversarial term uses it. A plugin's term is one more section, named as its term,
    with `enabled` and its arguments; plugin terms come after these, by name."""

    model_config = ConfigDict(extra="allow", strict=False)

    id: IdLossCfg
    triplet: TripletCfg
    aux: AuxCfg
    distill: DistillCfg
    clothes: ClothesCfg
    adversarial: AdversarialCfg

    @model_validator(mode="after")
    def _plugin_terms(self) -> LossCfg:
        extra = self.__pydantic_extra__ or {}
        for name, section in extra.items():
            if not (isinstance(section, dict) and isinstance(section.get("enabled"), bool)):
                raise ValueError(f"loss.{name}: a loss term's section is a mapping with `enabled: true|false`")
        self.__pydantic_extra__ = dict(sorted(extra.items()))
        return self


# --- training --------------------------------------------------------------------------------
# channels_last: the NHWC layout fast convolution kernels want on GPUs; auto = on CUDA only.
# It changes which kernels run, so float results may differ: part of the fingerprints.
MemoryFormat = Literal["auto", "channels_last", "contiguous"]


class TrainCfg(Strict):
    seed: Seed
    epochs: NonNegativeInt  # 0: the network as initialised, saved untrained (the floor a result must beat)
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    milestones: list[PositiveInt]
    gamma: PositiveFloat
    warmup_epochs: NonNegativeInt
    ids_per_batch: PositiveInt
    images_per_id: PositiveInt
    amp: Precision  # autocast on any device: bf16 | fp16 (with the grad scaler) | off
    memory_format: MemoryFormat
    # BatchNorm statistics over consecutive sub-batches of this size (ghost BatchNorm): the
    # shards that DDP ranks without SyncBN would see. 0 = the whole per-process batch.
    bn_batch: NonNegativeInt
    # torch's CPU threads: float reductions follow the thread count, so it changes the weights
    # and is part of the training fingerprint; every orchestrator runs with this value.
    cpu_threads: PositiveInt
    # Where the training images live, per process: in memory up to this size, else streamed
    # from images.h5. Never changes a result.
    memory_budget_gb: NonNegativeFloat
    # Evaluate on the data set's validation split every N epochs (0 = off); logged, never used
    # to pick the model (the final model is the last epoch's).
    val_every: NonNegativeInt


class CropCfg(Strict):
    p: Fraction
    scale: Annotated[float, Field(ge=1.0)]
    interpolation: Literal["bilinear", "nearest"]  # of the upscale before the crop (CAL: bilinear)


class ErasingCfg(Strict):
    p: Fraction
    area: tuple[Fraction, Fraction]
    aspect: tuple[PositiveFloat, PositiveFloat]
    # cal: a box that does not fit is redrawn (up to 100 tries); kornia: aspect below/above 1
    # with equal chance, sides clamped to the image.
    sampling: Literal["cal", "kornia"]
    fill: tuple[float, float, float]  # per channel, written into the normalised tensor


class AugmentCfg(Strict):
    flip: Fraction
    crop: CropCfg
    erasing: ErasingCfg
    # More augmentations on [0, 1] images, in order, after the crop and before the normalisation:
    # kornia.augmentation classes or plugin members, each {name: ..., <keyword argument>: value}.
    extra: list[MemberSpec]


class EvalCfg(Strict):
    distance: Literal["cosine", "euclidean"]
    rerank: bool  # k-reciprocal re-ranking (Zhong et al., CVPR 2017) instead of `distance`
    flip: bool
    single_shot: bool
    batch_size: PositiveInt
    amp: Precision  # extraction precision, on any device
    memory_format: MemoryFormat
    # Evaluate the test protocols every N epochs while training (as CAL does; 0 = off): logged,
    # and the report's "best on test" column. Never picks the model: metrics.json is the last epoch.
    test_every: NonNegativeInt
    cpu_threads: PositiveInt  # torch's CPU threads while extracting (they change float sums)


class RecipeCfg(Strict):
    """What an experiment configures: the resolved `defaults` + overrides."""

    model: ModelCfg
    loss: LossCfg
    train: TrainCfg
    augment: AugmentCfg
    eval: EvalCfg


class ReportedCfg(Strict):
    dataset: str
    mAP: Fraction
    R1: Fraction


class DatasetCfg(Strict):
    layout: str
    root: str
    size: tuple[PositiveInt, PositiveInt]
    # Multiplies epochs, milestones and start epochs so a small demo set keeps the recipe's shape.
    schedule_scale: PositiveFloat = 1.0
    # Deep-merged over every experiment's recipe on this data set (e.g. a narrow backbone for the
    # CPU demo); validated like the experiments themselves.
    overrides: dict[str, Any] = Field(default_factory=dict)
    on_bad_image: Literal["error", "skip"] = "error"
    synth: dict[str, Any] | None = None
    obtain: str = ""
    # Training seeds of some experiments on this data set only, by id (entries based on them do
    # not inherit these): the demo gives the comparison its report headlines seed-to-seed spread.
    seeds: dict[str, Any] = Field(default_factory=dict)


TableName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]  # a Snakemake rule builds each table


class DefaultCfg(Strict):
    """What `snakemake --cores all` builds: one table on one data set; the report's reference."""

    dataset: str
    table: TableName
    baseline: str  # drawn first and in bold in the report's CMC plot


class RunCfg(Strict):
    dataset: str
    # `dvc exp run -S run.exp=214` writes an unquoted number: take it as the id it names.
    exp: Annotated[str, BeforeValidator(lambda value: str(value) if isinstance(value, int) else value)]


# --- loading and resolution ------------------------------------------------------------------
def _describe(error: ValidationError, where: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if not key:  # the section itself is wrong (not a mapping)
            lines.append(f"{where} = {item.get('input')!r}: {item['msg']}")
        elif item["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key '{key}' (check its spelling against defaults)")
        elif item["type"] == "missing":
            lines.append(f"{where}: missing key '{key}'")
        else:
            lines.append(f"{where}: key '{key}' = {item.get('input')!r}: {item['msg']}")
    return "\n".join(lines)


def deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Params:
    """A parsed, validated params.yaml."""

    def __init__(self, raw: dict, source: str = "params.yaml"):
        self.source = source
        if not isinstance(raw, dict):
            raise CCReIDError(f"{source}: expected a mapping at the top level")
        allowed = {"run", "datasets", "defaults", "experiments", "tables", "default", "plugins"}
        unknown = set(raw) - allowed
        if unknown:
            raise CCReIDError(f"{source}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        for key in ("datasets", "defaults", "experiments"):
            if not isinstance(raw.get(key), dict):
                raise CCReIDError(f"{source}: '{key}' must be a mapping")
        self.raw = raw
        self._run_configs: dict[tuple[str, str], dict] = {}
        bad_ids = [k for k in raw["experiments"] if not isinstance(k, str)]
        if bad_ids:
            raise CCReIDError(
                f"{source}: experiment id {bad_ids[0]!r} is not a string; quote it "
                f"('\"{bad_ids[0]}\":') — unquoted numbers break DVC templating and Snakemake wildcards"
            )
        self.datasets = {}
        for name, spec in raw["datasets"].items():
            try:
                self.datasets[name] = DatasetCfg.model_validate(spec)
            except ValidationError as error:
                raise CCReIDError(_describe(error, f"{source}: datasets.{name}")) from None
        try:
            self.run = RunCfg.model_validate(raw.get("run", {}))
        except ValidationError as error:
            raise CCReIDError(_describe(error, f"{source}: run")) from None
        self.plugins = _plugins(raw.get("plugins", []), source)
        self.members: Registry = registry(tuple(self.plugins["files"]), self.plugins["root"])
        self._check_recipe(raw["defaults"], f"{source}: defaults")
        for exp in raw["experiments"]:
            self.resolve(exp)
        for name, data in self.datasets.items():
            unregistered = [exp for exp in data.seeds if exp not in raw["experiments"]]
            if unregistered:
                raise CCReIDError(
                    f"{source}: datasets.{name}.seeds names experiment {unregistered[0]!r}, which is not "
                    f"registered (registered: {', '.join(raw['experiments'])})"
                )
            try:
                self.members.member("layout", data.layout, f"datasets.{name}.layout")
            except CCReIDError as error:
                raise CCReIDError(f"{source}: {error}") from None
            for exp in raw["experiments"]:
                for run in self.runs(exp, name):
                    self.run_config(name, run)
        self.tables = _tables(raw.get("tables"), raw["experiments"], source)
        try:
            self.default = DefaultCfg.model_validate(raw.get("default"))
        except ValidationError as error:
            raise CCReIDError(_describe(error, f"{source}: default")) from None
        self.dataset(self.default.dataset)
        for key, value, known in (
            ("table", self.default.table, self.tables),
            ("baseline", self.default.baseline, raw["experiments"]),
        ):
            if value not in known:
                raise CCReIDError(f"{source}: default.{key} = {value!r} is not defined; defined: {', '.join(known)}")

    @staticmethod
    def _check_recipe(recipe: dict, where: str) -> RecipeCfg:
        try:
            return RecipeCfg.model_validate(recipe)
        except ValidationError as error:
            raise CCReIDError(_describe(error, where)) from None

    def _check_members(self, recipe: dict, where: str) -> dict:
        """Every member the recipe names exists (in ccreid or a plugin) and accepts its arguments."""
        problems = []
        model, multiscale = recipe["model"], recipe["model"]["multiscale"]
        named = [
            ("backbone", model["backbone"], "model.backbone"),
            ("pooling", model["pooling"], "model.pooling"),
            ("block", multiscale["block"], "model.multiscale.block"),
            ("gate", multiscale["gate"], "model.multiscale.gate"),
        ]
        named += [
            ("loss", {"name": name, **{k: v for k, v in section.items() if k != "enabled"}}, f"loss.{name}")
            for name, section in recipe["loss"].items()
        ]
        named += [("augmentation", spec, f"augment.extra[{i}]") for i, spec in enumerate(recipe["augment"]["extra"])]
        for kind, spec, key in named:
            name, arguments = member_ref(spec)
            try:
                self.members.check_arguments(self.members.member(kind, name, key), arguments, key)
            except CCReIDError as error:
                problems.append(f"{where}: {error}")
        if problems:
            raise CCReIDError("\n".join(problems))
        return recipe

    @property
    def experiments(self) -> list[str]:
        return list(self.raw["experiments"])

    def table(self, name: str) -> list[str]:
        """The experiments of a table of params.yaml `tables:`, in its order."""
        if name not in self.tables:
            raise CCReIDError(f"unknown table {name!r} in {self.source}; tables: {', '.join(self.tables)}")
        return self.tables[name]

    def unlisted(self) -> list[str]:
        """Registered experiments in no table: they run only when named as a target."""
        listed = {exp for ids in self.tables.values() for exp in ids}
        return [exp for exp in self.experiments if exp not in listed]

    def seeds(self, exp: str, dataset: str | None = None) -> list[int] | None:
        """The experiment's training seeds: on `dataset`, those its `seeds:` lists for the
        experiment; else `seeds:` of the nearest entry up its base chain."""
        if dataset is not None and exp in self.dataset(dataset).seeds:
            return _checked_seeds(self.dataset(dataset).seeds[exp], f"{self.source}: datasets.{dataset}.seeds.{exp}")
        for name in reversed(self.chain(exp)):
            seeds = self.entry(name).get("seeds")
            if seeds is not None:
                return _checked_seeds(seeds, f"{self.source}: experiment {name!r}: key 'seeds'")
        return None

    def runs(self, exp: str, dataset: str | None = None) -> list[str]:
        """Run names of an experiment (on `dataset`): itself (its first seed), then
        `<exp>@<seed>` per further seed."""
        seeds = self.seeds(exp, dataset) or []
        return [exp] + [f"{exp}{SEED_MARK}{seed}" for seed in seeds[1:]]

    @property
    def all_runs(self) -> list[str]:
        """Every run on any data set."""
        on = [None, *self.datasets]
        return list(dict.fromkeys(run for exp in self.experiments for dataset in on for run in self.runs(exp, dataset)))

    def entry(self, exp: str) -> dict:
        experiments = self.raw["experiments"]
        if exp not in experiments:
            raise CCReIDError(f"unknown experiment {exp!r} in {self.source}; registered: {', '.join(experiments)}")
        entry = experiments[exp] or {}
        if not isinstance(entry, dict):
            raise CCReIDError(f"{self.source}: experiment {exp!r} must be a mapping")
        return entry

    def chain(self, exp: str) -> list[str]:
        """The experiment and its ancestors, root first."""
        chain = [exp]
        while True:
            base = self.entry(chain[-1]).get("base")
            if base is None:
                return chain[::-1]
            base = str(base)
            if base not in self.raw["experiments"]:
                raise CCReIDError(f"{self.source}: experiment {chain[-1]!r} has base {base!r}, which is not registered")
            if base in chain:
                cycle = " -> ".join(chain + [base])
                raise CCReIDError(f"{self.source}: experiment {exp!r} has a cyclic base chain: {cycle}")
            chain.append(base)

    def resolve(self, run: str, dataset: str | None = None) -> dict:
        """The recipe of an experiment (or of a run `<exp>@<seed>`): defaults deep-merged with each
        override along its base chain; train.seed is the run's seed (an experiment's first seed,
        on `dataset`)."""
        exp, seed = split_run(run)
        seeds = self.seeds(exp, dataset)
        if seed is None and seeds:
            seed = seeds[0]
        recipe = copy.deepcopy(self.raw["defaults"])
        for name in self.chain(exp):
            entry = self.entry(name)
            overrides = {k: v for k, v in entry.items() if k not in META_KEYS}
            recipe = deep_merge(recipe, overrides)
            if "reported" in entry:
                try:
                    ReportedCfg.model_validate(entry["reported"])
                except ValidationError as error:
                    raise CCReIDError(_describe(error, f"{self.source}: experiment {name!r}: reported")) from None
        if seed is not None:
            recipe["train"]["seed"] = seed
        where = f"{self.source}: experiment {exp!r}"
        return self._check_members(self._check_recipe(recipe, where).model_dump(mode="json"), where)

    def dataset(self, name: str) -> DatasetCfg:
        if name not in self.datasets:
            raise CCReIDError(f"unknown data set {name!r} in {self.source}; defined: {', '.join(self.datasets)}")
        return self.datasets[name]

    def run_config(self, dataset: str, exp: str) -> dict:
        """Everything one run reads: the recipe with the data set's overrides and schedule scale.
        Resolved once per run (planning asks hundreds of times); each call gets its own copy."""
        key = (dataset, exp)
        if key not in self._run_configs:
            self._run_configs[key] = self._resolved_run_config(dataset, exp)
        return copy.deepcopy(self._run_configs[key])

    def _resolved_run_config(self, dataset: str, exp: str) -> dict:
        data = self.dataset(dataset)
        where = f"{self.source}: datasets.{dataset}.overrides"
        recipe = self._check_recipe(deep_merge(self.resolve(exp, dataset), data.overrides), where).model_dump(
            mode="json"
        )
        self._check_members(recipe, f"{self.source}: experiment {exp!r} on data set {dataset!r}")
        unscaled = copy.deepcopy(recipe)
        try:
            recipe["train"] = scale_schedule(recipe["train"], data.schedule_scale)
            for loss in ("clothes", "aux"):
                recipe["loss"][loss]["start_epoch"] = _scaled(recipe["loss"][loss]["start_epoch"], data.schedule_scale)
        except OverflowError:
            raise CCReIDError(
                f"{self.source}: datasets.{dataset}: key 'schedule_scale' = {data.schedule_scale!r}: "
                "scales the schedule past any number of epochs"
            ) from None
        recipe["dataset"] = {
            "name": dataset,
            **data.model_dump(mode="json", exclude={"synth", "obtain", "overrides", "seeds"}),
        }
        recipe["experiment"] = exp
        recipe["plugins"] = self.plugins
        train_ids = (data.synth or {}).get("train_ids")
        _check_meaning(
            recipe,
            unscaled,
            f"{self.source}: experiment {exp!r} on data set {dataset!r}",
            train_ids if isinstance(train_ids, int) and not isinstance(train_ids, bool) else None,
        )
        train = recipe["train"]
        if train["bn_batch"] and (train["ids_per_batch"] * train["images_per_id"]) % train["bn_batch"]:
            raise CCReIDError(
                f"{self.source}: experiment {exp!r} on data set {dataset!r}: key 'train.bn_batch' = "
                f"{train['bn_batch']} does not divide the batch of train.ids_per_batch × train.images_per_id = "
                f"{train['ids_per_batch'] * train['images_per_id']} images; make it a divisor (or 0: the whole batch)"
            )
        return recipe


def _value(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def _check_meaning(run_cfg: dict, unscaled: dict, where: str, train_ids: int | None) -> None:
    """Settings valid one by one that together leave a loss, module or schedule step doing
    nothing, or a batch that cannot be filled: the schema cannot see these, so each is an error
    naming the experiment and the dotted key (with its value before the data set's schedule
    scale, when that changed it). `train_ids`: training identities, when known before prepare."""
    problems = []
    dataset = run_cfg["dataset"]

    def shown(key: str) -> str:
        value, scaled = _value(unscaled, key), _value(run_cfg, key)
        if value == scaled:
            return repr(value)
        return f"{value!r} ({scaled!r} after datasets.{dataset['name']}.schedule_scale {dataset['schedule_scale']})"

    def problem(key: str, text: str) -> None:
        problems.append(f"{where}: key '{key}' = {shown(key)}: {text}")

    train, loss, augment = run_cfg["train"], run_cfg["loss"], run_cfg["augment"]
    epochs = train["epochs"]
    past_the_end = f"at or past train.epochs = {shown('train.epochs')} (epochs count from 0)"
    # --- schedule
    milestones = unscaled["train"]["milestones"]
    if any(later <= earlier for earlier, later in zip(milestones, milestones[1:])):
        problem("train.milestones", "not in increasing order; list each milestone once, sorted")
    late = [m for m in train["milestones"] if m >= epochs]
    if late:
        problem("train.milestones", f"milestone(s) {late} {past_the_end}: the learning rate would never drop there")
    if train["milestones"] and train["gamma"] == 1.0:
        problem("train.gamma", "multiplying by 1 at each milestone changes nothing; lower it or drop the milestones")
    if train["warmup_epochs"] and train["warmup_epochs"] >= epochs:
        problem("train.warmup_epochs", f"{past_the_end}: the learning rate would never reach train.lr")
    if train["val_every"] > epochs:
        problem(
            "train.val_every",
            f"past train.epochs = {shown('train.epochs')}: validation would never run (0 turns it off)",
        )
    clothes, adversarial, aux, distill = (loss[name] for name in ("clothes", "adversarial", "aux", "distill"))
    if clothes["enabled"] and clothes["start_epoch"] >= epochs:
        problem(
            "loss.clothes.start_epoch",
            f"{past_the_end}: the clothes classifier and the adversarial loss would never start",
        )
    if (aux["enabled"] or distill["enabled"]) and aux["start_epoch"] >= epochs:
        problem("loss.aux.start_epoch", f"{past_the_end}: the auxiliary head's losses would never start")
    # --- losses switched on that would add nothing
    if adversarial["enabled"] and not clothes["enabled"]:
        problem(
            "loss.adversarial.enabled",
            "the adversarial loss needs the clothes classifier, and "
            "loss.clothes.enabled is false: it would never run; enable both or neither",
        )
    elif adversarial["enabled"] and adversarial["weight"] == 0:
        problem(
            "loss.adversarial.weight",
            "the adversarial loss is enabled but would add nothing; "
            "give it a weight or set loss.adversarial.enabled: false",
        )
    for name, section in (("aux", aux), ("distill", distill), ("triplet", loss["triplet"])):
        if section["enabled"] and section["weight"] == 0:
            problem(
                f"loss.{name}.weight",
                f"loss.{name} is enabled but would add nothing; give it a weight or set loss.{name}.enabled: false",
            )
    if loss["triplet"]["enabled"] and train["images_per_id"] < 2:
        problem(
            "train.images_per_id",
            "the triplet loss (loss.triplet.enabled) needs two images of an "
            "identity per batch: with one it has no positive pairs",
        )
    if loss["triplet"]["enabled"] and train["ids_per_batch"] < 2:
        problem(
            "train.ids_per_batch",
            "the triplet loss (loss.triplet.enabled) needs two identities per "
            "batch: with one it has no negatives and adds nothing",
        )
    # --- the batch
    if train_ids is not None and train["ids_per_batch"] > train_ids:
        problem(
            "train.ids_per_batch",
            f"the data set's training split has {train_ids} identities "
            f"(datasets.{dataset['name']}.synth.train_ids): no P×K batch can be filled; lower it",
        )
    # --- augmentations switched on that would change nothing
    height, width = dataset["size"]
    crop = augment["crop"]
    if not math.isfinite(height * crop["scale"]):
        problem("augment.crop.scale", "upscales the image past any size; a crop scale is a small factor (CAL: 1.125)")
    elif crop["p"] > 0 and (round(height * crop["scale"]), round(width * crop["scale"])) == (height, width):
        problem(
            "augment.crop.scale",
            f"upscaled by it, a {height}×{width} image stays {height}×{width}: "
            "the random crop (augment.crop.p > 0) would change nothing; raise it or set augment.crop.p: 0",
        )
    if problems:
        raise CCReIDError("\n".join(problems))


PLUGINS_DIR = "plugins"  # beside params.yaml: DVC's config stage depends on this folder


def _plugins(files, source: str) -> dict:
    """params.yaml `plugins:`: files of the user's own members, under plugins/ beside params.yaml
    (the folder DVC's config stage depends on, so both orchestrators see their code)."""
    if not (isinstance(files, list) and all(isinstance(f, str) and f.endswith(".py") for f in files)):
        raise CCReIDError(
            f"{source}: plugins = {files!r}: expected a list of Python files (paths relative to {source})"
        )
    outside = [f for f in files if Path(f).parts[:1] != (PLUGINS_DIR,) or ".." in Path(f).parts]
    if outside:
        raise CCReIDError(
            f"{source}: plugins: {outside[0]!r} is not in the folder {PLUGINS_DIR}/ beside {Path(source).name}: "
            "move it there (DVC's stages depend on that folder, so a change of its code is seen)"
        )
    return {"root": str(Path(source).resolve().parent), "files": list(files)}


def _tables(tables, experiments: dict, source: str) -> dict[str, list[str]]:
    """params.yaml `tables:`: name -> experiment ids; each id registered, each table a rule name."""
    if not isinstance(tables, dict) or not tables:
        raise CCReIDError(f"{source}: 'tables' must be a mapping of table names to lists of experiment ids")
    checked = {}
    for name, ids in tables.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise CCReIDError(f"{source}: tables: {name!r} is not a valid table name (letters, digits, _)")
        if not (isinstance(ids, list) and ids and all(isinstance(exp, str) for exp in ids)):
            raise CCReIDError(f"{source}: tables.{name} = {ids!r}: expected a non-empty list of quoted experiment ids")
        unregistered = [exp for exp in ids if exp not in experiments]
        if unregistered:
            raise CCReIDError(
                f"{source}: tables.{name} names experiment {unregistered[0]!r}, which is not registered "
                f"(registered: {', '.join(experiments)})"
            )
        checked[name] = ids
    return checked


def _checked_seeds(seeds, where: str) -> list[int]:
    if (
        not isinstance(seeds, list)
        or not seeds
        or len(set(seeds)) != len(seeds)
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**64 for s in seeds)
    ):
        raise CCReIDError(f"{where} = {seeds!r}: expected a non-empty list of distinct integers from 0 to 2**64 - 1")
    return seeds


def split_run(run: str) -> tuple[str, int | None]:
    """ "212@2" -> ("212", 2); "212" -> ("212", None)."""
    exp, mark, seed = str(run).partition(SEED_MARK)
    if not mark:
        return exp, None
    if not seed.lstrip("-").isdigit():
        raise CCReIDError(f"run {run!r}: after '{SEED_MARK}' comes a training seed (an integer)")
    return exp, int(seed)


def _scaled(epoch: int, scale: float) -> int:
    return int(round(epoch * scale))


def scale_schedule(train: dict, scale: float) -> dict:
    train = dict(train)
    train["epochs"] = max(1, _scaled(train["epochs"], scale)) if train["epochs"] else 0  # 0 stays untrained
    train["milestones"] = [_scaled(m, scale) for m in train["milestones"]]
    train["warmup_epochs"] = _scaled(train["warmup_epochs"], scale)
    return train


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key, mapping: str, first_line: int, second_line: int):
        where = f"in '{mapping}'" if mapping else "at the top level"
        lines = f"lines {first_line} and {second_line}" if first_line != second_line else f"both on line {first_line}"
        super().__init__(
            f"key {key!r} appears twice {where} ({lines}): YAML would keep only the second, silently; "
            "merge the two or delete one"
        )


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping. Plain YAML keeps the last
    one: a second "213": block, or lr: twice in a section, would replace the first unseen."""

    def construct_document(self, node):
        self._mapping_paths = {}
        self._record_paths(node, "")
        return super().construct_document(node)

    def _record_paths(self, node, path: str) -> None:
        """The dotted path of every mapping node, for messages (anchors keep their first path)."""
        if isinstance(node, yaml.MappingNode) and id(node) not in self._mapping_paths:
            self._mapping_paths[id(node)] = path
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                self._record_paths(value_node, f"{path}.{key}" if path else key)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._record_paths(item, f"{path}[{index}]")

    def construct_mapping(self, node, deep=False):
        first_lines: dict[Hashable, int] = {}  # key -> line of its first occurrence
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` overrides on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first_lines:
                    raise DuplicateKeyError(key, self._mapping_paths.get(id(node), "?"), first_lines[key], line)
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                continue
            first_lines[key] = line
        return super().construct_mapping(node, deep)


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    if not path.is_file():
        raise CCReIDError(f"{path}: params file not found (run from the project root or pass --params)")
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except UnicodeDecodeError as error:
        raise CCReIDError(f"{path}: not a text file ({error})") from None
    except DuplicateKeyError as error:
        raise CCReIDError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise CCReIDError(f"{path}: not valid YAML: {error}") from None
    return Params(raw, source=str(path))


def model_owner(params: Params, dataset: str, run: str) -> str:
    """The run whose trained model `run` uses: the first registered experiment (same seed) whose
    training section is identical — 210 → 209 and 218 → 216 (they differ only in evaluation),
    213 → 208 (our readings of the two entries train the same network); itself when unique."""
    exp, seed = split_run(run)
    suffix = "" if seed is None else f"{SEED_MARK}{seed}"
    mine = train_section(params.run_config(dataset, run))
    for candidate in params.experiments:
        if candidate == exp or train_section(params.run_config(dataset, candidate + suffix)) == mine:
            return candidate + suffix
    return run
