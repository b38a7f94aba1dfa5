"""params.yaml's schema: every section a typed, frozen pydantic model, read by attribute from load
to use (`run_cfg.loss.aux.start_epoch`), with the checks that need several fields as validators
beside them.

`RunConfig` is what one run reads: the recipe (`model`, `loss`, `train`, `augment`, `eval`) after
inheritance, the data set's overrides and its schedule scale, with the data set's own keys, the
experiment and the plugin files. Every stage takes it. This module is in every stage's code
closure on purpose: the schema decides what a run reads, so a change of it (not of its comments or
docstrings) rebuilds. Loading, inheritance and resolution (core/config.py) are not: they only
produce the values, which each stage's fingerprint records as they are.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ccreid.core.registry import member_ref

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
# Finite: an infinite weight, rate or scale passes "> 0" but breaks the arithmetic it feeds.
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, lt=2**64)]  # what both NumPy's and torch's generators accept
# YAML 1.1 (PyYAML) reads an unquoted `off` as False, and DVC's `-S` rewrites params.yaml unquoted.
Precision = Annotated[Literal["bf16", "fp16", "off"], BeforeValidator(lambda value: "off" if value is False else value)]
# A count that is an integer, not a flag (YAML's `yes` is a bool, and a bool is an int in Python).
Count = Annotated[int, Field(strict=True)]


class Strict(BaseModel):
    """A section of params.yaml: no unknown keys, frozen once validated."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


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

    @property
    def backbone_name(self) -> str:
        """The backbone's registry name (the key may also give its arguments)."""
        return member_ref(self.backbone)[0]


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

    model_config = ConfigDict(extra="allow", strict=False, frozen=True)

    id: IdLossCfg
    triplet: TripletCfg
    aux: AuxCfg
    distill: DistillCfg
    clothes: ClothesCfg
    adversarial: AdversarialCfg

    def check(self, problem: Problem, train: TrainCfg) -> None:
        """A loss switched on that would never run or add nothing."""
        past_the_end = f"at or past train.epochs = {problem.shown('train.epochs')} (epochs count from 0)"
        if self.clothes.enabled and self.clothes.start_epoch >= train.epochs:
            problem(
                "loss.clothes.start_epoch",
                f"{past_the_end}: the clothes classifier and the adversarial loss would never start",
            )
        if (self.aux.enabled or self.distill.enabled) and self.aux.start_epoch >= train.epochs:
            problem("loss.aux.start_epoch", f"{past_the_end}: the auxiliary head's losses would never start")
        if self.adversarial.enabled and not self.clothes.enabled:
            problem(
                "loss.adversarial.enabled",
                "the adversarial loss needs the clothes classifier, and "
                "loss.clothes.enabled is false: it would never run; enable both or neither",
            )
        elif self.adversarial.enabled and self.adversarial.weight == 0:
            problem(
                "loss.adversarial.weight",
                "the adversarial loss is enabled but would add nothing; "
                "give it a weight or set loss.adversarial.enabled: false",
            )
        for name, section in (("aux", self.aux), ("distill", self.distill), ("triplet", self.triplet)):
            if section.enabled and section.weight == 0:
                problem(
                    f"loss.{name}.weight",
                    f"loss.{name} is enabled but would add nothing; give it a weight or set loss.{name}.enabled: false",
                )
        if self.triplet.enabled and train.images_per_id < 2:
            problem(
                "train.images_per_id",
                "the triplet loss (loss.triplet.enabled) needs two images of an "
                "identity per batch: with one it has no positive pairs",
            )
        if self.triplet.enabled and train.ids_per_batch < 2:
            problem(
                "train.ids_per_batch",
                "the triplet loss (loss.triplet.enabled) needs two identities per "
                "batch: with one it has no negatives and adds nothing",
            )

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
    milestones: tuple[PositiveInt, ...]
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

    def check(self, problem: Problem, unscaled: TrainCfg) -> None:
        """A schedule step that would never happen, or a batch BatchNorm cannot split."""
        past_the_end = f"at or past train.epochs = {problem.shown('train.epochs')} (epochs count from 0)"
        milestones = unscaled.milestones
        if any(later <= earlier for earlier, later in zip(milestones, milestones[1:])):
            problem("train.milestones", "not in increasing order; list each milestone once, sorted")
        late = [m for m in self.milestones if m >= self.epochs]
        if late:
            problem("train.milestones", f"milestone(s) {late} {past_the_end}: the learning rate would never drop there")
        if self.milestones and self.gamma == 1.0:
            problem(
                "train.gamma", "multiplying by 1 at each milestone changes nothing; lower it or drop the milestones"
            )
        if self.warmup_epochs and self.warmup_epochs >= self.epochs:
            problem("train.warmup_epochs", f"{past_the_end}: the learning rate would never reach train.lr")
        if self.val_every > self.epochs:
            problem(
                "train.val_every",
                f"past train.epochs = {problem.shown('train.epochs')}: validation would never run (0 turns it off)",
            )
        batch = self.ids_per_batch * self.images_per_id
        if self.bn_batch and batch % self.bn_batch:
            problem(
                "train.bn_batch",
                f"does not divide the batch of train.ids_per_batch × train.images_per_id = {batch} images; "
                "make it a divisor (or 0: the whole batch)",
            )


class ScaledTrainCfg(TrainCfg):
    """A run's train section, after its data set's schedule scale: a milestone may round to 0
    there (a tiny test schedule), the rate then lowered from the first epoch."""

    milestones: tuple[NonNegativeInt, ...]


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
    extra: tuple[MemberSpec, ...]

    def check(self, problem: Problem, size: tuple[int, int]) -> None:
        """A crop that would change nothing at the data set's image size."""
        height, width = size
        if not math.isfinite(height * self.crop.scale):
            problem(
                "augment.crop.scale", "upscales the image past any size; a crop scale is a small factor (CAL: 1.125)"
            )
        elif self.crop.p > 0 and (round(height * self.crop.scale), round(width * self.crop.scale)) == (height, width):
            problem(
                "augment.crop.scale",
                f"upscaled by it, a {height}×{width} image stays {height}×{width}: "
                "the random crop (augment.crop.p > 0) would change nothing; raise it or set augment.crop.p: 0",
            )


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


class EntryNotes(Strict):
    """What an experiment entry says about itself (shown in listings and tables; trains nothing)."""

    note: str = ""
    reported: ReportedCfg | None = None


class SynthCfg(Strict):
    """The embedded synthetic set's drawing (datasets.<name>.synth; ccreid.data.synthetic draws it)."""

    seed: Annotated[Count, Field(ge=0)]
    train_ids: Annotated[Count, Field(ge=1)]
    val_ids: Annotated[Count, Field(ge=0)]
    test_ids: Annotated[Count, Field(ge=1)]
    images_per_camera: Annotated[Count, Field(ge=1)]
    height: Annotated[Count, Field(ge=32)]
    width: Annotated[Count, Field(ge=16)]
    jpeg_quality: Annotated[Count, Field(ge=1, le=100)]
    palette_size: Annotated[Count, Field(ge=2)]  # outfits shared by everyone: at least two


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
    synth: SynthCfg | None = None
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


# --- one run ---------------------------------------------------------------------------------
class DatasetSection(Strict):
    """What a run reads of its data set (its name and preparation keys, not its notes)."""

    name: str
    layout: str
    root: str
    size: tuple[PositiveInt, PositiveInt]
    schedule_scale: PositiveFloat
    on_bad_image: Literal["error", "skip"]


class PluginFiles(Strict):
    """params.yaml's plugin files (`plugins:`) and the folder they are relative to."""

    root: str
    files: tuple[str, ...]


class Problem:
    """Collects one run config's meaning problems, each a line naming the run, the dotted key and
    its value (and the value before the data set's schedule scale, when that changed it)."""

    def __init__(self, run: RunConfig, unscaled: RecipeCfg, where: str):
        self.run, self.unscaled, self.where = run, unscaled, where
        self.lines: list[str] = []

    def shown(self, key: str) -> str:
        value, scaled = _value(self.unscaled, key), _value(self.run, key)
        if value == scaled:
            return repr(value)
        dataset = self.run.dataset
        return f"{value!r} ({scaled!r} after datasets.{dataset.name}.schedule_scale {dataset.schedule_scale})"

    def __call__(self, key: str, text: str) -> None:
        self.lines.append(f"{self.where}: key '{key}' = {self.shown(key)}: {text}")


def _value(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return list(cfg) if isinstance(cfg, tuple) else cfg


class RunConfig(RecipeCfg):
    """Everything one run reads: the recipe after inheritance, the data set's overrides and its
    schedule scale (core/config.py: Params.run_config), the data set, the experiment, the plugins.

    Validated with the context `unscaled` (the recipe before the schedule scale), `where` (the
    run, for messages) and `train_ids` (a synthetic set's training identities, known before it is
    prepared), its validator names settings valid one by one that together would do nothing."""

    train: ScaledTrainCfg
    dataset: DatasetSection
    experiment: str
    plugins: PluginFiles

    @model_validator(mode="after")
    def _meaning(self, info: ValidationInfo) -> RunConfig:
        context = info.context or {}
        if context.get("scaled"):
            return self
        where = context.get("where", f"experiment {self.experiment!r} on data set {self.dataset.name!r}")
        problem = Problem(self, context.get("unscaled", self), where)
        self.train.check(problem, problem.unscaled.train)
        self.loss.check(problem, self.train)
        train_ids = context.get("train_ids")
        if train_ids is not None and self.train.ids_per_batch > train_ids:
            problem(
                "train.ids_per_batch",
                f"the data set's training split has {train_ids} identities "
                f"(datasets.{self.dataset.name}.synth.train_ids): no P×K batch can be filled; lower it",
            )
        self.augment.check(problem, self.dataset.size)
        if problem.lines:
            raise PydanticCustomError("meaning", "{lines}", {"lines": "\n".join(problem.lines)})
        return self

    def changed(self, overrides: dict) -> RunConfig:
        """This config with `overrides` deep-merged, their types validated. Not the meaning checks:
        those ran on the recipe before its schedule scale, and these values are after it; a change
        here is the caller's (a smoke run's memory budget, a test's weights), not an entry's."""
        return type(self).model_validate(deep_merge(self.model_dump(mode="json"), overrides), context={"scaled": True})


def deep_merge(base: dict, override: dict) -> dict:
    """`override` deep-merged over a copy of `base`: mappings merge key by key, anything else
    replaces (params.yaml's inheritance: `base:` then the entry's own keys)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
