// Operator scoring page: plain JS, no external code (the robot network reaches nothing outside).
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];
const PLOT_POINTS = 600; // polyline points per joint at most: enough for the eye, cheap to redraw

const state = {
  config: null, episodes: [], current: null, step: 0, playing: false, lastLatest: undefined,
  hidden: new Set(), cams: [], taskChoice: null, seen: null, listSignature: "",
};

function say(text, kind = "") {
  const el = $("status");
  el.textContent = text;
  el.className = kind;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function scoreBadge(ep) {
  if (ep.error) return el("span", { class: "badge error", title: ep.error }, "unreadable");
  if (!ep.scored) return el("span", { class: "badge" }, "unscored");
  const who = ep.score_source === "operator" ? "operator" : "sim";
  return el("span", { class: `badge ${who}`, title: `${who} score` }, `${ep.stage_score}${who === "sim" ? " (sim)" : ""}`);
}

// ---- list ----
function filterQuery() {
  const q = new URLSearchParams();
  if ($("f-task").value) q.set("task", $("f-task").value);
  q.set("scored", $("f-scored").value);
  q.set("success", $("f-success").value);
  return q.toString();
}

async function refreshList() {
  let data;
  try {
    data = await api(`/api/episodes?${filterQuery()}`);
  } catch (e) {
    say(`listing failed: ${e.message}`, "error");
    return;
  }
  const signature = JSON.stringify(data.episodes.map((e) => [e.id, e.stage_score, e.scored_at, e.score_source, e.task]));
  state.episodes = data.episodes;
  $("counts").textContent = `${data.matching} shown of ${data.total}`;
  // redraw only on change: a list replaced under the pointer every poll would swallow clicks
  if (signature !== state.listSignature) renderList();
  state.listSignature = signature;
  const latestChanged = state.lastLatest !== undefined && data.latest_id && data.latest_id !== state.lastLatest;
  state.lastLatest = data.latest_id;
  if (latestChanged && $("follow").checked) {
    say(`new episode ${data.latest_id}: opened for scoring`, "ok");
    await openEpisode(data.latest_id);
  } else if (!state.current && state.episodes.length) {
    await openEpisode(state.episodes[0].id);
  } else if (state.current) {
    const fresh = state.episodes.find((e) => e.id === state.current.id);
    if (fresh && fresh.scored_at !== state.current.scored_at) {
      Object.assign(state.current, fresh); // scored elsewhere (another tab or page) meanwhile
      renderScore();
    }
  }
}

function renderList() {
  const first = state.seen === null;
  state.seen = state.seen || new Set();
  const ul = $("episodes");
  ul.replaceChildren();
  for (const ep of state.episodes) {
    const li = el("li", { "data-id": ep.id, title: ep.id },
      el("strong", {}, ep.name), scoreBadge(ep),
      el("span", { class: "sub" }, `${ep.folder && ep.folder !== "." ? ep.folder + " · " : ""}${ep.task || "task ?"} · ` +
        `${ep.steps} steps · ${ep.recorded_at.replace("T", " ").slice(0, 19)}`));
    if (state.current && ep.id === state.current.id) li.classList.add("selected");
    if (!first && !state.seen.has(ep.id)) li.classList.add("new"); // flash episodes that just arrived
    state.seen.add(ep.id);
    li.addEventListener("click", () => openEpisode(ep.id));
    ul.append(li);
  }
}

// ---- one episode ----
async function openEpisode(id) {
  let ep;
  try {
    ep = await api(`/api/episode?id=${encodeURIComponent(id)}`);
  } catch (e) {
    say(`cannot open ${id}: ${e.message}`, "error");
    return;
  }
  stop();
  state.current = ep;
  state.step = 0;
  state.taskChoice = null;
  $("empty").hidden = true;
  $("episode").hidden = false;
  $("ep-title").textContent = ep.id;
  const meta = [ep.task_text || "(no task text)", `${ep.steps} steps`, ep.sim ? "sim" : "real robot",
    `recorded ${ep.recorded_at.replace("T", " ").slice(0, 19)}`];
  if (ep.recovered) meta.push("RECOVERED");
  if (ep.camera_rate_low) meta.push("CAMERA RATE LOW");
  $("ep-meta").textContent = meta.join(" · ");
  $("notes").value = ep.notes || "";
  buildCams(ep);
  $("step").max = Math.max(0, ep.steps - 1);
  drawPlot();
  renderStages();
  renderScore();
  showStep(0);
  for (const li of $("episodes").children) li.classList.toggle("selected", li.dataset.id === id);
  const sel = [...$("episodes").children].find((li) => li.dataset.id === id);
  if (sel) sel.scrollIntoView({ block: "nearest" });
}

function buildCams(ep) {
  const box = $("cams");
  box.replaceChildren();
  state.cams = ep.cameras.map((cam) => {
    const img = el("img", { alt: cam, "data-cam": cam });
    const tile = el("div", { class: "cam" }, img, el("span", {}, cam));
    box.append(tile);
    const view = { cam, img, tile, loading: false, pending: null };
    // one request in flight per camera: scrubbing fast shows the latest step, never a queue of stale ones
    img.addEventListener("load", () => frameDone(view));
    img.addEventListener("error", () => frameDone(view));
    return view;
  });
}

function frameUrl(cam, step) {
  return `/api/frame?id=${encodeURIComponent(state.current.id)}&cam=${encodeURIComponent(cam)}&step=${step}`;
}

function requestFrame(view, step) {
  if (view.loading) { view.pending = step; return; }
  view.loading = true;
  view.requested = step;
  view.img.src = frameUrl(view.cam, step);
}

function frameDone(view) {
  view.loading = false;
  view.img.dataset.loadedStep = String(view.requested);
  if (view.pending !== null && view.pending !== view.requested) {
    const next = view.pending;
    view.pending = null;
    requestFrame(view, next);
  } else {
    view.pending = null;
  }
}

function showStep(step) {
  const ep = state.current;
  if (!ep) return;
  step = Math.max(0, Math.min(ep.steps - 1, Math.round(step)));
  state.step = step;
  $("step").value = step;
  $("step-label").textContent = `step ${step} / ${ep.steps - 1} · ${(step / state.config.control_rate_hz).toFixed(2)} s`;
  for (const view of state.cams) {
    requestFrame(view, step);
    const valid = ep.frame_valid[view.cam];
    view.tile.classList.toggle("stale", Boolean(valid && valid[step] === 0));
  }
  const cursor = $("plot").querySelector("#cursor");
  if (cursor) {
    const x = state.plotX(step);
    cursor.setAttribute("x1", x);
    cursor.setAttribute("x2", x);
  }
}

// ---- playback ----
function play() {
  const ep = state.current;
  if (!ep || ep.steps < 2) return;
  if (state.step >= ep.steps - 1) showStep(0);
  state.playing = true;
  $("play").textContent = "pause";
  let last = performance.now();
  let position = state.step;
  const tick = (now) => {
    if (!state.playing) return;
    position += ((now - last) / 1000) * state.config.control_rate_hz * Number($("speed").value);
    last = now;
    if (position >= ep.steps - 1) { showStep(ep.steps - 1); stop(); return; }
    if (Math.floor(position) !== state.step) showStep(Math.floor(position));
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

function stop() {
  state.playing = false;
  $("play").textContent = "play";
}

// ---- joint plot (own SVG: no chart library) ----
const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function drawPlot() {
  const ep = state.current;
  const svg = $("plot");
  svg.replaceChildren();
  const width = svg.clientWidth || 800;
  const height = svg.clientHeight || 260;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const dim = ep.joint_labels.length;
  const arms = dim % 2 === 0 ? 2 : 1;
  const perArm = dim / arms;
  const pad = { l: 44, r: 8, t: 6, b: 16 };
  const panelH = (height - pad.t - pad.b) / arms;
  const n = Math.max(1, ep.steps - 1);
  state.plotX = (step) => pad.l + (step / n) * (width - pad.l - pad.r);
  const stride = Math.max(1, Math.ceil(ep.steps / PLOT_POINTS));
  const showAction = $("show-action").checked;
  for (let a = 0; a < arms; a++) {
    const top = pad.t + a * panelH;
    const joints = [...Array(perArm).keys()].map((j) => a * perArm + j).filter((j) => !state.hidden.has(j));
    let lo = Infinity, hi = -Infinity;
    for (const series of showAction ? [ep.qpos, ep.action] : [ep.qpos]) {
      for (const row of series) for (const j of joints) {
        const v = row[j];
        if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      }
    }
    if (!isFinite(lo)) { lo = -1; hi = 1; }
    if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
    const y = (v) => top + 4 + (1 - (v - lo) / (hi - lo)) * (panelH - 8);
    svg.append(svgEl("rect", { x: pad.l, y: top, width: width - pad.l - pad.r, height: panelH, fill: "none", stroke: "#dde" }));
    const label = svgEl("text", { x: pad.l + 4, y: top + 12, "font-size": 11, fill: "#667", "font-weight": 600 });
    label.textContent = arms === 2 ? (a === 0 ? "left" : "right") : "joints";
    svg.append(label);
    for (const [v, dy] of [[hi, 10], [lo, -2]]) {
      const t = svgEl("text", { x: 4, y: y(v) + dy - (dy > 0 ? 6 : 0), "font-size": 10, fill: "#99a" });
      t.textContent = v.toFixed(2);
      svg.append(t);
    }
    for (const j of joints) {
      for (const [series, dash] of showAction ? [[ep.qpos, ""], [ep.action, "4 3"]] : [[ep.qpos, ""]]) {
        const pts = [];
        for (let t = 0; t < ep.steps; t += stride) {
          const v = series[t][j];
          if (v !== null) pts.push(`${state.plotX(t).toFixed(1)},${y(v).toFixed(1)}`);
        }
        const line = svgEl("polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[j % perArm % COLORS.length],
          "stroke-width": 1.3, "stroke-dasharray": dash, "data-joint": ep.joint_labels[j] });
        svg.append(line);
      }
    }
  }
  for (const [step, score] of ep.stage_history) {
    const x = state.plotX(step);
    svg.append(svgEl("line", { x1: x, x2: x, y1: pad.t, y2: height - pad.b, stroke: "#2ca02c", "stroke-dasharray": "2 3" }));
    const t = svgEl("text", { x: x + 2, y: height - 4, "font-size": 10, fill: "#2ca02c" });
    t.textContent = String(score);
    svg.append(t);
  }
  const x0 = state.plotX(state.step);
  svg.append(svgEl("line", { id: "cursor", x1: x0, x2: x0, y1: pad.t, y2: height - pad.b, stroke: "#d00", "stroke-width": 1.5 }));
  drawLegend(perArm);
}

function drawLegend(perArm) {
  const ep = state.current;
  const box = $("legend");
  box.replaceChildren();
  for (let j = 0; j < perArm; j++) {
    const name = ep.joint_labels[j].replace(/^left_/, "");
    const members = ep.joint_labels.length === 2 * perArm ? [j, j + perArm] : [j];
    const swatch = el("i");
    swatch.style.background = COLORS[j % COLORS.length];
    const item = el("span", { title: "show / hide" }, swatch, name);
    if (members.every((m) => state.hidden.has(m))) item.classList.add("off");
    item.addEventListener("click", () => {
      const off = members.every((m) => state.hidden.has(m));
      for (const m of members) off ? state.hidden.delete(m) : state.hidden.add(m);
      drawPlot();
    });
    box.append(item);
  }
}

function plotStepAt(event) {
  const svg = $("plot");
  const box = svg.getBoundingClientRect();
  const width = svg.viewBox.baseVal.width || box.width;
  const x = ((event.clientX - box.left) / box.width) * width;
  const n = Math.max(1, state.current.steps - 1);
  const left = state.plotX(0), right = state.plotX(n);
  return ((x - left) / (right - left)) * n;
}

// ---- scoring ----
function currentTask() {
  const ep = state.current;
  if (!ep) return null;
  const name = ep.task || state.taskChoice;
  return name ? state.config.tasks[name] : null;
}

function renderStages() {
  const ep = state.current;
  const box = $("stages");
  box.replaceChildren();
  $("task-choice").hidden = Boolean(ep.task);
  if (!ep.task) {
    const sel = $("task-choose");
    sel.replaceChildren(el("option", { value: "" }, "choose…"),
      ...Object.keys(state.config.tasks).map((t) => el("option", { value: t }, t)));
    sel.value = state.taskChoice || "";
  }
  const task = currentTask();
  if (!task) return;
  const levels = [{ name: "nothing reached", score: 0, description: "no stage reached" }, ...task.stages];
  levels.forEach((stage, key) => {
    const button = el("button", { "data-score": String(stage.score), title: stage.description },
      `${key} · ${stage.name} (${stage.score})`, el("small", {}, stage.description));
    button.addEventListener("click", () => submitScore(stage.score));
    box.append(button);
  });
  renderScore();
}

function renderScore() {
  const ep = state.current;
  if (!ep) return;
  for (const b of $("stages").children) {
    b.classList.toggle("active", ep.scored && Number(b.dataset.score) === ep.stage_score);
    b.classList.toggle("sim-original", ep.sim_stage_score !== null && ep.sim_stage_score !== undefined &&
      Number(b.dataset.score) === ep.sim_stage_score);
  }
  let text;
  if (!ep.scored) text = "not scored yet";
  else if (ep.score_source === "operator") text = `score ${ep.stage_score} by ${ep.scored_by} at ${ep.scored_at}`;
  else text = `score ${ep.stage_score} from the simulator (press a stage to override; the sim score is kept)`;
  if (ep.sim_stage_score !== null && ep.sim_stage_score !== undefined && ep.score_source === "operator") {
    text += ` · simulator said ${ep.sim_stage_score}`;
  }
  $("score-info").textContent = text;
}

function scorerName() {
  const name = $("scorer").value.trim();
  if (!name) {
    say("enter your name in 'scorer' first: every score records who gave it", "error");
    $("scorer").focus();
    return null;
  }
  localStorage.setItem("rollout_scoring_scorer", name);
  return name;
}

async function post(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

async function submitScore(score) {
  const ep = state.current;
  const scorer = scorerName();
  if (!ep || scorer === null) return;
  if (!currentTask()) { say("choose the episode's task first", "error"); return; }
  const body = { id: ep.id, score, scorer, notes: $("notes").value };
  if (!ep.task) body.task = state.taskChoice;
  say(`saving score ${score} for ${ep.id}…`);
  try {
    const summary = await post("/api/score", body);
    if (state.current && state.current.id === ep.id) Object.assign(state.current, summary);
    updateListItem(summary);
    renderStages();
    say(`${ep.id}: score ${summary.stage_score} saved by ${summary.scored_by}`, "ok");
    document.body.dataset.lastSaved = `${ep.id}:${summary.stage_score}`;
    if ($("advance").checked) step(+1);
  } catch (e) {
    say(`score not saved: ${e.message}`, "error");
  }
}

async function saveNotes() {
  const ep = state.current;
  const scorer = scorerName();
  if (!ep || scorer === null) return;
  try {
    const summary = await post("/api/notes", { id: ep.id, notes: $("notes").value, scorer });
    Object.assign(state.current, summary);
    updateListItem(summary);
    say(`${ep.id}: notes saved`, "ok");
  } catch (e) {
    say(`notes not saved: ${e.message}`, "error");
  }
}

function updateListItem(summary) {
  const i = state.episodes.findIndex((e) => e.id === summary.id);
  if (i >= 0) state.episodes[i] = summary;
  renderList();
}

function step(delta) {
  if (!state.episodes.length) return;
  const i = state.current ? state.episodes.findIndex((e) => e.id === state.current.id) : -1;
  const j = i < 0 ? 0 : i + delta;
  if (j < 0 || j >= state.episodes.length) { say(delta > 0 ? "last episode of the list" : "first episode of the list"); return; }
  openEpisode(state.episodes[j].id);
}

// ---- recording (the recorder node's RecordEpisode service, when the server reaches ROS) ----
function renderRecord(status) {
  state.record = status;
  $("rec").hidden = !status.available;
  if (!status.available) return;
  const box = $("rec-state");
  const recording = Boolean(status.reachable && status.recording);
  $("rec-start").disabled = !status.reachable || recording;
  $("rec-stop").disabled = !recording;
  $("rec-discard").disabled = !recording;
  $("rec-task").disabled = recording;
  box.className = "muted";
  if (!status.reachable) {
    box.textContent = `recorder unreachable: ${status.reason}`;
  } else if (recording) {
    const rates = Object.entries(status.camera_rates_hz).map(([c, r]) => `${c.replace(/^cam_/, "")} ${Math.round(r)}`);
    const low = status.low_rate_cameras.length ? ` · CAMERA RATE LOW: ${status.low_rate_cameras.join(", ")}` : "";
    box.textContent = `● REC ${status.episode} · ${status.task} · ${status.steps} steps · ` +
      `${status.duration_s.toFixed(1)} s · ${rates.join(" | ")} Hz${low}`;
    box.className = low ? "low" : "recording";
  } else {
    box.textContent = "not recording";
  }
  document.body.dataset.recording = recording ? "1" : "0";
}

async function refreshRecord() {
  try {
    renderRecord(await api("/api/record"));
  } catch (e) {
    $("rec-state").textContent = `recorder status failed: ${e.message}`;
  }
}

async function recordCommand(command) {
  if (command === "discard" && !window.confirm("Discard the episode being recorded? Its file is deleted.")) return;
  const body = { command };
  if (command === "start") body.task = $("rec-task").value;
  try {
    const answer = await post("/api/record", body);
    say(command === "start" ? `recording ${answer.episode}` : answer.message, "ok");
  } catch (e) {
    say(`${command} failed: ${e.message}`, "error");
  }
  await refreshRecord();
  if (command === "stop") await refreshList(); // the finished episode, ready to score
}

async function initRecord() {
  for (const name of Object.keys(state.config.tasks)) $("rec-task").append(el("option", { value: name }, name));
  for (const command of ["start", "stop", "discard"]) {
    $(`rec-${command}`).addEventListener("click", () => recordCommand(command));
  }
  await refreshRecord();
  // poll only where the server has a way to the recorder: without ROS the page never asks again
  if (state.record && state.record.available) setInterval(refreshRecord, 1000);
}

// ---- wiring ----
function onKey(event) {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName) && event.target.type !== "checkbox" &&
    event.target.type !== "range";
  if (typing) {
    if (event.key === "Escape") event.target.blur();
    if (event.target.id === "notes" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) saveNotes();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (/^[0-9]$/.test(event.key)) {
    const button = $("stages").children[Number(event.key)];
    if (button) { event.preventDefault(); submitScore(Number(button.dataset.score)); }
  } else if (event.key === "n") step(+1);
  else if (event.key === "p") step(-1);
  else if (event.key === "f") { $("follow").checked = !$("follow").checked; onFollow(); }
  else if (event.key === " ") { event.preventDefault(); state.playing ? stop() : play(); }
  else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
    event.preventDefault();
    stop();
    showStep(state.step + (event.key === "ArrowRight" ? 1 : -1) * (event.shiftKey ? 10 : 1));
  }
}

function onFollow() {
  localStorage.setItem("rollout_scoring_follow", $("follow").checked ? "1" : "0");
  if ($("follow").checked) say("follow: each new episode opens as soon as it is recorded", "ok");
}

async function init() {
  try {
    state.config = await api("/api/config");
  } catch (e) {
    say(`cannot reach the scoring server: ${e.message}`, "error");
    return;
  }
  $("root").textContent = state.config.root;
  $("scorer").value = localStorage.getItem("rollout_scoring_scorer") || state.config.scorer || "";
  $("follow").checked = localStorage.getItem("rollout_scoring_follow") === "1";
  $("notes").maxLength = state.config.max_notes_chars;
  for (const name of Object.keys(state.config.tasks)) $("f-task").append(el("option", { value: name }, name));
  for (const id of ["f-task", "f-scored", "f-success"]) $(id).addEventListener("change", refreshList);
  $("follow").addEventListener("change", onFollow);
  $("step").addEventListener("input", () => { stop(); showStep(Number($("step").value)); });
  $("play").addEventListener("click", () => (state.playing ? stop() : play()));
  $("save-notes").addEventListener("click", saveNotes);
  $("show-action").addEventListener("change", () => state.current && drawPlot());
  $("task-choose").addEventListener("change", () => { state.taskChoice = $("task-choose").value || null; renderStages(); });
  let dragging = false;
  $("plot").addEventListener("mousedown", (e) => { dragging = true; stop(); showStep(plotStepAt(e)); });
  window.addEventListener("mousemove", (e) => { if (dragging) showStep(plotStepAt(e)); });
  window.addEventListener("mouseup", () => { dragging = false; });
  window.addEventListener("resize", () => state.current && drawPlot());
  document.addEventListener("keydown", onKey);
  await refreshList();
  setInterval(refreshList, Math.max(0.2, state.config.poll_s) * 1000);
  await initRecord();
  document.body.dataset.ready = "1";
}

init();
