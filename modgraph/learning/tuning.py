"""``modgraph tune``: an Optuna search for training settings that learn, for a modality or a link.

Trials never write the registry: a node's trials train in memory, a link's into a temporary
registry holding copies of its two nodes. The best settings are written as a graph spec.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from modgraph.errors import ConfigError, TrainingDivergedError
from modgraph.settings import LinkSettings, NodeSettings, ResolvedLink, ResolvedNode, SearchRange, TuneSettings

DEFAULT_TRIALS = 20
# Figures are reported to the pruner at each quarter of a trial's epochs, so that trials of
# different lengths are compared at the same point of their (one-cycle) learning-rate schedule.
QUARTERS = 4
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("modgraph tune needs Optuna; install it with: pip install 'modgraph[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# -- the search space ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    """One searched setting with its range resolved against the modality's defaults."""

    name: str
    low: float | None
    high: float | None
    log: bool
    integer: bool
    choices: tuple | None

    def suggest(self, trial):
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def holds(self, value) -> bool:
        if self.choices is not None:
            return value in self.choices
        return self.low <= value <= self.high


def dimensions(space: dict[str, SearchRange], defaults: dict[str, Any], resolved_model, fixed: set[str]) -> list[Dimension]:
    """The searched settings: ``space`` less what the command line fixed, ranges scaled by ``defaults``."""
    dims = []
    for name, where in space.items():
        if name in fixed:
            continue
        if where.choices is not None:
            dims.append(Dimension(name, None, None, False, False, tuple(where.choices)))
            continue
        integer = resolved_model.model_fields[name].annotation in (int, "int")
        low, high = where.bounds(defaults[name])
        if integer:
            low, high = max(1, round(low)), max(1, round(high))
        dims.append(Dimension(name, low, high, where.log and low > 0, integer, None))
    if not dims:
        raise ConfigError("nothing to search: every setting of the search space was fixed on the command line")
    return dims


# -- objectives --------------------------------------------------------------------------------------
def _quarter(settings, record: dict) -> int | None:
    """The quarter of its epochs (1..4) an epoch completes, or None when it completes none."""
    epoch, total = record["epoch"], settings.epochs
    reached = QUARTERS * epoch // total
    return reached if reached > QUARTERS * (epoch - 1) // total else None


def _report(trial, value: float, step: int) -> None:
    import optuna

    trial.report(value, step)
    if trial.should_prune():
        raise optuna.TrialPruned(f"at {step}/{QUARTERS} of its epochs: {100 * value:.2f}%")


class NodeObjective:
    """Validation reconstruction accuracy, as the recognizer reads it, of a node trained with a trial's settings.

    The recognizer is trained first (it does not depend on the VAE) so that each quarter of
    the VAE's epochs can be scored; the figure is the one ``add-modality`` stores as
    ``val_reconstruction_accuracy``.
    """

    figure = "validation reconstruction accuracy"

    def __init__(self, mg, name: str, base: NodeSettings, download: bool = False):
        from modgraph.learning.intra_modal import check_buildable

        self.mg, self.base, self.download = mg, base, download
        modality = mg.modality(name, base.options or None)
        check_buildable(modality, base.resolve(modality))
        self.modality, _notes = modality.for_data(mg.data_root, download)
        self.defaults = base.resolve(self.modality)
        self.space = self.modality.training_defaults.search_space
        self._rows, self._recognizers = None, {}

    def settings(self, params: dict) -> NodeSettings:
        return NodeSettings.parse({**self.base.model_dump(), **params})

    def __call__(self, trial, params: dict) -> float:
        from modgraph.learning.evaluation import reconstruction_accuracy
        from modgraph.learning.intra_modal import check_buildable, fit_recognizer, fit_vae, node_rows
        from modgraph.learning.models import VAE
        from modgraph.learning.training import watching_epochs

        r = self.settings(params).resolve(self.modality)
        check_buildable(self.modality, r)
        device = self.mg.device
        if self._rows is None:
            self._rows = node_rows(self.mg, self.modality, r, self.download)
        rows = self._rows
        key = (r.batch_size, r.recognizer_epochs)
        if key not in self._recognizers:
            self._recognizers[key] = fit_recognizer(self.mg, self.modality, r, rows, device)[0]
        recognizer = self._recognizers[key]

        def watch(module, settings, record):
            step = _quarter(settings, record) if isinstance(module, VAE) else None
            if step is not None:
                _report(trial, reconstruction_accuracy(module, recognizer, rows.xv, rows.val.y), step)

        with watching_epochs(watch):
            vae, _log = fit_vae(self.mg, self.modality, r, rows, device)
        return reconstruction_accuracy(vae, recognizer, rows.xv, rows.val.y)

    def close(self) -> None:
        self._rows, self._recognizers = None, {}


class LinkObjective:
    """Validation translation accuracy, as the target's recognizer reads it, averaged over the trained directions.

    Each trial runs ``link`` in a temporary registry holding copies of the two nodes; the
    first direction's figure is reported at each quarter of its epochs.
    """

    figure = "validation translation accuracy"

    def __init__(self, mg, source: str, target: str, base: LinkSettings):
        from modgraph.api import ModGraph

        self.source, self.target, self.base = source, target, base
        a, b = mg.node(source).modality, mg.node(target).modality
        self.defaults = base.resolve(a, b)
        self.space = b.training_defaults.link_search_space
        self._folder = Path(tempfile.mkdtemp(prefix="modgraph-tune-"))
        self.trial_graph = ModGraph(registry=self._folder / "registry", data_root=mg.data_root,
                                    cache_dir=mg.cache_dir, device=str(mg.device), progress=False,
                                    plugins=mg.plugins, precision=mg.precision)
        for name in (source, target):
            copy = self.trial_graph.registry.node_path(name)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mg.registry.node_path(name), copy)

    def settings(self, params: dict) -> LinkSettings:
        return LinkSettings.parse({**self.base.model_dump(), **params})

    def __call__(self, trial, params: dict) -> float:
        from modgraph.learning.training import watching_epochs

        first = f"{self.source} -> {self.target}"

        def watch(module, settings, record):
            step = _quarter(settings, record) if settings.description == first else None
            if step is not None and record.get("val_accuracy") is not None:
                _report(trial, record["val_accuracy"], step)

        with watching_epochs(watch):
            report = self.trial_graph.link(self.source, self.target, self.settings(params))
        figures = {direction: m["val_accuracy"] for direction, m in report["metrics"].items()}
        trial.set_user_attr("directions", figures)
        return sum(figures.values()) / len(figures)

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


# -- the study --------------------------------------------------------------------------------------------
def default_storage(registry_root: Path, study: str) -> str:
    """``sqlite:///REGISTRY-tune/STUDY.db``: beside the registry, never in it."""
    root = Path(registry_root).absolute()
    folder = root.parent / f"{root.name}-tune"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / study}.db"


def _identity(objective, dims: list[Dimension]) -> str:
    """What makes two runs one study: the fixed settings and the searched ranges."""
    return json.dumps({"fixed": objective.base.given(), "space": [d.__dict__ for d in dims]}, sort_keys=True,
                      default=str)


def open_study(optuna, storage: str, name: str, objective, dims: list[Dimension], sampler_seed: int | None,
               prune_after: int):
    """The study ``name`` in ``storage``, made if new; a study searched with other settings is refused."""
    # Five random trials before TPE models the rest: a 20-trial budget leaves it 15 to exploit.
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=5, multivariate=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=prune_after, n_warmup_steps=0)
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize", sampler=sampler,
                                    pruner=pruner, load_if_exists=True)
    except (ValueError, ImportError) as exc:  # a malformed URL, or a database driver that is not installed
        raise ConfigError(f"cannot open Optuna storage {storage!r}: {exc}") from None
    identity = _identity(objective, dims)
    recorded = study.user_attrs.get("modgraph")
    if recorded is None:
        study.set_user_attr("modgraph", identity)
    elif recorded != identity:
        raise ConfigError(f"study {name!r} in {storage} searched other fixed settings or ranges; give the same "
                          f"settings to resume it, or name a new study with --study")
    return study


def _enqueue_defaults(study, objective, dims: list[Dimension]) -> bool:
    """A new study tries the modality's defaults first, when they lie inside the search space."""
    defaults = objective.defaults.model_dump()
    if study.trials or not all(d.holds(defaults[d.name]) for d in dims):
        return False
    study.enqueue_trial({d.name: defaults[d.name] for d in dims}, user_attrs={"defaults": True})
    return True


def _run(objective, dims: list[Dimension]) -> Callable:
    import optuna

    def run(trial) -> float:
        params = {d.name: d.suggest(trial) for d in dims}
        try:
            return objective(trial, params)
        except TrainingDivergedError as exc:  # hopeless: pruned, with the reason on the record
            trial.set_user_attr("note", str(exc).split(";")[0])
            raise optuna.TrialPruned() from None
        except ConfigError as exc:  # settings the architecture or the data refuse
            trial.set_user_attr("note", str(exc))
            raise optuna.TrialPruned() from None

    return run


def tune(mg, names: list[str], base: NodeSettings | LinkSettings, settings: TuneSettings, *,
         download: bool = False, space: dict[str, SearchRange] | None = None, first: list[dict] = (),
         say: Callable[[str], None] | None = None) -> dict:
    """Search the settings of ``add-modality NAME`` (one name) or ``link A B`` (two) and write the best as a spec.

    ``base``: the settings the command line fixed (not searched). ``space``: the search space
    (default: the modality's ``TrainingDefaults.search_space``, for a link the target's
    ``link_search_space``). ``first``: settings to try before the sampler's (tests, warm starts).
    ``say``: called with one line per finished trial. With ``settings.apply`` the best settings
    are then trained into ``mg``'s registry through ``add_modality`` or ``link``; otherwise
    the registry is not touched.
    """
    from modgraph.storage.outputs import check_output

    optuna = _optuna()
    name = settings.study or "--".join(names) + ("-one-way" if getattr(base, "one_way", False) else "")
    if not _STUDY_NAME.match(name):
        raise ConfigError(f"study name {name!r}: use letters, digits, '.', '_' and '-' only")
    output = check_output(settings.output or f"{name}-tuned.toml")  # refused now, not after the study
    if len(names) == 1:
        objective = NodeObjective(mg, names[0], base, download)
    elif len(names) == 2:
        objective = LinkObjective(mg, names[0], names[1], base)
    else:
        raise ConfigError(f"tune takes a modality or two linked ones, not {len(names)} names")
    try:
        dims = dimensions(objective.space if space is None else space, objective.defaults.model_dump(),
                          ResolvedNode if len(names) == 1 else ResolvedLink, set(base.given()))
        storage = settings.storage or default_storage(mg.registry.root, name)
        study = open_study(optuna, storage, name, objective, dims, settings.sampler_seed, settings.prune_after)
        _enqueue_defaults(study, objective, dims)
        for params in first:
            study.enqueue_trial(params)
        trials = settings.trials or (None if settings.minutes else DEFAULT_TRIALS)
        announce = (lambda _study, t: say(trial_line(t))) if say else None
        study.optimize(_run(objective, dims), n_trials=trials,
                       timeout=settings.minutes * 60 if settings.minutes else None,
                       callbacks=[announce] if announce else None, gc_after_trial=True)
    finally:
        objective.close()
    rows = [trial_row(t) for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"no trial of study {name!r} finished: {len(rows)} pruned or failed (their lines are "
                          f"above); widen the search space or give more --trials")
    best = study.best_trial
    best_settings = objective.settings(best.params)
    write_spec(output, names, best_settings, comment=f"modgraph tune {' '.join(names)}: best of {len(study.trials)} "
               f"trials of study {name!r}, {objective.figure} {100 * best.value:.2f}% (trial {best.number})")
    result = {"study": name, "storage": storage, "objective": objective.figure, "trials": rows,
              "best": trial_row(best), "settings": best_settings.given(), "spec": str(output)}
    if settings.apply:
        result["applied"] = (mg.add_modality(names[0], best_settings, download=download) if len(names) == 1
                             else mg.link(names[0], names[1], best_settings))
    return result


# -- what is reported and written ------------------------------------------------------------------------------
def trial_row(trial) -> dict:
    """One trial as plain data: number, state, figure, the quarter it reached, its settings, a note."""
    steps = trial.intermediate_values
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else None
    return {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "last_step": max(steps) if steps else None, "last_value": steps[max(steps)] if steps else None,
            "seconds": seconds, "params": trial.params,
            "note": trial.user_attrs.get("note") or ("the modality's defaults" if trial.user_attrs.get("defaults")
                                                       else "")}


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_line(trial) -> str:
    row = trial_row(trial)
    figure = row["value"] if row["value"] is not None else row["last_value"]
    shown = "n/a" if figure is None else f"{100 * figure:.2f}%"
    where = f" at {row['last_step']}/{QUARTERS}" if row["state"] == "pruned" and row["last_step"] else ""
    params = ", ".join(f"{k}={_value(v)}" for k, v in row["params"].items())
    note = f"  ({row['note']})" if row["note"] else ""
    return f"trial {row['number']:>3}  {row['state']:<8} {shown:>7}{where}  {params}{note}"


def trial_table(rows: list[dict], best: int | None = None, limit: int = 50) -> list[str]:
    """The trials as aligned text lines, the best marked with ``*`` (the last ``limit`` shown)."""
    names = sorted({k for row in rows for k in row["params"]})
    header = ["trial", "state", "figure", *names, "seconds"]
    lines = []
    for row in rows[-limit:]:
        figure = row["value"] if row["value"] is not None else row["last_value"]
        shown = "" if figure is None else f"{100 * figure:.2f}%" + (
            f" @{row['last_step']}/{QUARTERS}" if row["state"] == "pruned" and row["last_step"] else "")
        lines.append([f"{row['number']}{'*' if row['number'] == best else ''}", row["state"], shown,
                      *(_value(row["params"].get(k, "")) for k in names),
                      "" if row["seconds"] is None else f"{row['seconds']:.0f}"])
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *lines]]
    if len(rows) > limit:
        out.insert(1, f"... {len(rows) - limit} earlier trials not shown")
    return out


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} to a graph spec")


def spec_text(names: list[str], settings: NodeSettings | LinkSettings, comment: str = "") -> str:
    """A graph spec (TOML) of one node's or one link's settings: what ``plan`` and ``add-modality --options-file`` read."""
    lines = [f"# {line}" for line in comment.splitlines()]
    if len(names) == 1:
        lines.append(f"[modalities.{names[0]}]")
    else:
        lines += ["[[links]]", f"source = {_toml(names[0])}", f"target = {_toml(names[1])}"]
    lines += [f"{key} = {_toml(value)}" for key, value in settings.given().items()]
    return "\n".join(lines) + "\n"


def write_spec(path: Path, names: list[str], settings, comment: str = "") -> Path:
    from modgraph.storage.outputs import write_bytes_atomically

    return write_bytes_atomically(path, spec_text(names, settings, comment).encode("utf-8"))
