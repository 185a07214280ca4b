// The web client of mmserve: pick a model, send any mix of text, image and audio, show the answer.
//
// Plain ES module, no build step, no network beyond the service itself. Every URL is relative
// (v1/models, never /v1/models) so the page works behind a proxy or under a path prefix.

import { blobToWav } from "./wav.js";

const $ = (id) => document.getElementById(id);
const MODALITIES = ["text", "image", "audio"];
const DEFAULT_RECORD_SECONDS = 30;
const MAX_LABELS_LISTED = 12;

const ERROR_TITLES = {
  400: "The request was malformed",
  401: "An API key is needed",
  404: "Not found",
  413: "Too large",
  415: "Unsupported format",
  422: "The input was not accepted",
  429: "The service is busy",
  503: "The model is not ready",
  504: "No answer in time",
};

const TIMING_NAMES = {
  decode_features: "Decoding and features",
  queue: "Waiting for a batch",
  inference: "Inference",
  total: "Total in the service",
};

const state = {
  models: [],
  detail: null, // GET v1/models/{name} of the chosen model, or its summary if that failed
  image: null, // File
  audio: null, // { blob, name }
  recorder: null,
  urls: { image: null, audio: null },
};

// ---- talking to the service ----------------------------------------------------------------

/** An error answer of the service: {"error": {code, message, field, request_id}}. */
class ServiceError extends Error {
  constructor(response, body) {
    const detail = (body && body.error) || {};
    super(detail.message || fallbackMessage(response, body));
    this.status = response.status;
    this.code = detail.code || null;
    this.field = detail.field ?? null;
    this.requestId = detail.request_id || response.headers.get("x-request-id");
    this.retryAfter = response.headers.get("retry-after");
  }
}

function fallbackMessage(response, body) {
  // Not the service's shape: a proxy's error page, or a framework error with "detail".
  if (body && Array.isArray(body.detail) && body.detail[0] && body.detail[0].msg) {
    return body.detail[0].msg;
  }
  if (body && typeof body.detail === "string") return body.detail;
  return `HTTP ${response.status} ${response.statusText}`.trim();
}

async function readJson(response) {
  if (!(response.headers.get("content-type") || "").includes("json")) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

async function request(url, options = {}) {
  let response;
  try {
    response = await fetchWithApiKey(url, { ...options, headers: { Accept: "application/json" } });
  } catch (cause) {
    throw new Error(`Could not reach the service (${cause.message}).`);
  }
  const body = await readJson(response);
  if (!response.ok) throw new ServiceError(response, body);
  if (body === null) throw new Error(`The service answered HTTP ${response.status} without JSON.`);
  return body;
}

function modelUrl(name, suffix = "") {
  return `v1/models/${encodeURIComponent(name)}${suffix}`;
}

// ---- API key -------------------------------------------------------------------------------
// Asked for when the service answers 401, kept in sessionStorage (this tab only, gone when it
// closes) and sent as X-API-Key with every request after that.

const API_KEY_STORAGE = "mmserve.apiKey";
let apiKeyPrompt = null; // one dialog at a time, however many requests were refused

function storedApiKey() {
  try {
    return sessionStorage.getItem(API_KEY_STORAGE);
  } catch {
    return null; // storage disabled: the key is asked for again on the next refusal
  }
}

function withApiKey(options) {
  const key = storedApiKey();
  return key ? { ...options, headers: { ...options.headers, "X-API-Key": key } } : options;
}

function askForApiKey(rejected) {
  if (apiKeyPrompt) return apiKeyPrompt;
  const dialog = $("key-dialog");
  $("key-message").textContent = rejected
    ? "The service did not accept that key. Check it and try again."
    : "This service needs an API key. It is kept for this tab only.";
  $("api-key").value = "";
  dialog.returnValue = "";
  dialog.showModal();
  apiKeyPrompt = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        apiKeyPrompt = null;
        resolve(dialog.returnValue === "ok" ? $("api-key").value.trim() || null : null);
      },
      { once: true },
    );
  });
  return apiKeyPrompt;
}

async function fetchWithApiKey(url, options) {
  let response = await fetch(url, withApiKey(options));
  while (response.status === 401) {
    const key = await askForApiKey(storedApiKey() !== null);
    if (!key) return response; // cancelled: the 401 is shown as an error
    try {
      sessionStorage.setItem(API_KEY_STORAGE, key);
    } catch {
      return fetch(url, { ...options, headers: { ...options.headers, "X-API-Key": key } });
    }
    response = await fetch(url, withApiKey(options));
  }
  return response;
}

function wireApiKeyDialog() {
  $("key-cancel").addEventListener("click", () => $("key-dialog").close("cancel"));
}

// ---- models --------------------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  let list;
  try {
    list = await request("v1/models");
  } catch (error) {
    select.replaceChildren(new Option("(unavailable)"));
    showError(error, "Could not list the models");
    return;
  }
  state.models = list.models || [];
  if (state.models.length === 0) {
    select.replaceChildren(new Option("(no model loaded)"));
    const failed = (list.failed || []).map((f) => `${f.name}/${f.version}: ${f.reason}`);
    showError(new Error(failed.join("; ") || "The service has no model."), "No model is served");
    return;
  }
  select.replaceChildren(...state.models.map((m) => new Option(m.name, m.name)));
  const wanted = new URLSearchParams(window.location.search).get("model");
  const names = state.models.map((m) => m.name);
  select.value = [wanted, list.default_model, names[0]].find((n) => names.includes(n));
  select.disabled = false;
  await selectModel(select.value);
}

async function selectModel(name, version = null) {
  const summary = state.models.find((m) => m.name === name);
  const versionSelect = $("version");
  if (version === null) {
    versionSelect.replaceChildren(
      ...summary.versions.map((v) => new Option(v === summary.version ? `${v} (latest)` : v, v)),
    );
    versionSelect.value = summary.version;
  }
  versionSelect.disabled = summary.versions.length < 2;
  const query = version ? `?version=${encodeURIComponent(version)}` : "";
  try {
    state.detail = await request(modelUrl(name, query));
    clearError();
  } catch (error) {
    // The list already says what the model takes; the details only add labels and limits.
    state.detail = { ...summary, tasks: summary.tasks.map((t) => ({ name: t, labels: [] })) };
    showError(error, `Could not describe ${name}`);
  }
  renderModel(state.detail);
  $("submit").disabled = false;
  document.body.dataset.model = name;
}

function renderModel(detail) {
  $("model-description").textContent = detail.description || "";
  const facts = $("model-facts");
  facts.replaceChildren();
  const fact = (term, value) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = value;
    facts.append(dt, dd);
  };
  fact("Takes", detail.modalities.join(", "));
  for (const task of detail.tasks) {
    const labels = task.labels.length > MAX_LABELS_LISTED
      ? `${task.labels.slice(0, MAX_LABELS_LISTED).join(", ")}, … (${task.labels.length} labels)`
      : task.labels.join(", ") || "(labels unknown)";
    fact(`Task “${task.name}”`, `${labels}${task.description ? ` (${task.description})` : ""}`);
  }
  if (detail.fusion) fact("Fusion", detail.fusion.replaceAll("_", " "));
  if (detail.limits) {
    const l = detail.limits;
    fact(
      "Limits",
      `${formatBytes(l.max_upload_bytes)} per file, ${l.max_audio_seconds} s of audio, ` +
        `${l.max_text_chars} characters of text`,
    );
    $("text").maxLength = l.max_text_chars;
  }
  for (const modality of MODALITIES) {
    const card = $(`${modality}-card`);
    const takes = detail.modalities.includes(modality);
    card.disabled = !takes;
    card.classList.toggle("is-off", !takes);
  }
}

// ---- inputs --------------------------------------------------------------------------------

function setImage(file) {
  state.image = file;
  replaceUrl("image", file);
  const img = $("image-preview");
  $("image-figure").hidden = !file;
  $("image-clear").hidden = !file;
  if (!file) {
    $("image").value = "";
    img.removeAttribute("src");
    return;
  }
  img.hidden = false;
  img.alt = `Preview of ${file.name}`;
  img.src = state.urls.image;
  $("image-caption").textContent = `${file.name} · ${formatBytes(file.size)}`;
}

function onPreviewError() {
  // Not every format the service reads can be shown (TIFF), and a broken file cannot either:
  // the service has the last word, so keep the file and say so.
  if (!state.image) return;
  $("image-preview").hidden = true;
  $("image-caption").textContent =
    `${state.image.name} · ${formatBytes(state.image.size)} · this browser cannot show it`;
}

function setAudio(blob, name) {
  state.audio = blob ? { blob, name } : null;
  replaceUrl("audio", blob);
  const player = $("audio-player");
  $("audio-figure").hidden = !blob;
  $("audio-clear").hidden = !blob;
  if (!blob) {
    $("audio").value = "";
    player.removeAttribute("src");
    player.load();
    return;
  }
  player.src = state.urls.audio;
  $("audio-caption").textContent = `${name} · ${formatBytes(blob.size)}`;
}

function replaceUrl(kind, blob) {
  if (state.urls[kind]) URL.revokeObjectURL(state.urls[kind]);
  state.urls[kind] = blob ? URL.createObjectURL(blob) : null;
}

function enableDrop(zone, input, onFile) {
  const card = zone.closest("fieldset");
  const over = (event) => {
    event.preventDefault();
    if (!card.disabled) zone.classList.add("is-over");
  };
  zone.addEventListener("dragenter", over);
  zone.addEventListener("dragover", over);
  zone.addEventListener("dragleave", () => zone.classList.remove("is-over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("is-over");
    const file = event.dataTransfer.files[0];
    if (card.disabled || !file) return;
    input.files = event.dataTransfer.files;
    onFile(file);
  });
}

// ---- recording -----------------------------------------------------------------------------

async function toggleRecording() {
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  const status = $("record-status");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
    status.textContent =
      "This browser cannot record here: the microphone needs HTTPS, or a page on localhost.";
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    status.textContent = `No microphone: ${error.message}`;
    return;
  }
  startRecorder(stream);
}

function startRecorder(stream) {
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  const limit = (state.detail && state.detail.limits && state.detail.limits.max_audio_seconds) ||
    DEFAULT_RECORD_SECONDS;
  const started = performance.now();
  const status = $("record-status");
  const tick = () => {
    const seconds = (performance.now() - started) / 1000;
    status.textContent = `Recording… ${seconds.toFixed(0)} s of at most ${limit} s`;
    if (seconds >= limit && recorder.state === "recording") recorder.stop();
  };
  const timer = setInterval(tick, 250);
  recorder.addEventListener("dataavailable", (event) => {
    if (event.data.size > 0) chunks.push(event.data);
  });
  recorder.addEventListener("stop", async () => {
    clearInterval(timer);
    for (const track of stream.getTracks()) track.stop();
    state.recorder = null;
    setRecordButton(false);
    if (recorder.discarded) return;
    status.textContent = "Converting the recording to WAV…";
    try {
      const wav = await blobToWav(new Blob(chunks, { type: recorder.mimeType }));
      $("audio").value = "";
      setAudio(wav, "recording.wav");
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      status.textContent = `Recorded ${seconds} s, ready to send as WAV.`;
    } catch (error) {
      status.textContent = `Could not convert the recording: ${error.message}`;
    }
  });
  state.recorder = recorder;
  recorder.start();
  setRecordButton(true);
  tick();
}

function setRecordButton(recording) {
  const button = $("record");
  button.setAttribute("aria-pressed", String(recording));
  button.classList.toggle("is-recording", recording);
  $("record-label").textContent = recording ? "Stop recording" : "Record from the microphone";
}

// ---- predicting ----------------------------------------------------------------------------

function buildForm() {
  const takes = new Set(state.detail.modalities);
  const form = new FormData();
  const text = $("text").value;
  if (takes.has("text") && text.trim() !== "") form.append("text", text);
  if (takes.has("image") && state.image) form.append("image", state.image, state.image.name);
  if (takes.has("audio") && state.audio) form.append("audio", state.audio.blob, state.audio.name);
  return form;
}

async function predict(event) {
  event.preventDefault();
  if (!state.detail) return;
  const form = buildForm();
  if ([...form.keys()].length === 0) {
    showError(new Error("Type some text, choose an image or add a sound first."), "Nothing to send");
    return;
  }
  const params = new URLSearchParams({ top_k: $("top-k").value || "3" });
  const latest = state.models.find((m) => m.name === state.detail.name).version;
  if (state.detail.version !== latest) params.set("version", state.detail.version);
  const url = modelUrl(state.detail.name, `/predict?${params}`);
  setBusy(true);
  const started = performance.now();
  try {
    const answer = await request(url, { method: "POST", body: form });
    clearError();
    renderAnswer(answer, performance.now() - started);
  } catch (error) {
    showError(error);
  } finally {
    setBusy(false);
  }
}

function setBusy(busy) {
  $("submit").disabled = busy;
  $("busy").textContent = busy ? "Asking the model…" : "";
  $("result").setAttribute("aria-busy", String(busy));
}

// ---- showing answers -----------------------------------------------------------------------

function renderAnswer(answer, roundTripMs) {
  $("result-summary").textContent =
    `${answer.model} version ${answer.version} · from ${answer.modalities.join(", ")} · ` +
    `request ${answer.request_id}`;
  const tasks = Object.entries(answer.tasks).map(([name, prediction]) =>
    taskSection(name, prediction, answer.ood),
  );
  $("tasks").replaceChildren(...tasks);
  renderContributions(answer);
  renderTimings(answer, roundTripMs);
  $("raw-json").textContent = JSON.stringify(answer, null, 2);
  $("result").hidden = false;
  $("result").scrollIntoView({ block: "nearest" });
  document.body.dataset.answer = answer.request_id;
}

function taskSection(name, prediction, ood) {
  const section = element("section", "task");
  section.dataset.task = name;
  const heading = element("h3", "task-name", name);
  const top = element("p", "top");
  top.append(
    element("span", "top-label", prediction.label),
    element("span", "top-probability", formatPercent(prediction.probability)),
  );
  // The model's label stands, but the inputs look unlike its training data: say so next to it.
  if (ood && ood.unsure && ood.task === name) {
    const mark = element("span", "unsure", "unsure: the inputs look unlike the training data");
    mark.title = `out-of-distribution score ${ood.score.toFixed(3)} > threshold ${ood.threshold.toFixed(3)}`;
    top.append(mark);
  }
  const bars = element("ol", "bars");
  bars.setAttribute("aria-label", `Most probable labels for ${name}`);
  for (const { label, probability } of prediction.top_k) {
    bars.append(barRow(label, probability, label === prediction.label));
  }
  section.append(heading, top, bars);
  return section;
}

function renderContributions(answer) {
  const box = $("contributions");
  if (!answer.contributions) {
    box.replaceChildren(element("p", "muted", "This model does not report contributions."));
    return;
  }
  const bars = element("ol", "bars");
  bars.setAttribute("aria-label", "Contribution of each input");
  for (const [modality, weight] of Object.entries(answer.contributions)) {
    const sent = answer.modalities.includes(modality);
    const row = barRow(sent ? modality : `${modality} (not sent)`, weight, false);
    row.dataset.modality = modality;
    bars.append(row);
  }
  box.replaceChildren(bars);
}

function renderTimings(answer, roundTripMs) {
  const list = $("timings");
  list.replaceChildren();
  const rows = Object.entries(answer.timings_ms).map(([k, v]) => [TIMING_NAMES[k] || k, v]);
  rows.push(["Round trip seen by this page", roundTripMs]);
  for (const [name, ms] of rows) {
    list.append(element("dt", "", name), element("dd", "", formatMs(ms)));
  }
  list.append(element("dt", "", "Batch size"), element("dd", "", String(answer.batch_size)));
}

function barRow(label, value, isTop) {
  const row = element("li", isTop ? "bar-row is-top" : "bar-row");
  const bar = element("span", "bar");
  const fill = element("span", "bar-fill");
  bar.setAttribute("aria-hidden", "true");
  fill.style.setProperty("--value", String(Math.max(0, Math.min(1, value))));
  bar.append(fill);
  row.append(element("span", "bar-label", label), bar, element("span", "bar-value", formatPercent(value)));
  return row;
}

function showError(error, title = null) {
  const status = error.status;
  $("error-title").textContent = title || ERROR_TITLES[status] ||
    (status >= 500 ? "The service failed" : "Something went wrong");
  $("error-message").textContent = error.message;
  const details = [];
  if (status === 429) {
    details.push(error.retryAfter
      ? `Retry after ${error.retryAfter} s.`
      : "Retry in a moment.");
  }
  if (error.field) details.push(`Field: ${error.field}.`);
  if (error.code) details.push(`Code: ${error.code} (HTTP ${status}).`);
  if (error.requestId) details.push(`Request id: ${error.requestId}.`);
  $("error-details").textContent = details.join(" ");
  for (const modality of MODALITIES) {
    $(`${modality}-card`).classList.toggle("has-error", error.field === modality);
  }
  clearAnswer(); // an answer left on screen would read as the answer to what failed
  $("error").hidden = false;
  $("error").scrollIntoView({ block: "nearest" });
  document.body.dataset.error = error.code || "error";
}

/** Hide and empty the answer, so that no earlier answer can be taken for a current one. */
function clearAnswer() {
  $("result").hidden = true;
  for (const id of ["result-summary", "tasks", "contributions", "timings", "raw-json"]) {
    $(id).replaceChildren();
  }
  delete document.body.dataset.answer;
}

function clearError() {
  $("error").hidden = true;
  for (const modality of MODALITIES) $(`${modality}-card`).classList.remove("has-error");
  delete document.body.dataset.error;
}

// ---- small helpers -------------------------------------------------------------------------

function element(tag, className, text = null) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== null) node.textContent = text;
  return node;
}

function formatPercent(p) {
  if (p > 0 && p < 0.0005) return "< 0.1 %"; // not a flat zero: the model did not rule it out
  return `${(100 * p).toFixed(1)} %`;
}

function formatMs(ms) {
  return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
}

function formatBytes(n) {
  if (n < 1000) return `${n} B`;
  if (n < 1_000_000) return `${(n / 1000).toFixed(1)} kB`;
  return `${(n / 1_000_000).toFixed(1)} MB`;
}

// ---- wiring --------------------------------------------------------------------------------

function main() {
  $("model").addEventListener("change", (e) => selectModel(e.target.value));
  $("version").addEventListener("change", (e) => selectModel($("model").value, e.target.value));
  $("image").addEventListener("change", (e) => setImage(e.target.files[0] || null));
  $("audio").addEventListener("change", (e) => {
    const file = e.target.files[0] || null;
    setAudio(file, file && file.name);
  });
  $("image-preview").addEventListener("error", onPreviewError);
  $("image-clear").addEventListener("click", () => setImage(null));
  $("audio-clear").addEventListener("click", () => setAudio(null));
  $("record").addEventListener("click", toggleRecording);
  enableDrop($("image-drop"), $("image"), setImage);
  enableDrop($("audio-drop"), $("audio"), (file) => setAudio(file, file.name));
  // A file dropped beside a drop zone would make the browser leave the page to show it.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
  $("predict-form").addEventListener("submit", predict);
  $("clear-inputs").addEventListener("click", () => {
    if (state.recorder) {
      state.recorder.discarded = true;
      state.recorder.stop();
    }
    $("text").value = "";
    setImage(null);
    setAudio(null);
    $("record-status").textContent = "";
    clearError();
    clearAnswer();
  });
  wireApiKeyDialog();
  loadModels();
}

main();
