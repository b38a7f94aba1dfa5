"""params.yaml: loading, inheritance (`base:` + deep merge) and the resolved config of one run.

The schema is core/schema.py: pydantic models with ``extra="forbid"``, so an unknown key or a
wrong type is reported with the experiment and the dotted key before any work starts. Values live
only in params.yaml (every field is required), so the file stays the single source of truth.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from pathlib import Path

import yaml
from pydantic import ValidationError

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import Registry, member_ref, registry
from ccreid.core.schema import (
    DatasetCfg,
    DefaultCfg,
    EntryNotes,
    PluginFiles,
    RecipeCfg,
    RunCfg,
    RunConfig,
    deep_merge,
)
from ccreid.core.sections import train_section

DEFAULT_PARAMS = Path("params.yaml")
META_KEYS = ("base", "note", "reported", "seeds")  # experiment keys that describe, not configure
SEED_MARK = "@"  # run "212@2": experiment 212 trained with seed 2 (results/<ds>/212@2/)


# --- loading and resolution ------------------------------------------------------------------
def _describe(error: ValidationError, where: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "meaning":  # a RunConfig check: its lines name the run and the keys
            lines.append(item["msg"])
        elif not key:  # the section itself is wrong (not a mapping)
            lines.append(f"{where} = {item.get('input')!r}: {item['msg']}")
        elif item["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key '{key}' (check its spelling against defaults)")
        elif item["type"] == "missing":
            lines.append(f"{where}: missing key '{key}'")
        else:
            lines.append(f"{where}: key '{key}' = {item.get('input')!r}: {item['msg']}")
    return "\n".join(lines)


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
        self._run_configs: dict[tuple[str, str], RunConfig] = {}
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
        self.members: Registry = registry(self.plugins.files, self.plugins.root)
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

    def _check_members(self, recipe: RecipeCfg, where: str) -> RecipeCfg:
        """Every member the recipe names exists (in ccreid or a plugin) and accepts its arguments."""
        problems = []
        model, multiscale = recipe.model, recipe.model.multiscale
        named = [
            ("backbone", model.backbone, "model.backbone"),
            ("pooling", model.pooling, "model.pooling"),
            ("block", multiscale.block, "model.multiscale.block"),
            ("gate", multiscale.gate, "model.multiscale.gate"),
        ]
        named += [
            ("loss", {"name": name, **{k: v for k, v in section.items() if k != "enabled"}}, f"loss.{name}")
            for name, section in recipe.loss.model_dump(mode="json").items()
        ]
        named += [("augmentation", spec, f"augment.extra[{i}]") for i, spec in enumerate(recipe.augment.extra)]
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

    def resolve(self, run: str, dataset: str | None = None) -> RecipeCfg:
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
            try:
                EntryNotes.model_validate({k: entry[k] for k in ("note", "reported") if k in entry})
            except ValidationError as error:
                raise CCReIDError(_describe(error, f"{self.source}: experiment {name!r}")) from None
        if seed is not None:
            recipe["train"]["seed"] = seed
        where = f"{self.source}: experiment {exp!r}"
        return self._check_members(self._check_recipe(recipe, where), where)

    def dataset(self, name: str) -> DatasetCfg:
        if name not in self.datasets:
            raise CCReIDError(f"unknown data set {name!r} in {self.source}; defined: {', '.join(self.datasets)}")
        return self.datasets[name]

    def run_config(self, dataset: str, exp: str) -> RunConfig:
        """Everything one run reads: the recipe with the data set's overrides and schedule scale.
        Resolved once per run (planning asks hundreds of times); frozen, so callers share it."""
        key = (dataset, exp)
        if key not in self._run_configs:
            self._run_configs[key] = self._resolved_run_config(dataset, exp)
        return self._run_configs[key]

    def _resolved_run_config(self, dataset: str, exp: str) -> RunConfig:
        data = self.dataset(dataset)
        where = f"{self.source}: datasets.{dataset}.overrides"
        recipe = self._check_recipe(
            deep_merge(self.resolve(exp, dataset).model_dump(mode="json"), data.overrides), where
        )
        where = f"{self.source}: experiment {exp!r} on data set {dataset!r}"
        self._check_members(recipe, where)
        values = recipe.model_dump(mode="json")
        try:
            values["train"] = scale_schedule(values["train"], data.schedule_scale)
            for loss in ("clothes", "aux"):
                values["loss"][loss]["start_epoch"] = _scaled(values["loss"][loss]["start_epoch"], data.schedule_scale)
        except OverflowError:
            raise CCReIDError(
                f"{self.source}: datasets.{dataset}: key 'schedule_scale' = {data.schedule_scale!r}: "
                "scales the schedule past any number of epochs"
            ) from None
        values["dataset"] = {
            "name": dataset,
            **data.model_dump(mode="json", exclude={"synth", "obtain", "overrides", "seeds"}),
        }
        values |= {"experiment": exp, "plugins": self.plugins.model_dump(mode="json")}
        context = {"unscaled": recipe, "where": where, "train_ids": data.synth.train_ids if data.synth else None}
        try:
            return RunConfig.model_validate(values, context=context)
        except ValidationError as error:
            raise CCReIDError(_describe(error, where)) from None


PLUGINS_DIR = "plugins"  # beside params.yaml: DVC's config stage depends on this folder


def _plugins(files, source: str) -> PluginFiles:
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
    return PluginFiles(root=str(Path(source).resolve().parent), files=tuple(files))


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
    """A train section's epochs, milestones and warm-up multiplied by `scale` (rounded)."""
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
