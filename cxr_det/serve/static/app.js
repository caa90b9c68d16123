// cxr_det inference page: plain browser JavaScript, no build step, no external resources.
// Talks to the service of cxr_det/serve/app.py: GET /api/model, POST /api/predict.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // Colours readable on a grey-scale X-ray (none is grey), cycled by class index.
  const PALETTE = ["#ff5c5c", "#4dabf7", "#ffd43b", "#51cf66", "#e599f7", "#ff922b",
                   "#3bc9db", "#f783ac", "#a9e34b", "#9775fa", "#ffa8a8", "#74c0fc",
                   "#ffe066", "#8ce99a", "#faa2c1"];
  // clinical_used statuses of the API, in words.
  const STATUS_TEXT = { ok: "ok", missing: "not given", not_a_number: "not a number", out_of_range: "out of range",
                        unknown_category: "unknown category", converted: "converted" };
  const PREVIEW_TYPES = /^image\/(png|jpeg|gif|webp|bmp)$/;

  // Whether a PNG file stores 16 bits per sample (IHDR bit depth, byte 24): browsers show
  // such X-rays with their own, often wrong, reduction to 8 bits.
  async function isSixteenBitPng(file) {
    if (!/\.png$/i.test(file.name)) return false;
    const head = new Uint8Array(await file.slice(0, 25).arrayBuffer());
    return head.length === 25 && head[24] === 16;
  }

  const state = {
    model: null,        // GET /api/model
    apiKey: "",
    file: null,         // the File chosen
    result: null,       // the last POST /api/predict answer
    image: null,        // HTMLImageElement of the preview, or null (drawn as a placeholder)
    previewNote: "",
    threshold: 0.3,
  };
  window.cxrPage = state;  // for debugging in the browser console and for the browser test

  // ---------------------------------------------------------------- helpers
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-") || key.startsWith("aria-") || key === "for" || key === "role")
        node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined || value === "") return "—";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits ?? 2);
    return String(value);
  }

  function colourOf(category, categoryId) {
    const names = (state.model && state.model.class_names) || [];
    let index = names.indexOf(category);
    if (index < 0) index = Number.isInteger(categoryId) ? categoryId : 0;
    return PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];
  }

  function headers() {
    return state.apiKey ? { "X-API-Key": state.apiKey } : {};
  }

  function humanSize(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  // An error answer's message: FastAPI's {"detail": "..."} or its validation list.
  async function errorMessage(response) {
    let detail = "";
    try {
      const body = await response.json();
      detail = body.detail ?? body;
      if (Array.isArray(detail)) {
        detail = detail.map((d) => (d.loc ? `${d.loc.filter((p) => p !== "body").join(".")}: ` : "") + (d.msg || JSON.stringify(d))).join("; ");
      } else if (typeof detail !== "string") {
        detail = JSON.stringify(detail);
      }
    } catch (_) {
      detail = response.statusText || "";
    }
    return detail;
  }

  function showError(title, detail) {
    const box = $("error");
    box.replaceChildren(el("strong", { text: title }), detail ? el("span", { text: detail }) : null);
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").replaceChildren();
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function needKey(message) {
    $("apikey-row").hidden = false;
    showError("API key needed", message || "The server answered 401: enter its API key, then try again.");
    $("apikey").focus();
  }

  // ---------------------------------------------------------------- model description
  async function loadModel() {
    let response;
    try {
      response = await fetch("/api/model", { headers: headers() });
    } catch (err) {
      $("model-info").textContent = "The server cannot be reached.";
      showError("The server cannot be reached", String(err));
      return false;
    }
    if (response.status === 401) {
      $("model-info").textContent = "The server needs an API key.";
      needKey(await errorMessage(response));
      return false;
    }
    if (!response.ok) {
      showError(`The model description failed (${response.status})`, await errorMessage(response));
      return false;
    }
    state.model = await response.json();
    clearError();
    describeModel();
    buildClinicalForm();
    setupThreshold();
    updateButton();
    return true;
  }

  function describeModel() {
    const m = state.model;
    const names = m.class_names || [];
    const task = m.task === "classification" ? "Classification" : "Detection";
    const clinical = (m.clinical_features || []).length;
    $("model-info").textContent = `${task} model · ${names.length} classes: ${names.join(", ")}` +
      (clinical ? ` · uses ${clinical} clinical values` : " · image only");
  }

  function buildClinicalForm() {
    const features = state.model.clinical_features || [];
    const grid = $("clinical-fields");
    grid.replaceChildren();
    $("clinical").hidden = features.length === 0;
    $("no-clinical").hidden = features.length !== 0;
    for (const feature of features) {
      const id = `clin-${feature.name}`;
      const unit = feature.unit ? el("span", { class: "unit", text: feature.unit }) : null;
      const label = el("label", { for: id }, el("span", { text: feature.name }), unit);
      let input;
      let hintText = "";
      if (feature.kind === "category") {
        input = el("select", { id, name: feature.name });
        input.append(el("option", { value: "", text: "unknown" }));
        for (const value of feature.values || []) input.append(el("option", { value: String(value), text: String(value) }));
        hintText = (feature.values || []).length ? `one of ${(feature.values || []).join(", ")}` : "";
      } else {
        // Text, not type=number: the server cleans values as in training ("38.6" Celsius
        // becomes Fahrenheit, "8-9" becomes 8.5), so the browser must not refuse them.
        input = el("input", { id, name: feature.name, type: "text", inputMode: "decimal", autocomplete: "off" });
        const hasRange = feature.min !== null && feature.min !== undefined && feature.max !== null && feature.max !== undefined;
        if (hasRange) hintText = `plausible ${fmt(feature.min)}–${fmt(feature.max)}`;
        if (typeof feature.training_mean === "number") {
          hintText += `${hintText ? "; " : ""}blank → ${feature.training_mean.toFixed(1)}`;
          input.placeholder = "unknown";
        }
      }
      const hint = el("span", { class: "range", id: `${id}-hint`, text: hintText });
      input.setAttribute("aria-describedby", hint.id);
      grid.append(el("div", { class: "field" }, label, input, hint));
    }
  }

  function setupThreshold() {
    const slider = $("threshold");
    const low = typeof state.model.min_score === "number" ? state.model.min_score : 0;
    slider.min = String(Math.max(0, Math.floor(low * 100) / 100));
    slider.max = "1";
    const initial = typeof state.model.score_threshold === "number" ? state.model.score_threshold : 0.3;
    slider.value = String(Math.max(low, initial));
    state.threshold = Number(slider.value);
    $("threshold-value").textContent = state.threshold.toFixed(2);
  }

  // ---------------------------------------------------------------- file choice
  function chooseFile(file) {
    if (!file) return;
    state.file = file;
    $("file-name").replaceChildren("Selected: ", el("strong", { text: file.name }), ` (${humanSize(file.size)})`);
    clearError();
    updateButton();
  }

  function updateButton() {
    $("analyze").disabled = !state.file;
  }

  function setupDropzone() {
    const zone = $("dropzone");
    const input = $("file");
    input.addEventListener("change", () => chooseFile(input.files[0]));
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (event) => {
        event.preventDefault();
        event.dataTransfer.dropEffect = "copy";
        zone.classList.add("dragover");
      });
    }
    for (const name of ["dragleave", "dragend"]) zone.addEventListener(name, () => zone.classList.remove("dragover"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragover");
      const files = event.dataTransfer.files;
      if (files && files.length) {
        try { input.files = files; } catch (_) { /* older browsers: state.file is enough */ }
        chooseFile(files[0]);
      }
    });
    // A file dropped beside the zone must not make the browser leave the page to show it.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
  }

  // ---------------------------------------------------------------- prediction
  async function predict(event) {
    event.preventDefault();
    clearError();
    state.apiKey = $("apikey").value.trim();
    if (!state.model && !(await loadModel())) return;
    if (!state.file) {
      showError("No image chosen", "Drop an X-ray on the area above or choose a file.");
      return;
    }
    const form = new FormData();
    form.append("file", state.file, state.file.name);
    for (const feature of state.model.clinical_features || []) {
      const field = $(`clin-${feature.name}`);
      const value = field ? field.value.trim() : "";
      if (value !== "") form.append(feature.name, value);
    }
    // Ask for everything down to the lowest score the API gives: the slider filters locally.
    const low = typeof state.model.min_score === "number" ? state.model.min_score : 0;
    form.append("score_threshold", String(low));
    // Browsers decode PNG and JPEG (8-bit) themselves; for DICOM, TIFF or a 16-bit PNG the page
    // asks the server for its own rendering of the image (off by default: no pixels go back).
    if (!/\.(png|jpe?g)$/i.test(state.file.name) || (await isSixteenBitPng(state.file))) form.append("preview", "true");

    const button = $("analyze");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    setStatus("Analysing…");
    const started = performance.now();
    let response;
    try {
      response = await fetch("/api/predict", { method: "POST", body: form, headers: headers() });
    } catch (err) {
      setStatus("");
      showError("The server cannot be reached", String(err));
      return finishRequest();
    }
    if (!response.ok) {
      const detail = await errorMessage(response);
      setStatus("");
      if (response.status === 401) needKey(detail);
      else if (response.status === 413) showError("The file is too large for this server (413)", detail);
      else if (response.status === 400) showError("The server could not use this input (400)", detail);
      else showError(`The request failed (${response.status})`, detail);
      return finishRequest();
    }
    const result = await response.json();
    await showResult(result);
    setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
    finishRequest();
    $("results").focus({ preventScroll: true });
  }

  function finishRequest() {
    $("analyze").removeAttribute("aria-busy");
    updateButton();
  }

  function loadImage(src) {
    return new Promise((resolve) => {
      const image = new Image();
      image.onload = () => resolve(image.naturalWidth > 0 ? image : null);
      image.onerror = () => resolve(null);
      image.src = src;
    });
  }

  async function showResult(result) {
    state.result = result;
    // The preview: the server's 8-bit rendering if it sent one (any input format), else the
    // browser's own decoding (PNG, JPEG), else a placeholder of the image's size.
    state.image = null;
    state.previewNote = "";
    if (typeof result.preview === "string" && result.preview.startsWith("data:image/")) {
      state.image = await loadImage(result.preview);
    }
    if (!state.image && state.file && PREVIEW_TYPES.test(state.file.type)) {
      const url = URL.createObjectURL(state.file);
      state.image = await loadImage(url);
      URL.revokeObjectURL(url);
    }
    if (!state.image) state.previewNote = "No preview: this browser cannot display the file's format; boxes are drawn on its frame.";

    $("empty").hidden = true;
    $("result-body").hidden = false;
    renderStatic();
    render();
  }

  // ---------------------------------------------------------------- rendering
  function visibleDetections() {
    const detections = (state.result && state.result.detections) || [];
    return detections.filter((d) => d.score >= state.threshold - 1e-9);
  }

  function render() {
    if (!state.result) return;
    const shown = visibleDetections();
    const total = (state.result.detections || []).length;
    $("threshold-value").textContent = state.threshold.toFixed(2);
    $("count").textContent = `${shown.length} of ${total} finding${total === 1 ? "" : "s"} shown`;
    drawCanvas(shown);
    fillFindings(shown);
  }

  function drawCanvas(shown) {
    const canvas = $("canvas");
    const wrap = $("canvas-wrap");
    const size = state.result.image || {};
    const width = size.width || (state.image && state.image.naturalWidth) || 512;
    const height = size.height || (state.image && state.image.naturalHeight) || 512;
    // Fit the frame in the panel (and in the window's height): labels are drawn in screen
    // pixels, so they stay legible whether the X-ray is 200 or 4000 pixels wide.
    const maxW = Math.max(200, wrap.clientWidth);
    const maxH = Math.max(240, Math.min(window.innerHeight * 0.72, 960));
    const scale = Math.min(maxW / width, maxH / height);
    const cssW = Math.max(1, Math.round(width * scale));
    const cssH = Math.max(1, Math.round(height * scale));
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
    canvas.dataset.scale = String(scale * dpr);  // canvas pixels per image pixel

    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    if (state.image) {
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(state.image, 0, 0, cssW, cssH);
    } else {
      ctx.fillStyle = "#2a2f3a";
      ctx.fillRect(0, 0, cssW, cssH);
      ctx.fillStyle = "#c9ced8";
      ctx.font = "14px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "alphabetic";
      ctx.fillText(`${width} × ${height} px · no preview of this format`, cssW / 2, cssH - 14);
      ctx.textAlign = "left";
    }

    const gradcam = state.result.gradcam;
    if (state.gradcamImage && typeof gradcam === "string") {
      ctx.globalAlpha = 0.45;
      ctx.drawImage(state.gradcamImage, 0, 0, cssW, cssH);
      ctx.globalAlpha = 1;
    }

    const ellipses = Boolean(state.model && state.model.ellipses);
    const placed = [];
    ctx.font = "600 13px system-ui, -apple-system, 'Segoe UI', sans-serif";
    ctx.textBaseline = "top";
    // Highest scores last, so their outline and label lie on top.
    const order = shown.map((d, i) => [d, i]).sort((a, b) => a[0].score - b[0].score);
    for (const [det] of order) {
      const [x0, y0, x1, y1] = det.bbox.map((v) => v * scale);
      const colour = colourOf(det.category, det.category_id);
      ctx.lineWidth = 2.5;
      ctx.strokeStyle = "rgba(0, 0, 0, 0.65)";
      outline(ctx, x0, y0, x1, y1, ellipses, 4);
      ctx.lineWidth = 2;
      ctx.strokeStyle = colour;
      outline(ctx, x0, y0, x1, y1, ellipses, 0);
    }
    const all = state.result.detections || [];
    for (const [det] of order.slice().reverse()) {
      const [x0, y0, x1, y1] = det.bbox.map((v) => v * scale);
      label(ctx, `${all.indexOf(det) + 1} ${det.category} ${det.score.toFixed(2)}`, x0, y0, y1, cssW, cssH,
            colourOf(det.category, det.category_id), placed);
    }

    const names = shown.slice(0, 10).map((d) => `${d.category} ${d.score.toFixed(2)}`).join(", ");
    canvas.setAttribute("aria-label", `X-ray, ${width} by ${height} pixels, ${shown.length} findings drawn` +
      (names ? `: ${names}` : "") + (shown.length > 10 ? ", …" : ""));
    $("caption").textContent = `${width} × ${height} px` + (ellipses ? " · findings drawn as ellipses inscribed in their boxes" : "") +
      (state.previewNote ? ` · ${state.previewNote}` : "");
  }

  function outline(ctx, x0, y0, x1, y1, ellipse, grow) {
    ctx.beginPath();
    if (ellipse) {
      ctx.ellipse((x0 + x1) / 2, (y0 + y1) / 2, Math.max(1, (x1 - x0) / 2 + grow / 4), Math.max(1, (y1 - y0) / 2 + grow / 4), 0, 0, 2 * Math.PI);
    } else {
      ctx.rect(x0, y0, Math.max(1, x1 - x0), Math.max(1, y1 - y0));
    }
    ctx.stroke();
  }

  // A label tag above the box (inside it at the top edge), nudged so tags do not overlap.
  function label(ctx, text, x0, y0, y1, cssW, cssH, colour, placed) {
    const padX = 4;
    const h = 18;
    const w = Math.min(cssW, ctx.measureText(text).width + 2 * padX);
    let x = Math.min(Math.max(0, x0), cssW - w);
    let y = y0 - h >= 0 ? y0 - h : Math.max(0, y0);
    for (let tries = 0; tries < 12; tries++) {
      const hit = placed.find((r) => x < r.x + r.w && r.x < x + w && y < r.y + r.h && r.y < y + h);
      if (!hit) break;
      y = hit.y + hit.h + 1;
      if (y + h > cssH) { y = Math.max(0, hit.y - h - 1); break; }
    }
    placed.push({ x, y, w, h });
    ctx.fillStyle = colour;
    ctx.fillRect(x, y, w, h);
    ctx.fillStyle = textColourOn(colour);
    ctx.fillText(text, x + padX, y + 3, w - 2 * padX);
  }

  function textColourOn(hex) {
    const n = parseInt(hex.slice(1), 16);
    const r = (n >> 16) & 255, g = (n >> 8) & 255, b = n & 255;
    return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#111" : "#fff";
  }

  function fillFindings(shown) {
    const detection = !(state.model && state.model.task === "classification") || (state.result.detections || []).length;
    $("findings-block").hidden = !detection;
    const body = $("findings").querySelector("tbody");
    const all = state.result.detections || [];
    body.replaceChildren(...shown.map((d) => {
      const index = all.indexOf(d) + 1;
      const box = d.bbox.map((v) => Math.round(v)).join(", ");
      return el("tr", {},
        el("td", { class: "num", text: String(index) }),
        el("td", {}, el("span", { class: "cls" },
          el("span", { class: "swatch", style: `background:${colourOf(d.category, d.category_id)}`, "aria-hidden": "true" }),
          el("span", { text: d.category }))),
        el("td", { class: "num", text: d.score.toFixed(3) }),
        el("td", { class: "box", text: box }));
    }));
    $("no-findings").hidden = shown.length !== 0;
  }

  // What does not change with the threshold: image-level probabilities, labels, clinical
  // values, warnings.
  function renderStatic() {
    const result = state.result;
    // Findings are numbered by the server's order (highest score first).
    result.detections = (result.detections || []).slice().sort((a, b) => b.score - a.score);

    const scores = Object.entries(result.image_scores || {}).sort((a, b) => b[1] - a[1]);
    $("scores-block").hidden = scores.length === 0;
    $("image-scores").querySelector("tbody").replaceChildren(...scores.map(([name, p]) => {
      const bar = el("div", { class: "bar", role: "presentation" }, el("span"));
      bar.firstChild.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
      bar.firstChild.style.background = colourOf(name);
      return el("tr", {}, el("td", {}, name), el("td", { class: "num", text: p.toFixed(3) }), el("td", {}, bar));
    }));

    const labels = normaliseLabels(result.labels);
    $("labels-block").hidden = labels.length === 0;
    $("labels").querySelector("tbody").replaceChildren(...labels.map((l) => el("tr", {},
      el("td", { text: l.name }), el("td", { class: "num", text: fmt(l.probability, 3) }),
      el("td", { text: l.decision === true ? "positive" : l.decision === false ? "negative" : fmt(l.decision) }))));

    const used = Object.entries(result.clinical_used || {});
    $("clinical-used-block").hidden = used.length === 0;
    $("clinical-used").querySelector("tbody").replaceChildren(...used.map(([name, info]) => {
      info = info || {};
      const status = String(info.status ?? "");
      const imputed = info.value === null || info.value === undefined;
      return el("tr", {}, el("td", { text: name }), el("td", { text: fmt(info.raw) }),
        el("td", imputed ? { class: "imputed", text: "imputed" } : { text: fmt(info.value, 1) }),
        el("td", { class: `status-${status.replace(/[^a-z_]/gi, "_")}`, text: STATUS_TEXT[status] || status || "—" }));
    }));

    const warnings = result.warnings || [];
    $("warnings").hidden = warnings.length === 0;
    $("warnings").replaceChildren(...warnings.map((w) => el("li", { text: typeof w === "string" ? w : JSON.stringify(w) })));

    state.gradcamImage = null;
    if (typeof result.gradcam === "string" && result.gradcam.startsWith("data:image/")) {
      loadImage(result.gradcam).then((image) => { state.gradcamImage = image; render(); });
    }
  }

  // Labels of a classification model, as a list of {name, probability, decision}; accepts a
  // list of records or an object keyed by label.
  function normaliseLabels(labels) {
    if (!labels) return [];
    if (Array.isArray(labels)) {
      return labels.map((l) => ({ name: l.name ?? l.label ?? l.category ?? "?", probability: l.probability ?? l.score,
                                  decision: l.decision ?? l.positive }));
    }
    return Object.entries(labels).map(([name, v]) => (typeof v === "number" ? { name, probability: v }
      : { name, probability: v.probability ?? v.score, decision: v.decision ?? v.positive }));
  }

  function download() {
    if (!state.result) return;
    const copy = Object.assign({}, state.result);
    delete copy.preview;   // the server's rendering of the image: not part of the findings
    delete copy.gradcam;
    copy.source_file = state.file ? state.file.name : null;
    copy.score_threshold_shown = state.threshold;
    const blob = new Blob([JSON.stringify(copy, null, 2) + "\n"], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const stem = state.file ? state.file.name.replace(/\.[^.]+$/, "") : "prediction";
    const link = el("a", { href: url, download: `${stem}.findings.json` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ---------------------------------------------------------------- start
  function start() {
    setupDropzone();
    $("predict-form").addEventListener("submit", predict);
    $("threshold").addEventListener("input", (event) => {
      state.threshold = Number(event.target.value);
      render();
    });
    $("download").addEventListener("click", download);
    $("apikey").addEventListener("change", () => {
      state.apiKey = $("apikey").value.trim();
      if (!state.model) loadModel();
    });
    let pending = 0;
    window.addEventListener("resize", () => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(render);
    });
    loadModel();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
