"""Translation along a route: tensors through the chain of associators, and files in and out.

Latents pass through each associator's mean; files are read, translated in batches and
written by a background thread while the next batch is translated.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from modgraph.inference.anchors import anchor_latents
from modgraph.errors import ConfigError, InputFileError
from modgraph.modality import Modality
from modgraph.runtime.progress import Progress
from modgraph.settings import TranslateSettings
from modgraph.inference.inputs import gather_inputs
from modgraph.inference.readings import read_batch, translation_rows
from modgraph.inference.sheet import SheetRows
from modgraph.inference.sheet import check_path as check_sheet_path
from modgraph.storage.outputs import check_output


@torch.no_grad()
def translate_normalized(mg, path: list[str], x: torch.Tensor, samples: int = 1, anchor: int = 0,
                         stops: list | None = None) -> torch.Tensor:
    """Model inputs of ``path[0]`` to model outputs of ``path[-1]``: (N, samples, *shape).

    Latents are chained through each associator's mean; at every modality in between,
    the latent is decoded and encoded again, so the next associator gets a latent like
    those it was trained on (docs/tuning.md). With ``samples > 1`` the last step
    draws from its Gaussian (for a same-modality path, from the VAE posterior). ``anchor``
    k > 0: the source latent is first anchored (:mod:`modgraph.inference.anchors`), where the node has anchors.
    ``stops``: a list that gets the decode at each modality in between (normalised, on the CPU), in order.
    """
    device = mg.device
    source = mg.node(path[0])
    z, logvar = source.vae.encode(x.to(device))
    if anchor and source.anchors is not None and len(path) > 1:
        z = anchor_latents(z, source.recognizer(x.to(device)).argmax(1), source.anchors, anchor)
    for i, (a, b) in enumerate(zip(path[:-1], path[1:])):
        if i > 0:
            vae = mg.node(a).vae
            decoded = vae.decode(z)
            if stops is not None:
                stops.append(decoded.cpu())
            z, _ = vae.encode(decoded)
        z, logvar = mg.associator(a, b)(z)
    if samples > 1:
        std = torch.exp(0.5 * logvar)
        z = z.unsqueeze(1) + std.unsqueeze(1) * torch.randn(len(z), samples, z.shape[1], device=device)
    else:
        z = z.unsqueeze(1)
    out = mg.node(path[-1]).vae.decode(z.flatten(0, 1))
    return out.view(len(x), samples, *out.shape[1:]).cpu()


def output_target(output: Path | None, source: str, target: str, n_out: int, suffix: str) -> tuple[Path, bool]:
    """The output folder (or single file) and whether it is one file; refuses a file for many outputs."""
    output = Path(output) if output is not None else Path("translations") / f"{source}-to-{target}"
    if output.suffix and not output.is_dir():
        check_output(output)  # one file: a device, a FIFO or a socket is refused as every output is
    if output.exists() and not output.is_dir() and (output.suffix == "" or not output.is_file()):
        raise ConfigError(f"-o {output} is an existing file that is not a {suffix} file; give a folder, or a "
                          f"file name ending in {suffix}")
    blocker = next((p for p in output.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"-o {output}: {blocker} is a file, not a folder; give another output place")
    single_file = output.suffix != "" and not output.is_dir()
    if single_file and n_out > 1:
        raise ConfigError(f"-o {output} names one file but {n_out} outputs would be written; give a folder")
    if single_file and output.suffix.lower() != suffix:
        raise ConfigError(f"-o {output}: {target} outputs are {suffix} files")
    return output, single_file


# Output names keep at most this many bytes of their input's name: room for a repeat count, a sample
# number, the suffix and a plugin's companion file (``.mfcc.png``) under the file systems' 255.
MAX_STEM_BYTES = 200


def output_stem(stem: str) -> str:
    """``stem`` cut to :data:`MAX_STEM_BYTES` bytes (a prefix of its bytes, as the file system stores them)."""
    raw = os.fsencode(stem)
    return stem if len(raw) <= MAX_STEM_BYTES else os.fsdecode(raw[:MAX_STEM_BYTES])


def read_jobs(modality: Modality, chunk: list, notes: dict, errors: dict) -> tuple[torch.Tensor | None, list]:
    """Raw features of a batch of jobs (readable files first, then literal texts), and the jobs they are.

    File notes go into ``notes``; a file that cannot be read goes into ``errors`` and is left
    out, so the others are still translated (modgraph.inference.readings.read_batch).
    """
    x, _, file_notes, file_errors = read_batch(modality, [p for _, p in chunk if isinstance(p, Path)])
    notes.update(file_notes)
    errors.update(file_errors)
    chunk = [(stem, p) for stem, p in chunk if not isinstance(p, Path) or str(p) not in file_errors]
    parts = [x] if x is not None else []
    texts = [t for _, t in chunk if not isinstance(t, Path)]
    if texts:
        parts.append(torch.stack([modality.read_text(t) for t in texts]))
    return (torch.cat(parts) if parts else None), chunk


def output_paths(chunk: list, raw: torch.Tensor, output: Path, single_file: bool, suffix: str,
                 stems_seen: dict[str, int]) -> list[tuple[torch.Tensor, Path]]:
    """Each output sample with the path it is written to (repeated stems numbered, samples suffixed)."""
    outputs = []
    samples = raw.shape[1]
    for (stem, _), outs in zip(chunk, raw):
        count = stems_seen.get(stem, 0)
        stems_seen[stem] = count + 1
        stem = stem if count == 0 else f"{stem}-{count + 1}"
        for k, sample in enumerate(outs):
            name = f"{stem}{f'_{k + 1}' if samples > 1 else ''}{suffix}"
            outputs.append((sample, output if single_file else output / name))
    return outputs


def translate_files(mg, source: str, target: str, inputs, output: str | Path | None,
                    settings: TranslateSettings) -> dict:
    """Read files (or folders of files, or ``settings.texts``), translate, write the target's files.

    ``settings.sheet``: a PNG contact sheet of the first inputs beside their outputs, labelled with
    their readings (:mod:`modgraph.inference.sheet`); the report's ``sheet`` says where, how many
    rows, how many left out.
    """
    samples, scale, anchor, texts, batch_size = (settings.samples, settings.scale, settings.anchor, settings.texts,
                                                 settings.batch_size)
    sheet = check_sheet_path(settings.sheet) if settings.sheet is not None else None
    if any(not str(p).strip() for p in inputs):
        raise InputFileError("an input name is empty; give files, folders, or --text")
    path = mg.route(source, target, settings.via or None)
    src, dst = mg.node(source), mg.node(target)
    found = gather_inputs([Path(p) for p in inputs], src.modality, settings.recursive)
    items = found.files
    if not items and not texts:
        raise InputFileError("nothing to translate: give one or more files, a folder, or --text")
    suffix = dst.modality.output_suffix
    output, single_file = output_target(output, source, target, (len(items) + len(texts)) * samples, suffix)
    written, notes, stems_seen, rows, errors = [], {}, {}, [], {}
    jobs = [(output_stem(p.stem), p) for p in items] + [(slug(t), t) for t in texts]
    shortened = sum(output_stem(p.stem) != p.stem for p in items) if not single_file else 0
    pictured = SheetRows(src.modality, dst.modality) if sheet is not None else None
    # One thread writes a batch's files while the next batch is read and translated: writing
    # is mostly waiting on the file system (on a busy disk, longer than the models take).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="modgraph-write") as writer, \
            Progress(len(jobs), f"{' -> '.join(path)}: translating", getattr(mg, "progress", False),
                     unit="input", summary_after=2) as bar:
        pending = None
        for start in range(0, len(jobs), batch_size):
            x, chunk = read_jobs(src.modality, jobs[start:start + batch_size], notes, errors)
            bar.update(len(jobs[start:start + batch_size]))
            if x is None:
                continue
            xn = src.modality.normalize(x, src.stats)
            out = mg.translate_normalized(path, xn, samples, anchor)
            raw = dst.modality.denormalize(out.flatten(0, 1), dst.stats).view_as(out)
            outputs = output_paths(chunk, raw, output, single_file, suffix, stems_seen)
            new_rows = translation_rows(src, dst, [p for _, p in chunk], xn, out,
                                        [[p for _, p in outputs[i * samples:(i + 1) * samples]]
                                         for i in range(len(chunk))])
            rows += new_rows
            if pictured is not None:
                pictured.add([p for _, p in chunk], x, raw, new_rows)
            if pending is not None:
                written.extend(pending.result())  # a failed write raises here, before more is written
            pending = writer.submit(write_outputs, dst.modality, outputs, scale)
        if pending is not None:
            written.extend(pending.result())
    if errors and not rows:
        raise InputFileError(next(iter(errors.values())))
    found.relabel(rows, notes, errors)
    report = {"path": path, "written": written, "notes": notes, "rows": rows, "errors": errors,
              "skipped": dict(found.skipped), "skipped_line": found.skipped_line(src.modality),
              "output_notes": anchor_notes(src, anchor, len(path))
              + ([f"{shortened} output name(s) keep only the first {MAX_STEM_BYTES} bytes of their input's name"]
                 if shortened else [])}
    if pictured is not None:
        report["sheet"] = pictured.write(sheet, path, written)
    return report


def anchor_notes(source, anchor: int, hops: int) -> list[str]:
    """Why inputs were translated unanchored though anchoring was asked for."""
    if not anchor or source.anchors is not None or hops < 2:
        return []
    return [f"{source.modality.name}'s node stores no anchors (trained before modgraph kept them): inputs are "
            f"translated as they are; retrain it (modgraph add-modality {source.modality.name}) to anchor them"]


def write_outputs(modality: Modality, outputs: list[tuple[torch.Tensor, Path]], scale: int = 1) -> list[str]:
    """Write translated samples, in order; the paths written (a sample may write companions too)."""
    written = []
    for sample, path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        written.extend(str(p) for p in modality.write_file(sample, path, scale=scale))
    return written


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text.strip()).strip("-")[:40] or "text"
