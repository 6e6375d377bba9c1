"""The ``modgraph`` command: a thin click layer over :class:`modgraph.api.ModGraph`.

Nothing heavy is imported at module level so that ``modgraph --help`` answers at once.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import sys

import click

from modgraph import __version__
from modgraph.app.cli_options import settings_from_cli, settings_options
from modgraph.errors import printable
from modgraph.settings import (EvalSettings, LinkSettings, NodeSettings, ReadSettings, TranslateSettings,
                               TuneSettings)


class _Group(click.Group):
    """Prints modgraph's errors as one line and exits 1, never with a traceback."""

    def invoke(self, ctx):
        from modgraph.errors import ModgraphError
        from modgraph.runtime.progress import done

        try:
            with contextlib.ExitStack() as stack:
                stack.callback(done)  # no "still working" line outlives the command
                return super().invoke(ctx)
        except ModgraphError as exc:
            from modgraph.runtime import launch
            where = f" (rank {launch.env_rank()})" if launch.under_torchrun() else ""
            click.echo(f"Error{where}: {printable(exc)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted; the registry was not changed.", err=True)
            sys.exit(130)
        except OSError as exc:  # a file the command read or wrote: one line naming it
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(printable(f"Error: {exc.strerror or exc}{where}"), err=True)
            sys.exit(1)


def _clean_data(value):
    """``value`` with every string (keys too) made :func:`~modgraph.errors.printable`: header strings come
    from files that may not be ours, and no control character may reach the terminal."""
    if isinstance(value, dict):
        return {printable(k): _clean_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_data(v) for v in value]
    return printable(value) if isinstance(value, str) else value


_registry = click.option("--registry", envvar="MODGRAPH_REGISTRY", type=click.Path(file_okay=False),
                         help="Registry folder [env MODGRAPH_REGISTRY; default ./registry].")
_data_root = click.option("--data-root", envvar="MODGRAPH_DATA", type=click.Path(file_okay=False),
                          help="Where datasets live [env MODGRAPH_DATA; default a user cache folder].")


_quiet = click.option("-q", "--quiet", is_flag=True,
                      help="No progress and no notes (the summary, warnings and errors stay).")


def _common(f):
    f = _registry(f)
    f = _data_root(f)
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where to run the models.")(f)
    return f


def _graph(registry, data_root, device, progress=True, precision="fp32"):
    from modgraph.api import ModGraph

    return ModGraph(registry=registry, data_root=data_root, device=device, progress=progress, precision=precision)


def _existing_registry(registry):
    """The registry a read-only command reads; a folder that holds none is one line and exit 1."""
    from modgraph.errors import NotInRegistryError
    from modgraph.storage.registry import Registry

    reg = Registry(registry)
    if not (reg.root / "nodes").is_dir():
        raise NotInRegistryError(f"no registry at {reg.root}; create one with modgraph add-modality NAME "
                                 f"--registry {reg.root}" + ("" if registry else " (or name it with --registry "
                                                              "PATH, or once with modgraph config set registry PATH)"))
    return reg


def data_root_advice(message: str) -> str:
    """A loader's "data not found" message for a command that only reads data: the parts that say to
    download it give way to where to point modgraph (the data is where training found it)."""
    kept = [part for part in message.split("; ") if "--download" not in part]
    return "; ".join(kept) + ("; give the folder that holds the data with --data-root PATH, or set it once "
                              "with modgraph config set data-root PATH")


def _trained_data_root(data_root, registry, names):
    """--data-root (or MODGRAPH_DATA), else the user config's (read by the defaults), else the folder the named
    nodes were trained from when it is on this machine: eval and serve find the data where training did."""
    from modgraph.runtime.user_config import configured

    if data_root is not None or configured("data-root"):
        return data_root
    from modgraph.errors import ModgraphError
    from modgraph.storage.headers import trained_data_root
    from modgraph.storage.registry import Registry

    reg, headers = Registry(registry), []
    for name in names:
        try:
            headers.append(reg.node_metadata(name))
        except ModgraphError:
            continue  # the command itself says what is wrong with the name
    return trained_data_root(headers)


def _training_graph(registry, data_root, device, precision):
    """The graph add-modality or link trains into; a job of ``modgraph train`` first checks it is the one planned."""
    from modgraph.runtime.train import check_job_registry

    mg = _graph(registry, data_root, device, precision=precision)
    check_job_registry(mg)
    return mg


_LAUNCH_OPTIONS = ("nproc", "nnodes", "node_rank", "rdzv_endpoint")  # torchrun's, not the ranks'


def _command_line(ctx: click.Context) -> list[str]:
    """The subcommand with the options typed on its command line, torchrun's left out (env values pass as env)."""
    from click.core import ParameterSource

    options, positional = [ctx.info_name], []
    for param in ctx.command.params:
        if param.name in _LAUNCH_OPTIONS or ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            positional.extend(value if isinstance(value, (tuple, list)) else [value])
        elif getattr(param, "is_flag", False):
            options.extend(param.opts[:1] if value else param.secondary_opts[:1])
        else:
            for item in value if param.multiple else [value]:
                options.extend([param.opts[0], str(item)])
    return [*options, "--", *positional]


def _scale_out(f):
    """``--precision`` and ``--nproc`` for a training command: ``--nproc N`` reruns it under torchrun.

    Under torchrun only rank 0 prints what the command wrote; the other ranks' output is dropped.
    """

    @click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                  help="bf16: training forward passes under bf16 autocast (GPUs with bf16, or the CPU, where it "
                       "is usually slower); weights, losses and stored files stay fp32.")
    @click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Train data-parallel in N local processes (launches torchrun: gloo on CPU, nccl on GPUs, "
                       "one GPU each). --batch-size stays the global batch.")
    @click.option("--nnodes", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Machines training together, each running this command with its --node-rank (torchrun's "
                       "multi-node rendezvous at --rdzv-endpoint).")
    @click.option("--node-rank", type=click.IntRange(min=0), default=0, show_default=True,
                  help="This machine's rank with --nnodes, 0 to N-1; node 0 listens at --rdzv-endpoint.")
    @click.option("--rdzv-endpoint", metavar="HOST:PORT", help="Where node 0 listens, the same on every machine.")
    @functools.wraps(f)
    def command(*args, nproc, nnodes, node_rank, rdzv_endpoint, **kwargs):
        if nproc > 1 or nnodes > 1:
            from modgraph.runtime import launch
            from modgraph.errors import ConfigError

            if launch.under_torchrun():
                raise ConfigError("--nproc and --nnodes launch torchrun; leave them out when torchrun already "
                                  "started modgraph")
            launch.check_gpus(nproc, kwargs.get("device"))
            if nnodes > 1:
                launch.check_rendezvous(nnodes, node_rank, rdzv_endpoint)
            return launch.run_torchrun(nproc, _command_line(click.get_current_context()), nnodes, node_rank,
                                       rdzv_endpoint)
        from modgraph.runtime import distributed
        if distributed.is_main():
            return f(*args, **kwargs)
        with contextlib.redirect_stdout(io.StringIO()):
            return f(*args, **kwargs)

    return command


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modgraph")
def main():
    """Cross-modal association: one VAE per modality, associators between them, routed as a graph."""


@main.command("plugins")
def plugins_cmd():
    """List installed plugin distributions and the modalities each registers."""
    from modgraph.plugins import PluginHost

    host = PluginHost()
    infos = host.plugins()
    if not infos:
        click.echo("No modgraph plugins installed (pip install -e plugins/modgraph-vision, ...).")
    for info in infos:
        click.echo(f"{info.distribution} {info.version}: {', '.join(info.modalities) or '(no modalities)'}")


@main.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(["image", "audio", "text", "vector"]), default="vector", show_default=True,
              help="What one sample is: the encoding, file format and architectures the package starts from.")
@click.option("--dir", "folder", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder in which to write modgraph-NAME/.")
def new_plugin_cmd(name, kind, folder):
    """Write a modality plugin package, modgraph-NAME, that installs, passes the kit and trains as it stands."""
    from modgraph.app.new_plugin import new_plugin

    written = new_plugin(name, kind, folder)
    root = written[0].parent
    click.echo(f"Wrote {root}/ ({len(written)} files). Next:\n  pip install -e {root}\n  pytest {root}/tests\n"
               f"  modgraph add-modality {name}")


@main.command("add-modality")
@click.argument("name")
@settings_options(NodeSettings)
@click.option("--download", is_flag=True, help="Download the dataset if it is not under the data root.")
@click.option("--rebuild-features", is_flag=True,
              help="Delete NAME's cached features first (after its loader changed without a new feature_version).")
@_common
@_scale_out
def add_modality_cmd(name, download, rebuild_features, registry, data_root, device, precision, **given):
    """Intra-modal phase: train NAME's VAE and recognizer into the registry.

    --options-file also reads a graph spec (as modgraph tune writes): its [modalities.NAME]
    table gives the settings, and options on the command line win.
    """
    from modgraph.runtime.plan import node_spec_in, under_spec

    spec = node_spec_in(given["options_file"], name) if given.get("options_file") else None
    if spec is not None:
        given["options_file"] = None
    settings = settings_from_cli(NodeSettings, given)
    settings = under_spec(spec, settings) if spec is not None else settings
    mg = _training_graph(registry, data_root, device, precision)
    report = mg.add_modality(name, settings, download=download, rebuild_features=rebuild_features)
    for note in report.get("notes", []):
        click.echo(f"Note: {note}")
    m = report["metrics"]
    click.echo(f"Wrote {report['path']} (latent {report['latent_dim']})")
    click.echo(f"  recognizer test accuracy:      {_pct(m['recognizer_accuracy'])}")
    click.echo(f"  VAE reconstruction accuracy:   {_pct(m['reconstruction_accuracy'])}  (n={m['test_samples']})")
    from modgraph.learning.evaluation import node_warnings

    for warning in node_warnings(name, m, len(mg.registry.node_metadata(name).get("classes") or [])):
        click.echo(f"Warning: {warning}", err=True)


@main.command("remove-modality")
@click.argument("name")
@_registry
def remove_modality_cmd(name, registry):
    """Delete NAME's node and every associator touching it."""
    for path in _graph(registry, None, "cpu").remove_modality(name):
        click.echo(f"Removed {path}")


@main.command("link")
@click.argument("source")
@click.argument("target")
@settings_options(LinkSettings)
@_common
@_scale_out
def link_cmd(source, target, registry, data_root, device, precision, **given):
    """Cross-modal phase: train SOURCE->TARGET and TARGET->SOURCE associators, VAEs frozen."""
    settings = settings_from_cli(LinkSettings, given)
    mg = _training_graph(registry, data_root, device, precision)
    report = mg.link(source, target, settings)
    for path in report["paths"]:
        click.echo(f"Wrote {path}")
    for direction, m in report["metrics"].items():
        click.echo(f"  {direction}: test accuracy {_pct(m['accuracy'])} (n={m['test_samples']}; "
                   f"validation {_pct(m['val_accuracy'])} of {m['val_judged']})")
        if "pseudo_labels" in m:
            p = m["pseudo_labels"]
            click.echo(f"    sources: {m['paired_source_rows']} paired rows and {p['rows']} of {p['unpaired_rows']} "
                       f"unpaired ones, labelled by spreading"
                       + (f" balanced within each {p['balanced_within']}" if p.get("balanced_within") else "")
                       + f" (confidence >= {p['confidence']:g}; "
                       f"{_pct(p['accuracy'])} right by their withheld labels)")
    from modgraph.learning.evaluation import link_warning

    for direction, m in report["metrics"].items():
        src, dst = direction.split("->")
        warning = link_warning(src, dst, m, len(mg.registry.node_metadata(dst).get("classes") or []))
        if warning:
            click.echo(f"Warning: {warning}", err=True)


@main.command("unlink")
@click.argument("source")
@click.argument("target")
@click.option("--one-way", is_flag=True, help="Remove only SOURCE->TARGET.")
@_registry
def unlink_cmd(source, target, one_way, registry):
    """Delete the associators between SOURCE and TARGET."""
    for path in _graph(registry, None, "cpu").unlink(source, target, both=not one_way):
        click.echo(f"Removed {path}")


def _via(values: tuple[str, ...]) -> list[str] | None:
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


@main.command("route")
@click.argument("source")
@click.argument("target")
@click.option("--via", multiple=True, help="Force the path through these modalities, in order.")
@_registry
def route_cmd(source, target, via, registry):
    """Print the associator path from SOURCE to TARGET."""
    from modgraph.inference.routing import find_route

    click.echo(" -> ".join(find_route(_existing_registry(registry).graph(), source, target, _via(via))))


@main.command("translate")
@click.option("--from", "source", required=True, help="Source modality.")
@click.option("--to", "target", required=True, help="Target modality.")
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("-o", "--output", type=click.Path(), help="Output file (one output) or folder.")
@settings_options(TranslateSettings)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per input (JSON lines): input, outputs, read_as, read_confidence, "
                   "written_as, written_confidence (the first sample's).")
@_quiet
@_common
def translate_cmd(source, target, inputs, output, as_json, quiet, registry, data_root, device, **given):
    """Translate files (or folders of files, or - for standard input) from SOURCE to TARGET along the shortest path."""
    settings = settings_from_cli(TranslateSettings, given)
    mg = _graph(_existing_registry(registry).root, data_root, device, progress=not quiet)
    report = mg.translate_files(source, target, list(inputs), output, settings)
    _print_readings(report, source, target, as_json, quiet, settings.all)
    for note in report["output_notes"]:
        click.echo(printable(f"Note: {note}"), err=True)
    if as_json:
        sys.exit(1 if report["errors"] else 0)
    written = report["written"]
    for path in written if settings.all else written[:20]:
        click.echo(printable(f"Wrote {path}"))
    if len(written) > 20 and not settings.all:
        click.echo(f"... and {len(written) - 20} more (--all lists every file)")
    if "sheet" in report:
        left_out = report["sheet"]["left_out"]
        click.echo(printable(f"Wrote contact sheet {report['sheet']['path']} ({report['sheet']['rows']} input(s)"
                             + (f"; {left_out} more not shown" if left_out else "") + ")"))
    click.echo(f"Route: {' -> '.join(report['path'])}; {_counts(report, len(written))}.")
    if report["errors"]:
        sys.exit(1)


@main.command("read")
@click.option("--modality", "name", required=True, help="The node whose recognizer reads the inputs.")
@click.argument("inputs", nargs=-1, type=click.Path())
@settings_options(ReadSettings)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per input: input, read_as, read_confidence.")
@_quiet
@_common
def read_cmd(name, inputs, as_json, quiet, registry, data_root, device, **given):
    """Say what modality NAME's recognizer makes of files (or folders of files, or - for standard input)."""
    from modgraph.inference.readings import read_files

    settings = settings_from_cli(ReadSettings, given)
    mg = _graph(_existing_registry(registry).root, data_root, device, progress=not quiet)
    report = read_files(mg, name, list(inputs), settings.texts, settings.recursive)
    _print_readings(report, name, None, as_json, quiet, settings.all)
    if not as_json and (len(report["rows"]) > 1 or report["skipped"] or report["errors"]):
        click.echo(f"{_counts(report)}.")
    sys.exit(1 if report["errors"] else 0)


def _counts(report: dict, written: int | None = None) -> str:
    """The summary's counts: files written (or inputs read), failed and skipped."""
    head = f"{written} file(s) written" if written is not None else f"{len(report['rows'])} input(s) read"
    skipped = sum(report.get("skipped", {}).values())
    return f"{head}, {len(report['errors'])} failed, {skipped} folder entr{'y' if skipped == 1 else 'ies'} skipped"


def _print_readings(report: dict, source: str, target: str | None, as_json: bool, quiet: bool = False,
                    every: bool = False) -> None:
    """Per input what was read (and written), one-line warnings when unsure, one-line errors for bad files;
    the folder entries skipped, by suffix, in one line. ``every``: no line left out of a long batch."""
    from modgraph.inference.readings import Reading, doubt

    if report.get("skipped_line"):
        click.echo(printable(f"Note: {report['skipped_line']}"), err=True)
    for path, notes in ({} if quiet else report["notes"]).items():
        click.echo(printable(f"Note: {path}: {'; '.join(notes)}"), err=True)
    shown = len(report["rows"]) if as_json or every else 20  # every warning is printed, lines beyond 20 are not
    for i, row in enumerate(report["rows"]):
        read = Reading(row["read_as"], row["read_confidence"])
        line = f"{row['input']}: {source} read {read.name!r} ({read.confidence:.0%})"
        warnings = [doubt(source, row["input"], read)]
        if target is not None:
            written = Reading(row["written_as"], row["written_confidence"])
            line += f"; {target} output read as {written.name!r} ({written.confidence:.0%})"
            warnings.append(doubt(target, f"the output for {row['input']}", written))
        if i < shown:
            click.echo(json.dumps(row) if as_json else printable(line))  # file names: no terminal escapes
        for warning in filter(None, warnings):
            click.echo(printable(f"Warning: {warning}"), err=True)
    if len(report["rows"]) > shown:
        click.echo(f"... and {len(report['rows']) - shown} more (--all or --json lists every input)")
    for message in report["errors"].values():
        click.echo(printable(f"Error: {message}"), err=True)


def _anchored(result: dict) -> str:
    """Which translation eval measured, as translate's --anchor names it."""
    if "anchor" not in result:
        return ""  # a reconstruction: nothing is anchored
    if result.get("anchors_missing"):
        return " (the paper's translation: the source node stores no anchors)"
    return f" (anchored to {result['anchor']}, as translate writes)" if result["anchor"] else \
        " (the paper's translation, --anchor 0)"


@main.command("eval")
@click.option("--from", "source", required=True, help="Source modality.")
@click.option("--to", "target", required=True, help="Target modality.")
@settings_options(EvalSettings)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_quiet
@_common
def eval_cmd(source, target, as_json, quiet, registry, data_root, device, **given):
    """Recognition accuracy of SOURCE->TARGET translations (SOURCE=TARGET: VAE reconstruction)."""
    from modgraph.errors import DataNotFoundError

    settings = settings_from_cli(EvalSettings, given)
    mg = _graph(_existing_registry(registry).root, _trained_data_root(data_root, registry, [source]), device,
                progress=not quiet)
    try:
        result = mg.evaluate(source, target, settings)
    except DataNotFoundError as exc:  # eval reads the data training read: say where to point it
        raise DataNotFoundError(data_root_advice(str(exc))) from None
    if as_json:
        click.echo(json.dumps(result))
        return
    anchored = _anchored(result)
    click.echo(f"{' -> '.join(result['path'])} on {settings.split}: accuracy {_pct(result['accuracy'])} (n={result['n']})"
               f"{anchored}")
    per_class = result.get("per_class") or {}
    if per_class:
        width = max(len(name) for name in per_class)
        click.echo(f"  per class of {result['target']}:")
        for name, value in per_class.items():
            click.echo(printable(f"    {name:<{width}}  {_pct(value)}"))  # class names come from headers


@main.command("graph")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "dot"]), default="text", show_default=True)
@_registry
def graph_cmd(fmt, registry):
    """Show the registry's modalities and associators with their metrics."""
    from modgraph.storage.card import describe_graph

    info = describe_graph(_existing_registry(registry))
    if fmt != "json":
        info = _clean_data(info)  # JSON escapes control characters; the text formats must not
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
    elif fmt == "dot":
        click.echo("digraph modgraph {")
        for n in info["nodes"]:
            acc = (n["metrics"] or {}).get("reconstruction_accuracy")
            click.echo(f'  "{n["name"]}" [label="{n["name"]}\\nlatent {n["latent_dim"]}\\nVAE {_pct(acc)}"];')
        for e in info["edges"]:
            style = ", style=dashed" if e["stale"] else ""
            click.echo(f'  "{e["source"]}" -> "{e["target"]}" [label="{_pct((e["metrics"] or {}).get("accuracy"))}"{style}];')
        click.echo("}")
    else:
        click.echo(f"Registry {info['registry']}: {len(info['nodes'])} modalities, {len(info['edges'])} associators")
        for n in info["nodes"]:
            m = n["metrics"] or {}
            opts = {k: v for k, v in (n["options"] or {}).items()}
            click.echo(f"  {n['name']:<10} latent {n['latent_dim']:<4} recognizer {_pct(m.get('recognizer_accuracy'))}"
                       f"  VAE {_pct(m.get('reconstruction_accuracy'))}  plugin {n['plugin']}"
                       + (f"  options {json.dumps(opts)}" if opts else ""))
            if n.get("classes"):
                click.echo(f"    {len(n['classes'])} classes: {', '.join(n['classes'])}")
        for e in info["edges"]:
            stale = "  STALE: re-link" if e["stale"] else ""
            click.echo(f"  {e['source']} -> {e['target']}: accuracy {_pct((e['metrics'] or {}).get('accuracy'))}"
                       f"  pairing {e['pairing']}  paired {e['paired_fraction']}{stale}")


@main.command("history")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(),  # a folder is refused in one line (storage/outputs.py)
              help="PNG to write [default: NAME-history.png in the current folder].")
@click.option("--csv", "as_csv", is_flag=True, help="Print the curves as CSV instead of plotting them.")
@click.option("--json", "as_json", is_flag=True, help="Print the curves as JSON instead of plotting them.")
@_registry
def history_cmd(name, output, as_csv, as_json, registry):
    """Plot the stored training curves of a node (mnist) or an edge (fsdd->mnist)."""
    from modgraph.storage.history import history_csv, plot_history, training_history
    from modgraph.storage.registry import Registry

    title, rows = training_history(Registry(registry), name)
    if as_csv or as_json:
        click.echo(history_csv(rows) if as_csv else json.dumps(rows), nl=not as_csv)
        return
    default = name.replace("->", "--").replace(" ", "") + "-history.png"
    path = plot_history(title, rows, output or default)
    click.echo(printable(f"Wrote {path} ({len(rows)} epochs of {title})"))


class _LinkOnly:
    """The settings of link that add-modality lacks: ``tune A B`` takes them besides the shared ones."""

    model_fields = {k: v for k, v in LinkSettings.model_fields.items() if k not in NodeSettings.model_fields}


def _refuse_given(given: dict, names, command: str) -> None:
    wrong = [n for n in names if given.get(n) not in (None, (), False)]
    if wrong:
        from modgraph.errors import ConfigError

        raise ConfigError(f"{command} does not take {', '.join('--' + n.replace('_', '-') for n in wrong)}")


@main.command("tune")
@click.argument("names", nargs=-1, required=True, metavar="NAME [TARGET]")
@settings_options(TuneSettings)
@settings_options(NodeSettings)
@settings_options(_LinkOnly)
@click.option("--download", is_flag=True, help="Download the dataset if it is not under the data root.")
@_common
def tune_cmd(names, download, registry, data_root, device, **given):
    """Search NAME's add-modality settings, or the link settings of NAME TARGET, for ones that learn (Optuna).

    Settings given on the command line are fixed, the modality's search space is searched.
    Trials never touch the registry; the best settings are written as a graph spec for
    plan and add-modality --options-file, and trained into the registry with --apply.
    """
    from modgraph.learning.tuning import trial_table, tune

    settings = settings_from_cli(TuneSettings, given)
    if len(names) == 1:
        _refuse_given(given, _LinkOnly.model_fields, "tune NAME")
        base = settings_from_cli(NodeSettings, given)
    else:
        _refuse_given(given, ("latent_dim", "recognizer_epochs", "vae_target", "options", "options_file"), "tune A B")
        base = settings_from_cli(LinkSettings, given)
    report = tune(_graph(registry, data_root, device, progress=False), list(names), base, settings,
                  download=download, say=lambda line: click.echo(line))
    click.echo(f"Study {report['study']} in {report['storage']}: {len(report['trials'])} trials; "
               f"{report['objective']} (* the best):")
    for line in trial_table(report["trials"], report["best"]["number"]):
        click.echo(f"  {line}")
    click.echo(f"Wrote {report['spec']} (train it with: modgraph add-modality {names[0]} --options-file "
               f"{report['spec']}, or modgraph plan {report['spec']})" if len(names) == 1 else
               f"Wrote {report['spec']} (train it with: modgraph plan {report['spec']})")
    applied = report.get("applied")
    if applied is not None:
        for path in [applied["path"]] if "path" in applied else applied["paths"]:
            click.echo(f"Wrote {path}")
        for what, m in ({"VAE": applied["metrics"]} if "path" in applied else applied["metrics"]).items():
            figure = m.get("reconstruction_accuracy", m.get("accuracy"))
            click.echo(f"  {what}: test accuracy {_pct(figure)} (n={m['test_samples']})")


@main.command("plan")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["json", "commands"]), default="json", show_default=True,
              help="json: stages of jobs with their reasons; commands: one shell line per job.")
@_registry
@_data_root
def plan_cmd(spec, fmt, registry, data_root):
    """Print the jobs that train the graph in SPEC (TOML or JSON): nodes, then links; up-to-date ones left out."""
    from modgraph.runtime.plan import make_plan, plan_lines, read_spec

    plan = make_plan(_graph(registry, data_root, "cpu", progress=False), read_spec(spec), registry, data_root)
    click.echo(json.dumps(plan, indent=2) if fmt == "json" else printable("\n".join(plan_lines(plan)), keep="\n"))


@main.command("train")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--jobs", type=click.IntRange(min=1),
              help="Processes at once on this machine [default: one per GPU, else one per core]; a job with "
                   "--nproc N counts N.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="Run each job as a Ray task: on the cluster at ADDRESS, or RAY_ADDRESS's, or a Ray started here "
                   "(pip install 'modgraph[ray]'). Put SPEC first: modgraph train graph.toml --ray.")
@click.option("--dry-run", is_flag=True, help="Print what would run where, and run nothing.")
@click.option("--registry", envvar="MODGRAPH_REGISTRY", type=click.Path(file_okay=False))
@click.option("--data-root", envvar="MODGRAPH_DATA", type=click.Path(file_okay=False),
              help="Named in every job's command when given [env MODGRAPH_DATA].")
def train_cmd(spec, jobs, ray_address, dry_run, registry, data_root):
    """Train the graph in SPEC to the end: plan's jobs in parallel here or on Ray; up-to-date ones skipped."""
    from modgraph.runtime.plan import read_spec
    from modgraph.runtime.jobs import dry_run_lines, summary_lines
    from modgraph.runtime.train import train_graph

    def report(result):
        click.echo(f"{result.status}: {result.id}" + (f" ({result.error})" if result.error else ""), err=True)

    try:
        out = train_graph(_graph(registry, data_root, "cpu", progress=False), read_spec(spec), registry, data_root,
                          jobs=jobs, ray_address=ray_address, dry_run=dry_run, report=report)
    except KeyboardInterrupt as exc:
        click.echo("\n".join(summary_lines(exc.args[0] if exc.args else [])))
        click.echo("Interrupted: finished jobs are in the registry, unfinished ones left it as it was; run the same "
                   "modgraph train again to go on.", err=True)
        sys.exit(130)
    if dry_run:
        click.echo("\n".join(dry_run_lines(out["jobs"], ray_address is not None) or ["nothing to run"]))
    click.echo("\n".join(summary_lines(out["results"])))
    if any(r.status in ("failed", "skipped") for r in out["results"]):
        sys.exit(1)


# -- sharing a registry: its card, a page to try it, one file to hand over (issue 21) -----------


@main.command("card")
@click.option("-o", "--output", type=click.Path(), help="Write the card here [default: print it].")
@_registry
def card_cmd(output, registry):
    """Write the registry's model card (markdown) from its file headers: nodes, edges, datasets, commands."""
    from modgraph.storage.card import write_card

    text = write_card(_existing_registry(registry), output)
    if output is None:
        click.echo(text, nl=False)
    else:
        click.echo(printable(f"Wrote {output}"))


@main.group("config", invoke_without_command=True)
@click.pass_context
def config_cmd(ctx):
    """Show the places modgraph remembers (data root, registry), or set them once: modgraph config set data-root PATH."""
    if ctx.invoked_subcommand is not None:
        return
    import os

    from modgraph.runtime.user_config import CONFIG_KEYS, config_path, read_config

    stored = read_config()
    click.echo(f"Config file {config_path()}" + ("" if config_path().exists() else " (not written yet)"))
    env = {"data-root": "MODGRAPH_DATA", "registry": "MODGRAPH_REGISTRY"}
    for key in CONFIG_KEYS:
        value = stored.get(key)
        over = f"  (the environment overrides it: {env[key]}={os.environ[env[key]]})" if os.environ.get(env[key]) else ""
        click.echo(f"  {key}: {value or 'not set'}{over}")


@config_cmd.command("set")
@click.argument("key", metavar="KEY")
@click.argument("value", metavar="PATH")
def config_set_cmd(key, value):
    """Remember KEY (data-root or registry) as PATH; a flag or environment variable still wins."""
    from modgraph.runtime.user_config import configured, set_value

    path = set_value(key, value)
    click.echo(f"Set {key} = {configured(key)} in {path}")


@config_cmd.command("unset")
@click.argument("key", metavar="KEY")
def config_unset_cmd(key):
    """Forget KEY (data-root or registry): its default applies again."""
    from modgraph.runtime.user_config import unset_value

    click.echo(f"Unset {key} in {unset_value(key)}")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--samples", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Outputs drawn per input (shown as a gallery).")
@_common
def serve_cmd(host, port, samples, registry, data_root, device):
    """Serve a Gradio page (and its API) to try the registry in a browser (needs: pip install 'modgraph[app]')."""
    from modgraph.app.page_server import serve

    from modgraph.storage.registry import Registry

    data_root = _trained_data_root(data_root, registry, Registry(registry).node_names())
    mg = _graph(registry, data_root, device, progress=False)
    serve(mg, host, port, samples, announce=lambda url: click.echo(f"Serving registry {mg.registry.root} on {url} "
                                                                   f"(Ctrl-C to stop)"))


@main.command("export")
@click.argument("file", type=click.Path(), required=False)  # a folder is refused in one line (storage/outputs.py)
@click.option("--only", metavar="A,B,...", help="Export these modalities and the associators between them.")
@click.option("--space", type=click.Path(file_okay=False), metavar="DIR",
              help="Write a folder that runs the page of modgraph serve as a hub's Space instead (app.py, "
                   "requirements.txt, the archive, the card as README).")
@_quiet
@_registry
def export_cmd(file, only, space, quiet, registry):
    """Write the registry to one tar FILE (.tar, or .tar.gz): nodes, edges, a manifest with hashes, the card."""
    from modgraph.storage.archive import export_registry

    mg = _graph(registry, None, "cpu", progress=False)
    if space is not None:
        from modgraph.app.space import write_space

        report = write_space(mg, space, only=_via((only,)) if only else None)
        click.echo(printable(f"Wrote {report['folder']}: app.py, requirements.txt, README.md, graph.tar "
                             f"({', '.join(report['manifest']['modalities'])})"))
        return
    if file is None:
        raise click.UsageError("give the FILE to write, or --space DIR")
    from modgraph.runtime.progress import phase

    with phase(f"exporting to {file}", not quiet):
        report = export_registry(mg.registry, file, only=_via((only,)) if only else None,
                                 modalities=mg.available_modalities())
    m = report["manifest"]
    click.echo(printable(f"Wrote {report['path']} ({report['size']:,} bytes): {len(m['modalities'])} modalities "
                         f"({', '.join(m['modalities'])}), {len(m['associators'])} associators, manifest.json "
                         "and README.md"))


@main.command("import")
@click.argument("file", metavar="FILE_OR_URL")
@click.option("--force", is_flag=True, help="Replace nodes and associators the registry already holds.")
@_quiet
@_registry
def import_cmd(file, force, quiet, registry):
    """Add the nodes and associators of an exported archive (a FILE, or an http(s) URL, downloaded to a
    temporary file first) to the registry, after checking every file's hash."""
    from pathlib import Path

    from modgraph.runtime.progress import phase
    from modgraph.storage.archive import import_archive, plugin_notes
    from modgraph.storage.download import downloaded, is_url

    mg = _graph(registry, None, "cpu", progress=False)
    with contextlib.ExitStack() as stack:
        archive = stack.enter_context(downloaded(file, not quiet)) if is_url(file) else file
        with phase(f"importing {Path(archive).name}: checking every file's hash, then writing", not quiet):
            report = import_archive(mg.registry, archive, force=force)
    for path in report["written"]:
        click.echo(printable(f"Wrote {path}" + (" (replaced)" if any(path.endswith(r) for r in report["replaced"])
                                                else "")))
    for note in plugin_notes(report["manifest"], mg.available_modalities()):
        click.echo(printable(f"Note: {note}"), err=True)  # the manifest's plugin names are the archive's words


if __name__ == "__main__":
    main()
