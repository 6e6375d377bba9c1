"""``modgraph serve``'s page as Gradio components over a :class:`~modgraph.app.page.Page`: inputs that
fit the source, every stop of the route with its reading, the target's output, examples, the graph.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import gradio as gr

from modgraph.app.page import Page, doubt_line, input_kind, output_kind
from modgraph.errors import ModgraphError

logger = logging.getLogger(__name__)
MAX_BETWEEN = 3  # modalities in between shown (a longer route shows its first ones)
CANVAS = 280
# Small pictures (28x28 digits) shown large and sharp.
CSS = (".modgraph-status p { margin: 0 } "
       ".modgraph-picture img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain }")
INTERNAL_ERROR = "Something went wrong on the server while translating; its log has the details."
INPUT_KINDS = ("audio", "image", "text", "file")
OUTPUT_KINDS = ("image", "audio", "text", "file")


def _blank_canvas(folder: Path) -> dict:
    """A black canvas: strokes are drawn light on dark, as digit datasets are."""
    from PIL import Image

    path = folder / "canvas.png"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (CANVAS, CANVAS), "black").save(path)
    return {"background": str(path), "layers": [], "composite": str(path)}


def _show(kind: str, files: list[Path]) -> dict:
    """Values for the four output slots (image, audio, text, file) showing ``files`` of a ``kind``."""
    main = files[0] if files else None
    values = dict.fromkeys(OUTPUT_KINDS)
    if main is None:
        return values
    if kind == "text":
        values["text"] = main.read_text(encoding="utf-8", errors="replace")[:1000]
    else:
        values[kind] = str(main)
    return values


class PageUI:
    """The Gradio Blocks of the page and the functions its events call."""

    def __init__(self, page: Page):
        self.page = page
        self.names = page.modalities()
        self.canvas = _blank_canvas(page.workdir / "canvas")

    # -- events -----------------------------------------------------------------------------------
    def choose(self, source: str | None, target: str | None) -> list:
        """Inputs fitting the source, outputs fitting the target, the route line and the examples; every
        output emptied (nothing stale stays)."""
        kind, out_kind, route, samples, note = None, None, "", [], ""
        try:
            if source and target:
                kind, out_kind = input_kind(self.page.modality(source)), output_kind(self.page.modality(target))
                _, route = self.page.route(source, target)
                examples, note = self.page.examples(source)
                samples = [[name] for name, _ in examples]
        except ModgraphError as exc:
            route = f"⚠ {exc}"
        inputs = [gr.update(visible=kind == k, value=self.canvas if k == "image" else None) for k in INPUT_KINDS]
        many = self.page.samples > 1 and out_kind == "image"
        outputs = [gr.update(visible=out_kind == k and not many, value=None) for k in OUTPUT_KINDS]
        return [route, *inputs, gr.update(samples=samples, visible=bool(samples)), note, *self.cleared(),
                *outputs, gr.update(visible=many, value=None)]

    def cleared(self, status: str = "") -> list:
        """The status line, and the input's reading, the notes and every stop emptied."""
        between = []
        for _ in range(MAX_BETWEEN):
            between += [gr.update(visible=False), "", None, None, None]
        return [status, None, "", *between, None]

    def example(self, source: str, index: int) -> list:
        """Example ``index`` of ``source`` put into its input (so it is seen or heard before translating)."""
        values = [gr.update() for _ in INPUT_KINDS]
        try:
            examples, _ = self.page.examples(source)
            name, path = examples[index]
        except (ModgraphError, IndexError, TypeError):
            return values
        copy = self.page.workdir / "examples-shown" / source / f"{index}{path.suffix}"
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
        kind = input_kind(self.page.modality(source))
        value = {"background": str(copy), "layers": [], "composite": str(copy)} if kind == "image" else str(copy)
        if kind == "text":
            value = copy.read_text(encoding="utf-8", errors="replace")
        values[INPUT_KINDS.index(kind)] = value
        return values

    def translate(self, source, target, audio, drawing, text, file) -> list:
        """One translation, shown whole: readings, every stop in between, the output; or one line of error."""
        try:
            upload, shown = self._input(source, audio, drawing, text, file)
            cascade, notes = self.page.translate(source, target, file=upload, text=text if upload is None else None,
                                                 shown_name=shown)
        except ModgraphError as exc:
            return self.cleared(f"⚠ {exc}") + [None] * 5
        except Exception:
            logger.exception("translating on the page failed")
            return self.cleared(f"⚠ {INTERNAL_ERROR}") + [None] * 5
        dst = self.page.modality(target)
        between = []
        for i in range(MAX_BETWEEN):
            if i < len(cascade.between):
                stop = cascade.between[i]
                shown_stop = _show(output_kind(self.page.modality(stop.modality)), stop.files)
                between += [gr.update(visible=True), f"**Stop {i + 1}: {stop.modality}** — "
                            + doubt_line(f"{stop.modality}'s recognizer", "this", stop.probabilities[0]),
                            gr.update(value=shown_stop["image"], visible=shown_stop["image"] is not None),
                            gr.update(value=shown_stop["audio"], visible=shown_stop["audio"] is not None),
                            stop.probabilities[0]]
            else:
                between += [gr.update(visible=False), "", None, None, None]
        out = _show(output_kind(dst), cascade.target.files)
        files = [str(p) for p in cascade.target.files]
        lines = [doubt_line(f"{source}'s recognizer", "the input", cascade.source.probabilities[0]),
                 doubt_line(f"{target}'s recognizer", "the output", cascade.target.probabilities[0])]
        status = "Route: " + " → ".join(cascade.path) + "  \n" + "  \n".join(lines)
        notes = "  \n".join(f"Note: {n}" for n in notes)
        return [status, cascade.source.probabilities[0], notes, *between, cascade.target.probabilities[0],
                out["image"], out["audio"], out["text"], files[0] if out["file"] else None,
                files if len(files) > 1 and out["image"] else None]

    def _input(self, source, audio, drawing, text, file) -> tuple[Path | None, str | None]:
        kind = input_kind(self.page.modality(source))
        if kind == "audio" and audio:
            return Path(audio), Path(audio).name
        if kind == "image" and drawing:
            composite = drawing.get("composite") if isinstance(drawing, dict) else drawing
            if composite:
                layers = drawing.get("layers") if isinstance(drawing, dict) else None
                background = drawing.get("background") if isinstance(drawing, dict) else None
                name = "drawing.png" if layers else Path(background or composite).name
                return Path(composite), name
        if kind == "file" and file:
            return Path(file), Path(file).name
        return None, None

    def api_translate(self, source: str, target: str, file: str | None, text: str | None):
        """The API's ``/translate``: the target's files, the files of each stop in between, and a report."""
        try:
            upload = Path(file) if file else None
            cascade, notes = self.page.translate(source, target, file=upload, text=text or None,
                                                 shown_name=upload.name if upload else None)
        except ModgraphError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception:
            logger.exception("translating through the API failed")
            raise gr.Error(INTERNAL_ERROR, print_exception=False) from None
        report = {"route": cascade.path, "input_reading": cascade.source.probabilities[0],
                  "between": [{"modality": s.modality, "reading": s.probabilities[0]} for s in cascade.between],
                  "output_readings": cascade.target.probabilities, "notes": notes}
        return ([str(p) for p in cascade.target.files], [str(p) for s in cascade.between for p in s.files], report)

    # -- the page ---------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        names = self.names
        source0 = names[0] if names else None
        target0 = next((n for n in names if n != source0), source0)
        with gr.Blocks(title="modgraph", analytics_enabled=False) as demo:
            gr.Markdown("## modgraph: translate between modalities\nPick what you give and what you want back; "
                        "the page shows each modality the route passes through and what each recognizer reads.")
            with gr.Tab("Translate"):
                with gr.Row():
                    source = gr.Dropdown(names, value=source0, label="From", elem_id="source")
                    target = gr.Dropdown(names, value=target0, label="To", elem_id="target")
                route = gr.Markdown(elem_id="route")
                with gr.Row():
                    with gr.Column():
                        audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speak or upload a wav",
                                         elem_id="audio-in", visible=False)
                        drawing = gr.ImageEditor(type="filepath", label="Draw (or upload a picture)", elem_id="drawing-in",
                                                 sources=["upload"], canvas_size=(CANVAS, CANVAS), visible=False,
                                                 brush=gr.Brush(colors=["#ffffff"], default_color="#ffffff",
                                                                default_size=18, color_mode="fixed"),
                                                 layers=False, transforms=())
                        text = gr.Textbox(label="Type", elem_id="text-in", visible=False, max_length=1000)
                        file = gr.File(label="Upload a file", elem_id="file-in", visible=False, type="filepath")
                        examples = gr.Dataset(components=["textbox"], samples=[], type="index",
                                              label="Examples (one real test file per class)", elem_id="examples",
                                              visible=False)
                        examples_note = gr.Markdown(elem_id="examples-note")
                        go = gr.Button("Translate", variant="primary", elem_id="translate")
                    with gr.Column():
                        status = gr.Markdown(elem_id="status", elem_classes="modgraph-status")
                        input_label = gr.Label(num_top_classes=3, label="What the source's recognizer reads",
                                               elem_id="input-reading")
                        notes = gr.Markdown(elem_id="notes")
                        between = []
                        for i in range(MAX_BETWEEN):
                            with gr.Group(visible=False, elem_id=f"stop-{i + 1}") as group:
                                title = gr.Markdown()
                                picture = gr.Image(label="In between", interactive=False, elem_id=f"stop-{i + 1}-image",
                                                   height=240, elem_classes="modgraph-picture")
                                sound = gr.Audio(label="In between", interactive=False, elem_id=f"stop-{i + 1}-audio")
                                reading = gr.Label(num_top_classes=3, label="Read as")
                            between += [group, title, picture, sound, reading]
                        out_image = gr.Image(label="Output", interactive=False, elem_id="output-image", height=240,
                                             elem_classes="modgraph-picture")
                        out_audio = gr.Audio(label="Output", interactive=False, elem_id="output-audio")
                        out_text = gr.Textbox(label="Output", interactive=False, elem_id="output-text")
                        out_file = gr.File(label="Output", interactive=False, elem_id="output-file")
                        gallery = gr.Gallery(label="Samples", visible=False, elem_id="output-gallery")
                        output_label = gr.Label(num_top_classes=3, label="What the target's recognizer reads",
                                                elem_id="output-reading")
            with gr.Tab("Graph"):
                gr.Image(value=str(self.page.graph_picture()), label="The graph", interactive=False,
                         elem_id="graph-picture")
            # hidden components carrying the API's /translate
            api_source, api_target = gr.Textbox(visible=False), gr.Textbox(visible=False)
            api_file, api_text = gr.File(visible=False, type="filepath"), gr.Textbox(visible=False)
            api_out, api_between = gr.File(visible=False, file_count="multiple"), gr.File(visible=False,
                                                                                             file_count="multiple")
            api_report, api_button = gr.JSON(visible=False), gr.Button(visible=False)

            shown = [out_image, out_audio, out_text, out_file, gallery]
            outputs = [status, input_label, notes, *between, output_label, *shown]
            chosen = [route, audio, drawing, text, file, examples, examples_note, *outputs]
            for dropdown in (source, target):
                dropdown.change(self.choose, [source, target], chosen, api_visibility="private", queue=False)
            demo.load(self.choose, [source, target], chosen, api_visibility="private", queue=False)
            examples.click(self.example, [source, examples], [audio, drawing, text, file], api_visibility="private",
                           queue=False)
            go.click(self.translate, [source, target, audio, drawing, text, file], outputs, api_name="page_translate",
                     api_visibility="private",
                     concurrency_id="model")
            api_button.click(self.api_translate, [api_source, api_target, api_file, api_text],
                             [api_out, api_between, api_report], api_name="translate", concurrency_id="model")
        return demo
