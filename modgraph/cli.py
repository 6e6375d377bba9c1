"""The ``modgraph`` command: a thin click layer over :class:`modgraph.graph.ModGraph`.

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


class _Group(click.Group):
    """Prints modgraph's errors as one line and exits 1, never with a traceback."""

    def invoke(self, ctx):
        from modgraph.errors import ModgraphError

        try:
            return super().invoke(ctx)
        except ModgraphError as exc:
            from modgraph import launch

            where = f" (rank {launch.rank()})" if launch.under_torchrun() else ""
            click.echo(f"Error{where}: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted; the registry was not changed.", err=True)
            sys.exit(130)


def _pairs(values: tuple[str, ...], what: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint=what)
        out.setdefault(key.strip(), []).extend(v.strip() for v in value.split(","))
    return out


def _options(values: tuple[str, ...], options_file: str | None) -> dict:
    """``--option key=value`` (values parsed as JSON where they can be) over a TOML file."""
    merged: dict = {}
    if options_file:
        import tomllib

        try:
            with open(options_file, "rb") as fh:
                merged.update(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise click.BadParameter(f"cannot read {options_file}: {exc}", param_hint="--options-file")
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--option")
        try:
            merged[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            merged[key.strip()] = value
    return merged


def _common(f):
    f = click.option("--registry", envvar="MODGRAPH_REGISTRY", type=click.Path(file_okay=False),
                     help="Registry folder [env MODGRAPH_REGISTRY; default ./registry].")(f)
    f = click.option("--data-root", envvar="MODGRAPH_DATA", type=click.Path(file_okay=False),
                     help="Where datasets live [env MODGRAPH_DATA; default a user cache folder].")(f)
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where to run the models.")(f)
    return f


def _graph(registry, data_root, device, progress=True, precision="fp32"):
    from modgraph.graph import ModGraph

    return ModGraph(registry=registry, data_root=data_root, device=device, progress=progress, precision=precision)


def _command_line(ctx: click.Context) -> list[str]:
    """The subcommand with the options typed on its command line, ``--nproc`` left out (env values pass as env)."""
    from click.core import ParameterSource

    options, positional = [ctx.info_name], []
    for param in ctx.command.params:
        if param.name == "nproc" or ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
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
    @functools.wraps(f)
    def command(*args, nproc, **kwargs):
        if nproc > 1:
            from modgraph import launch
            from modgraph.errors import ConfigError

            if launch.under_torchrun():
                raise ConfigError("--nproc launches torchrun; leave it out when torchrun already started modgraph")
            return launch.run_torchrun(nproc, _command_line(click.get_current_context()))
        from modgraph import distributed

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


@main.command("add-modality")
@click.argument("name")
@click.option("--latent-dim", type=int, help="Latent size [default: the modality's, 64].")
@click.option("--epochs", type=int, help="VAE epochs [default: the modality's].")
@click.option("--recognizer-epochs", type=int, help="Recognizer epochs [default: the modality's].")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--kl-weight", type=float, help="lambda_int of Eq. 6.")
@click.option("--vae-target", type=click.Choice(["input", "original"]),
              help="What an augmented copy reconstructs: itself (Eq. 6) or its original [default: the modality's].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--download", is_flag=True, help="Download the dataset if it is not under the data root.")
@click.option("--option", "option", multiple=True, metavar="KEY=VALUE", help="A modality option (repeatable).")
@click.option("--options-file", type=click.Path(dir_okay=False), help="Modality options from a TOML file.")
@click.option("--exclude", multiple=True, metavar="GROUP=VALUE",
              help="Leave rows out of training, e.g. speaker=jackson (repeatable).")
@_common
@_scale_out
def add_modality_cmd(name, latent_dim, epochs, recognizer_epochs, batch_size, lr, kl_weight, vae_target, seed,
                     download, option, options_file, exclude, registry, data_root, device, precision):
    """Intra-modal phase: train NAME's VAE and recognizer into the registry."""
    mg = _graph(registry, data_root, device, precision=precision)
    report = mg.add_modality(name, latent_dim=latent_dim, epochs=epochs, batch_size=batch_size, lr=lr,
                             kl_weight=kl_weight, recognizer_epochs=recognizer_epochs, seed=seed, download=download,
                             options=_options(option, options_file), exclude=_pairs(exclude, "--exclude"),
                             vae_target=vae_target)
    m = report["metrics"]
    click.echo(f"Wrote {report['path']} (latent {report['latent_dim']})")
    click.echo(f"  recognizer test accuracy:      {_pct(m['recognizer_accuracy'])}")
    click.echo(f"  VAE reconstruction accuracy:   {_pct(m['reconstruction_accuracy'])}  (n={m['test_samples']})")


@main.command("remove-modality")
@click.argument("name")
@click.option("--registry", envvar="MODGRAPH_REGISTRY", type=click.Path(file_okay=False))
def remove_modality_cmd(name, registry):
    """Delete NAME's node and every associator touching it."""
    for path in _graph(registry, None, "cpu").remove_modality(name):
        click.echo(f"Removed {path}")


@main.command("link")
@click.argument("source")
@click.argument("target")
@click.option("--pairing", type=click.Choice(["concept", "index"]), default="concept", show_default=True,
              help="concept: classes with the same concept; index: class k with class k.")
@click.option("--paired-fraction", type=float, default=1.0, show_default=True,
              help="Fraction of each modality's training samples that may appear in pairs.")
@click.option("--epochs", type=int, help="Associator epochs [default: the target modality's].")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--kl-weight", type=float,
              help="lambda_crs of Eq. 7 [default: the target VAE's lambda_int, so z_ji lives where its decoder was trained].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--candidates", type=int,
              help="Partners of the class drawn per sample, the loss taking the closest; 1 is the paper's Eq. 7 "
                   "[default: the target modality's].")
@click.option("--target-confidence", type=float,
              help="Aim only at target samples whose reconstruction the target's recognizer gives at least this "
                   "probability of their class; 0 aims at all, as the paper [default: the target modality's].")
@click.option("--source-noise", type=float,
              help="Train on mu + S * sigma * eps of the source encoder; 1 samples q(z|x) as the paper, 0 takes "
                   "the mean, as translate does [default: the source modality's].")
@click.option("--pseudo-label-confidence", type=float,
              help="With --paired-fraction below 1: unpaired source samples whose class label spreading in the "
                   "latent space gives at least this confidence join the sources; 1 uses the paired samples only, as "
                   "the paper [default: the source modality's].")
@click.option("--select", type=click.Choice(["loss", "accuracy"]),
              help="Keep the epoch of lowest validation loss, or the lowest-loss epoch among those whose validation "
                   "translation accuracy (as the target's recognizer reads it) is within one standard error of the "
                   "best [default: the target modality's].")
@click.option("--exclude", multiple=True, metavar="GROUP=VALUE", help="Leave rows out of the pairs.")
@click.option("--one-way", is_flag=True, help="Train only SOURCE->TARGET.")
@_common
@_scale_out
def link_cmd(source, target, pairing, paired_fraction, epochs, batch_size, lr, kl_weight, seed, candidates,
             target_confidence, source_noise, pseudo_label_confidence, select, exclude, one_way,
             registry, data_root, device, precision):
    """Cross-modal phase: train SOURCE->TARGET and TARGET->SOURCE associators, VAEs frozen."""
    mg = _graph(registry, data_root, device, precision=precision)
    report = mg.link(source, target, pairing=pairing, paired_fraction=paired_fraction, epochs=epochs,
                     batch_size=batch_size, lr=lr, kl_weight=kl_weight, seed=seed, candidates=candidates,
                     target_confidence=target_confidence, source_noise=source_noise,
                     pseudo_label_confidence=pseudo_label_confidence, select=select,
                     exclude=_pairs(exclude, "--exclude"), one_way=one_way)
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


@main.command("unlink")
@click.argument("source")
@click.argument("target")
@click.option("--one-way", is_flag=True, help="Remove only SOURCE->TARGET.")
@click.option("--registry", envvar="MODGRAPH_REGISTRY", type=click.Path(file_okay=False))
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
@click.option("--registry", envvar="MODGRAPH_REGISTRY", type=click.Path(file_okay=False))
def route_cmd(source, target, via, registry):
    """Print the associator path from SOURCE to TARGET."""
    click.echo(" -> ".join(_graph(registry, None, "cpu").route(source, target, _via(via))))


@main.command("translate")
@click.option("--from", "source", required=True, help="Source modality.")
@click.option("--to", "target", required=True, help="Target modality.")
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--text", "texts", multiple=True, help="A literal input (text-like modalities).")
@click.option("-o", "--output", type=click.Path(), help="Output file (one output) or folder.")
@click.option("--via", multiple=True, help="Force the path through these modalities.")
@click.option("--samples", type=int, default=1, show_default=True, help="Outputs drawn per input.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per input (JSON lines): input, outputs, read_as, read_confidence, "
                   "written_as, written_confidence (the first sample's).")
@_common
def translate_cmd(source, target, inputs, texts, output, via, samples, as_json, registry, data_root, device):
    """Translate files (or folders of files) from SOURCE to TARGET along the shortest path."""
    mg = _graph(registry, data_root, device, progress=False)
    report = mg.translate_files(source, target, list(inputs), output, via=_via(via), samples=samples,
                                texts=list(texts))
    _print_readings(report, source, target, as_json)
    if as_json:
        sys.exit(1 if report["errors"] else 0)
    written = report["written"]
    for path in written[:20]:
        click.echo(f"Wrote {path}")
    if len(written) > 20:
        click.echo(f"... and {len(written) - 20} more")
    click.echo(f"Route: {' -> '.join(report['path'])}; {len(written)} file(s) written.")
    if report["errors"]:
        sys.exit(1)


@main.command("read")
@click.option("--modality", "name", required=True, help="The node whose recognizer reads the inputs.")
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--text", "texts", multiple=True, help="A literal input (text-like modalities).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per input: input, read_as, read_confidence.")
@_common
def read_cmd(name, inputs, texts, as_json, registry, data_root, device):
    """Say what modality NAME's recognizer makes of files (or folders of files), with its confidence."""
    from modgraph.readings import read_files

    report = read_files(_graph(registry, data_root, device, progress=False), name, list(inputs), list(texts))
    _print_readings(report, name, None, as_json)
    sys.exit(1 if report["errors"] else 0)


def _print_readings(report: dict, source: str, target: str | None, as_json: bool) -> None:
    """Per input what was read (and written), one-line warnings when unsure, one-line errors for bad files."""
    from modgraph.readings import Reading, doubt

    for path, notes in report["notes"].items():
        click.echo(f"Note: {path}: {'; '.join(notes)}", err=True)
    shown = len(report["rows"]) if as_json else 20  # every warning is printed, lines beyond 20 are not
    for i, row in enumerate(report["rows"]):
        read = Reading(row["read_as"], row["read_confidence"])
        line = f"{row['input']}: {source} read {read.name!r} ({read.confidence:.0%})"
        warnings = [doubt(source, row["input"], read)]
        if target is not None:
            written = Reading(row["written_as"], row["written_confidence"])
            line += f"; {target} output read as {written.name!r} ({written.confidence:.0%})"
            warnings.append(doubt(target, f"the output for {row['input']}", written))
        if i < shown:
            click.echo(json.dumps(row) if as_json else line)
        for warning in filter(None, warnings):
            click.echo(f"Warning: {warning}", err=True)
    if len(report["rows"]) > shown:
        click.echo(f"... and {len(report['rows']) - shown} more (--json lists every input)")
    for message in report["errors"].values():
        click.echo(f"Error: {message}", err=True)


@main.command("eval")
@click.option("--from", "source", required=True)
@click.option("--to", "target", required=True)
@click.option("--via", multiple=True)
@click.option("--split", type=click.Choice(["test", "train", "all"]), default="test", show_default=True)
@click.option("--include", multiple=True, metavar="GROUP=VALUE", help="Only rows of these groups, e.g. speaker=lucas.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_common
def eval_cmd(source, target, via, split, include, as_json, registry, data_root, device):
    """Recognition accuracy of SOURCE->TARGET translations (SOURCE=TARGET: VAE reconstruction)."""
    mg = _graph(registry, data_root, device, progress=False)
    result = mg.evaluate(source, target, via=_via(via), split=split, include=_pairs(include, "--include"))
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{' -> '.join(result['path'])} on {split}: accuracy {_pct(result['accuracy'])} (n={result['n']})")


@main.command("graph")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "dot"]), default="text", show_default=True)
@click.option("--registry", envvar="MODGRAPH_REGISTRY", type=click.Path(file_okay=False))
def graph_cmd(fmt, registry):
    """Show the registry's modalities and associators with their metrics."""
    info = _graph(registry, None, "cpu").describe()
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
        for e in info["edges"]:
            stale = "  STALE: re-link" if e["stale"] else ""
            click.echo(f"  {e['source']} -> {e['target']}: accuracy {_pct((e['metrics'] or {}).get('accuracy'))}"
                       f"  pairing {e['pairing']}  paired {e['paired_fraction']}{stale}")


@main.command("plan")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["json", "commands"]), default="json", show_default=True,
              help="json: stages of jobs with their reasons; commands: one shell line per job.")
@click.option("--registry", envvar="MODGRAPH_REGISTRY", type=click.Path(file_okay=False))
@click.option("--data-root", envvar="MODGRAPH_DATA", type=click.Path(file_okay=False),
              help="Named in every command when given [env MODGRAPH_DATA].")
def plan_cmd(spec, fmt, registry, data_root):
    """Print the jobs that train the graph in SPEC (TOML or JSON): nodes, then links; up-to-date ones left out."""
    from modgraph.plan import make_plan, plan_lines, read_spec

    plan = make_plan(_graph(registry, data_root, "cpu", progress=False), read_spec(spec), registry, data_root)
    click.echo(json.dumps(plan, indent=2) if fmt == "json" else "\n".join(plan_lines(plan)))


if __name__ == "__main__":
    main()
