// modgraph serve: the page's logic. Plain JS, no libraries; talks to /api/* of the same server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { modalities: {}, pending: null, drawn: false, recorder: null, routeAsked: 0 };

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new Error(`the server answered ${response.status} ${response.statusText}`);
  }
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body;
}

function percent(p) {
  return (100 * p).toFixed(1) + "%";
}

function readingLine(who, what, reading) {
  const others = reading.top.slice(1).map((r) => `${r.class} ${percent(r.confidence)}`).join(", ");
  return `${who}'s recognizer reads ${what} as <b class="class">${escapeHTML(reading.class)}</b> ` +
    `(${percent(reading.confidence)})` + (others ? ` <small>then ${escapeHTML(others)}</small>` : "");
}

function escapeHTML(text) {
  const div = document.createElement("div");
  div.textContent = String(text);
  return div.innerHTML;
}

// -- choosing modalities ---------------------------------------------------------------
async function loadModalities() {
  const body = await getJSON("/api/modalities");
  const usable = body.modalities.filter((m) => m.usable);
  $("registry").textContent = `Registry ${body.registry}: ${usable.length} trained modalities` +
    (usable.length < body.modalities.length ? ` (${body.modalities.length - usable.length} without their plugin here)` : "");
  for (const m of usable) state.modalities[m.name] = m;
  for (const id of ["source", "target"]) {
    const select = $(id);
    select.innerHTML = "";
    for (const m of usable) select.add(new Option(`${m.name} (${m.input})`, m.name));
  }
  if (usable.length > 1) $("target").selectedIndex = 1;
  if (!usable.length) showError("This registry has no trained modality whose plugin is installed here.");
  await sourceChanged();
}

async function updateRoute() {
  const source = $("source").value, target = $("target").value;
  if (!source || !target) return;
  const asked = ++state.routeAsked;  // answers can arrive out of order: only the latest question's counts
  try {
    const body = await getJSON(`/api/route?source=${encodeURIComponent(source)}&target=${encodeURIComponent(target)}`);
    if (asked !== state.routeAsked) return;
    const acc = body.accuracies.map((a) => (a == null ? "?" : percent(a))).join(", ");
    $("route").textContent = `Route: ${body.path.join(" → ")}` + (acc ? ` (associator test accuracy ${acc})` : "");
    $("translate").disabled = false;
  } catch (e) {
    if (asked !== state.routeAsked) return;
    $("route").textContent = `No route: ${e.message}`;
    $("translate").disabled = true;
  }
}

async function sourceChanged() {
  const m = state.modalities[$("source").value];
  state.pending = null;
  $("chosen").textContent = "";
  $("file").value = "";
  if (!m) return;
  for (const kind of ["image", "audio", "text"]) $(`input-${kind}`).hidden = m.input !== kind;
  $("file").accept = m.suffixes.join(",");
  $("input-reading").innerHTML = "";
  await updateRoute();
  loadGallery(m.name);
}

// -- inputs ----------------------------------------------------------------------------------
function setupCanvas() {
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  const clear = () => {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    state.drawn = false;
  };
  clear();
  let last = null;
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    last = point(e);
    canvas.setPointerCapture(e.pointerId);
    state.pending = null;
    $("chosen").textContent = "";
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = point(e);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 22;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(last[0], last[1]);
    ctx.lineTo(p[0], p[1]);
    ctx.stroke();
    last = p;
    state.drawn = true;
  });
  const up = () => { last = null; };
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointercancel", up);
  $("clear").addEventListener("click", clear);
}

function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + 2 * samples.length), view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + 2 * i, v < 0 ? v * 0x8000 : v * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

// MediaRecorder gives compressed audio (webm/ogg): decode it, resample to 16 kHz mono, write a WAV.
async function recordingToWav(blob) {
  const rate = 16000;
  const context = new AudioContext();
  const decoded = await context.decodeAudioData(await blob.arrayBuffer());
  context.close();
  const offline = new OfflineAudioContext(1, Math.max(1, Math.ceil(decoded.duration * rate)), rate);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const rendered = await offline.startRendering();
  return encodeWav(rendered.getChannelData(0), rate);
}

async function toggleRecording() {
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("This browser cannot record here (microphones need a page on localhost or https); upload a wav instead.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    showError(`No microphone: ${e.message}`);
    return;
  }
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    state.recorder = null;
    $("record").textContent = "Record";
    $("record-state").textContent = "";
    try {
      const wav = await recordingToWav(new Blob(chunks, { type: recorder.mimeType }));
      setPending(wav, "recording.wav");
      $("recorded").src = URL.createObjectURL(wav);
      $("recorded").hidden = false;
    } catch (e) {
      showError(`The recording could not be converted to WAV: ${e.message}`);
    }
  };
  recorder.start();
  state.recorder = recorder;
  $("record").textContent = "Stop";
  $("record-state").textContent = "Recording… say one word, then Stop.";
}

function setPending(blob, name) {
  state.pending = { blob, name };
  $("chosen").textContent = `Input: ${name}`;
}

// -- translating --------------------------------------------------------------------------------
async function currentInput(m) {
  if (state.pending) return { file: state.pending };
  if (m.input === "image" && state.drawn) {
    const blob = await new Promise((resolve) => $("canvas").toBlob(resolve, "image/png"));
    return { file: { blob, name: "drawing.png" } };
  }
  if (m.input === "text" && $("text").value.trim()) return { text: $("text").value };
  return null;
}

async function translate() {
  const m = state.modalities[$("source").value];
  if (!m) return;
  const input = await currentInput(m);
  if (!input) {
    showError({ image: "Draw something or upload an image first.", audio: "Record or upload a wav first.",
      text: "Type something first." }[m.input] || `Upload a ${m.suffixes.join(" / ")} file first.`);
    return;
  }
  const form = new FormData();
  form.append("source", m.name);
  form.append("target", $("target").value);
  if (input.file) form.append("file", input.file.blob, input.file.name);
  else form.append("text", input.text);
  $("translate").disabled = true;
  $("result").textContent = "Translating…";
  try {
    const body = await getJSON("/api/translate", { method: "POST", body: form });
    showError("");
    showResult(body);
  } catch (e) {
    $("result").textContent = "";
    $("output-reading").innerHTML = "";
    $("input-reading").innerHTML = "";
    showError(e.message);
  } finally {
    $("translate").disabled = false;
  }
}

function outputHTML(out, cssClass) {
  if (out.kind === "image") return `<img class="${cssClass}" src="${out.url}" alt="${escapeHTML(out.name)}">`;
  if (out.kind === "audio") {
    return `<audio controls src="${out.url}"></audio>` +
      `<img class="spectrogram" src="${out.spectrogram}" alt="spectrogram">`;
  }
  if (out.kind === "text") return `<pre class="text-output">${escapeHTML(out.text)}</pre>`;
  return `<a href="${out.url}" download>${escapeHTML(out.name)}</a>`;
}

function showResult(body) {
  const source = body.path[0], target = body.path[body.path.length - 1];
  $("result").innerHTML = outputHTML(body.output, "upscaled") +
    `<p><a href="${body.output.url}" download>Download ${escapeHTML(body.output.name)}</a></p>`;
  $("input-reading").innerHTML = readingLine(source, "the input", body.input_reading);
  $("output-reading").innerHTML = readingLine(target, "the translation", body.output_reading) +
    `<br><small>route ${escapeHTML(body.path.join(" → "))}</small>`;
  $("notes").textContent = body.notes.length ? `Notes: ${body.notes.join("; ")}` : "";
}

// -- gallery ---------------------------------------------------------------------------------------
async function loadGallery(name) {
  $("gallery-name").textContent = name;
  $("gallery").textContent = "Loading…";
  let body;
  try {
    body = await getJSON(`/api/gallery/${encodeURIComponent(name)}`);
  } catch (e) {
    $("gallery").textContent = e.message;
    return;
  }
  if ($("source").value !== name) return;
  $("gallery").innerHTML = "";
  if (!body.samples.length) $("gallery").textContent = body.why || "No test samples.";
  for (const sample of body.samples) {
    const figure = document.createElement("figure");
    const picture = sample.kind === "audio" ? `<img class="spectrogram" src="${sample.spectrogram}" alt="">` :
      sample.kind === "image" ? `<img src="${sample.url}" alt="">` :
      sample.kind === "text" ? `<pre>${escapeHTML(sample.text)}</pre>` : "";
    figure.innerHTML = `${picture}<figcaption>${escapeHTML(sample.class)}</figcaption>`;
    figure.addEventListener("click", async () => {
      const blob = await (await fetch(sample.url)).blob();
      setPending(blob, sample.name);
      translate();
    });
    $("gallery").appendChild(figure);
  }
}

// -- wiring ----------------------------------------------------------------------------------------
$("source").addEventListener("change", sourceChanged);
$("target").addEventListener("change", updateRoute);
$("translate").addEventListener("click", translate);
$("record").addEventListener("click", toggleRecording);
$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) setPending(file, file.name);
});
setupCanvas();
loadModalities().catch((e) => showError(`Could not load the registry: ${e.message}`));
