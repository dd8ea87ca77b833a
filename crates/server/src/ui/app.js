// Strongroom's dashboard: plain JavaScript over the JSON API (/api/v1), signed in with the
// session cookie; every change sends the session's CSRF token. It shows what the API says
// and offers only what the user's permissions allow; the server checks them again.
// It must not put server text into the page as HTML: everything goes in with textContent.
"use strict";

const state = { csrf: null, permissions: [], events: null, timers: {} };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function button(label, onclick) {
  return el("button", { type: "button", onclick }, label);
}

// A button for an irreversible change: asks first, then calls the API.
function confirmedButton(label, question, path, done) {
  return button(label, () => {
    if (window.confirm(question)) act(path, undefined, done, "DELETE");
  });
}

function notice(text, isError) {
  const n = $("notice");
  n.textContent = text;
  n.className = isError ? "error" : "";
  n.hidden = !text;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!resp.ok) {
    const message = (data && data.error && data.error.message) || `HTTP ${resp.status}`;
    if (resp.status === 401 && path !== "/api/v1/auth/login") showLogin();
    throw new ApiError(resp.status, message);
  }
  return data;
}

function can(permission) { return state.permissions.includes(permission); }

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n), u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

function when(iso) {
  if (!iso) return "";
  return iso.replace("T", " ").replace(/\.\d+/, "").replace(/(Z|\+00:00)$/, "");
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

// ------------------------------------------------------------------ signing in and out

function showLogin() {
  stopEvents();
  state.csrf = null;
  state.settingsLoaded = false;
  $("token-secret").hidden = true;
  $("token-secret").querySelector("code").textContent = "";
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
}

async function signIn(ev) {
  ev.preventDefault();
  const form = ev.target;
  const err = $("login-error");
  err.hidden = true;
  try {
    await api("POST", "/api/v1/auth/login", {
      username: form.username.value, password: form.password.value,
    });
    form.password.value = "";
    await start();
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  }
}

async function signOut() {
  try { await api("POST", "/api/v1/auth/logout", {}); } catch (_) { /* signed out anyway */ }
  showLogin();
}

// ------------------------------------------------------------------ the dashboard

async function start() {
  let me;
  try { me = await api("GET", "/api/v1/auth/me"); } catch (e) {
    if (e.status !== 401) notice(`Cannot reach the service: ${e.message}`, true);
    showLogin();
    return;
  }
  state.csrf = me.csrf_token;
  state.permissions = me.permissions || [];
  state.me = me.user.id;
  $("who-name").textContent = me.user.username;
  $("who-role").textContent = me.user.role;
  $("who").hidden = false;
  $("login").hidden = true;
  $("dashboard").hidden = false;
  for (const section of document.querySelectorAll("[data-needs]")) {
    section.hidden = !can(section.dataset.needs);
  }
  await refreshAll();
  startEvents();
  clearInterval(state.timers.health);
  state.timers.health = setInterval(refreshHealth, 30000);
}

async function refreshAll() {
  const work = [refreshHealth(), refreshJobs(), refreshSchedules()];
  if (can("users:manage")) work.push(refreshUsers());
  if (can("audit:read")) work.push(refreshAudit());
  if (can("settings:write") && !state.settingsLoaded) work.push(loadSettings());
  await Promise.allSettled(work);
}

function setCard(id, status, detail) {
  const card = $(id);
  const s = card.querySelector(".status");
  s.textContent = status;
  s.className = `status ${status}`;
  const d = card.querySelector(".detail");
  d.replaceChildren(...(Array.isArray(detail) ? detail : [detail || ""]));
}

async function refreshHealth() {
  const [backups, databases, system] = await Promise.allSettled([
    api("GET", "/api/v1/health/backups"),
    api("GET", "/api/v1/health/databases"),
    api("GET", "/api/v1/health/system"),
  ]);
  if (backups.status === "fulfilled") {
    const b = backups.value;
    const last = b.last_successful_backup ? `last success ${when(b.last_successful_backup)} UTC` : "no successful backup yet";
    setCard("card-backups", b.status, `${b.message}; ${last}`);
    $("recommendations").replaceChildren(
      ...(b.recommendations || []).map((r) => el("li", {}, `${r.message} (${r.action})`)));
  } else {
    setCard("card-backups", "error", backups.reason.message);
  }
  if (databases.status === "fulfilled") {
    const d = databases.value;
    const items = d.databases.map((db) => el("li", {},
      `${db.name} (${db.engine}): ${db.status}`,
      db.error ? ` — ${db.error}` : db.size_bytes !== null ? `, ${bytes(db.size_bytes)}` : ""));
    setCard("card-databases", d.status, items.length ? items : [el("li", {}, "no database is configured")]);
  } else {
    setCard("card-databases", "error", databases.reason.message);
  }
  if (system.status === "fulfilled") {
    const s = system.value;
    const r = s.repository || {};
    const parts = [`${r.location || ""}`];
    if (r.size_bytes !== null && r.size_bytes !== undefined) parts.push(`${bytes(r.size_bytes)} stored`);
    if (r.disk_used_percent !== null && r.disk_used_percent !== undefined) parts.push(`disk ${r.disk_used_percent}% used`);
    setCard("card-storage", s.status, parts.join(", "));
    const j = s.jobs || {};
    setCard("card-jobs", j.stuck ? "warning" : "healthy",
      `${j.in_progress || 0} running, ${j.queued || 0} queued, ${j.stuck || 0} stuck`);
  } else {
    setCard("card-storage", "error", system.reason.message);
  }
}

const BACKUP_KINDS = ["full", "database", "media"];

function jobActions(job) {
  const out = [];
  const active = job.status === "queued" || job.status === "running";
  if (active && can("backups:run") && !job.cancel_requested) {
    out.push(button("Cancel", () => act(`/api/v1/backups/${job.id}/cancel`, {}, `Cancel requested for job ${job.id}.`)));
  }
  const done = job.status === "success" || job.status === "warning";
  if (done && BACKUP_KINDS.includes(job.kind)) {
    if (can("backups:run")) {
      out.push(button("Verify", () => act(`/api/v1/backups/${job.id}/verify`, { read_data: true }, `Verification of backup ${job.id} queued.`)));
      out.push(button("Test restore", () => act(`/api/v1/backups/${job.id}/test-restore`, {}, `Test restore of backup ${job.id} queued.`)));
    }
    const snapshots = job.snapshot_ids || [];
    if (can("backups:restore")) {
      out.push(button("Restore…", () => openRestore(job.id)));
    }
    if (can("backups:download") && snapshots.length === 1) {
      out.push(el("a", { class: "button", href: `/api/v1/backups/${job.id}/download` }, "Download"));
    } else if (can("backups:download")) {
      // A full backup has a part per source: a download each.
      for (const id of snapshots) {
        out.push(el("a", { class: "button", href: `/api/v1/backups/${job.id}/download?snapshot=${encodeURIComponent(id)}` }, `Download ${id.slice(0, 8)}`));
      }
    }
  }
  return out;
}

// What a finished job's metadata says that a user wants to know: where a restore went and
// the safety backups taken first; what a retention run kept and removed.
function jobDetail(job) {
  if (job.error_message) return job.error_message;
  const result = (job.metadata && job.metadata.result) || {};
  const parts = [];
  for (const s of result.safety_backups || []) {
    parts.push(s.snapshot ? `safety backup of ${s.source}: ${s.snapshot.slice(0, 8)}` : `${s.source}: ${s.note || "no safety backup"}`);
  }
  for (const r of result.restored || []) {
    if (r.target) parts.push(`restored ${r.source || ""} to ${r.target}`);
  }
  if (typeof result.summary === "string") parts.push(result.summary);
  return parts.join("; ");
}

function jobRow(job) {
  let detail = jobDetail(job);
  let status = el("span", { class: job.status }, job.status);
  if (job.status === "running" && job.progress) {
    const p = job.progress;
    const bar = p.bytes_total ? el("progress", { max: String(p.bytes_total), value: String(p.bytes_done || 0) }) : null;
    status = el("span", {}, el("span", { class: "running" }, "running"), " ", bar);
    detail = `${p.phase || ""}${p.bytes_done ? `, ${bytes(p.bytes_done)}` : ""}${p.eta_seconds ? `, about ${seconds(p.eta_seconds)} left` : ""}`;
  }
  return el("tr", { "data-job": String(job.id) },
    el("td", { class: "num" }, job.id),
    el("td", {}, job.kind),
    el("td", {}, job.source || ""),
    el("td", {}, status),
    el("td", {}, when(job.created_at)),
    el("td", { class: "num" }, seconds(job.duration_seconds)),
    el("td", { class: "num" }, bytes(job.bytes_stored)),
    el("td", {}, el("div", { class: "msg" }, detail)),
    el("td", {}, ...jobActions(job)));
}

async function refreshJobs() {
  const list = await api("GET", "/api/v1/backups?limit=25");
  const rows = list.items.map(jobRow);
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: "9" }, "No jobs yet.")));
  $("job-rows").replaceChildren(...rows);
}

function scheduleRow(s) {
  const actions = [];
  if (can("backups:run")) {
    actions.push(button("Run now", () => act(`/api/v1/schedules/${s.id}/run-now`, {}, `Schedule ${s.name} queued.`)));
    const verb = s.enabled ? "disable" : "enable";
    actions.push(button(s.enabled ? "Disable" : "Enable", () => act(`/api/v1/schedules/${s.id}/${verb}`, {}, `Schedule ${s.name} ${verb}d.`)));
  }
  if (can("schedules:write")) {
    actions.push(button("Change", () => editSchedule(s)));
    actions.push(confirmedButton("Delete", `Delete schedule ${s.name}? Its past jobs stay.`,
      `/api/v1/schedules/${s.id}`, `Schedule ${s.name} deleted.`));
  }
  return el("tr", { "data-schedule": s.name },
    el("td", {}, s.name),
    el("td", {}, s.kind),
    el("td", {}, `${s.when} (${s.timezone})`),
    el("td", {}, s.enabled ? when(s.next_run_at) : "—"),
    el("td", {}, el("span", { class: s.last_outcome || "" }, s.last_outcome || "never run")),
    el("td", {}, s.enabled ? "yes" : "no"),
    el("td", {}, ...actions));
}

async function refreshSchedules() {
  const list = await api("GET", "/api/v1/schedules");
  const rows = list.items.map(scheduleRow);
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: "7" }, "No schedules.")));
  $("schedule-rows").replaceChildren(...rows);
}

async function act(path, body, done, method) {
  let ok = false;
  try {
    await api(method || "POST", path, body);
    notice(done, false);
    ok = true;
  } catch (e) {
    notice(e.message, true);
  }
  await refreshAll();
  return ok;
}

async function backupNow(kind) {
  await act("/api/v1/backups", { kind, verify: $("verify-after").checked },
    `${kind[0].toUpperCase()}${kind.slice(1)} backup queued.`);
}

// The schedule form adds a schedule, or changes the one chosen with "Change".
let editing = null;

function editSchedule(s) {
  const f = $("schedule-form");
  editing = s.id;
  $("schedule-form-title").textContent = `Change schedule ${s.name}`;
  f.name.value = s.name;
  f.kind.value = s.kind;
  f.when.value = s.when;
  f.timezone.value = s.timezone;
  const r = s.retention || {};
  for (const k of ["keep_daily", "keep_weekly", "keep_monthly"]) f[k].value = r[k] ?? "";
  f.verify_after.checked = !!s.verify_after;
  f.test_restore.checked = !!s.test_restore;
  f.scrollIntoView();
}

function newSchedule() {
  editing = null;
  $("schedule-form").reset();
  $("schedule-form-title").textContent = "Add a schedule";
}

async function saveSchedule(ev) {
  ev.preventDefault();
  const f = ev.target;
  const retention = {};
  for (const k of ["keep_daily", "keep_weekly", "keep_monthly"]) {
    if (f[k].value !== "") retention[k] = Number(f[k].value);
  }
  const body = {
    name: f.name.value, kind: f.kind.value, when: f.when.value, timezone: f.timezone.value || "UTC",
    verify_after: f.verify_after.checked, test_restore: f.test_restore.checked,
  };
  if (Object.keys(retention).length) body.retention = retention;
  const ok = editing === null
    ? await act("/api/v1/schedules", body, `Schedule ${body.name} added.`)
    : await act(`/api/v1/schedules/${editing}`, body, `Schedule ${body.name} changed.`, "PUT");
  if (ok) newSchedule();
}

// Settings are read once per sign-in (not on every refresh, which would undo typing).
async function loadSettings() {
  const s = (await api("GET", "/api/v1/settings")).settings;
  const f = $("settings-form");
  f.alert_emails.value = (s.alert_emails || []).join("\n");
  f.stuck_after_minutes.value = s.stuck_after_minutes;
  state.settingsLoaded = true;
}

async function saveSettings(ev) {
  ev.preventDefault();
  const f = ev.target;
  const emails = f.alert_emails.value.split(/[\s,;]+/).filter((e) => e);
  const ok = await act("/api/v1/settings", {
    alert_emails: emails, stuck_after_minutes: Number(f.stuck_after_minutes.value),
  }, "Settings saved.", "PUT");
  if (ok) await loadSettings().catch(() => {});
}

async function changePassword(ev) {
  ev.preventDefault();
  const f = ev.target;
  try {
    await api("POST", "/api/v1/auth/password", {
      current_password: f.current_password.value, new_password: f.new_password.value,
    });
    f.reset();
    showLogin();
    notice("Password changed: every session of yours has ended; sign in with the new one.", false);
  } catch (e) {
    notice(e.message, true);
  }
}

async function refreshAudit() {
  const list = await api("GET", "/api/v1/audit?limit=50");
  $("audit-rows").replaceChildren(...list.items.map((a) => el("tr", {},
    el("td", {}, when(a.at)), el("td", {}, a.actor), el("td", {}, a.action),
    el("td", {}, a.target || ""), el("td", {}, a.ip || ""))));
}

// ------------------------------------------------------------------ users and tokens

const users = { byId: new Map() };

function userRow(u, me) {
  const role = el("select", { "aria-label": `role of ${u.username}` },
    ...["viewer", "staff", "admin"].map((r) => {
      const o = el("option", { value: r }, r);
      if (r === u.role) o.selected = true;
      return o;
    }));
  role.addEventListener("change", () => act(`/api/v1/users/${u.id}`, { role: role.value }, `${u.username} is now ${role.value}.`, "PUT"));
  const actions = [];
  if (u.id !== me) {
    actions.push(button(u.disabled ? "Enable" : "Disable", () => act(`/api/v1/users/${u.id}`, { disabled: !u.disabled }, `${u.username} ${u.disabled ? "enabled" : "disabled"}.`, "PUT")));
    // A forgotten password: the admin sets a new one (it ends the user's sessions).
    actions.push(button("Set password", (ev) => {
      const cell = ev.target.parentElement;
      if (cell.querySelector("input")) return;
      const input = el("input", { type: "password", autocomplete: "new-password", "aria-label": `new password for ${u.username}` });
      cell.append(input, button("Save password", () => act(`/api/v1/users/${u.id}`, { password: input.value },
        `New password set for ${u.username}; their sessions were ended.`, "PUT")));
      input.focus();
    }));
    actions.push(confirmedButton("Delete", `Delete user ${u.username}, with their tokens and sessions?`,
      `/api/v1/users/${u.id}`, `${u.username} deleted.`));
  } else {
    role.disabled = true;
  }
  return el("tr", { "data-user": u.username },
    el("td", {}, u.username), el("td", {}, role),
    el("td", {}, el("span", { class: u.disabled ? "failed" : "success" }, u.disabled ? "disabled" : "active")),
    el("td", {}, when(u.created_at)), el("td", {}, ...actions));
}

function tokenRow(t) {
  const owner = users.byId.get(t.user_id);
  return el("tr", { "data-token": t.name },
    el("td", {}, t.name), el("td", {}, owner ? owner.username : `#${t.user_id}`),
    el("td", {}, when(t.created_at)), el("td", {}, when(t.expires_at) || "never"),
    el("td", {}, when(t.last_used_at) || "never"),
    el("td", {}, confirmedButton("Revoke", `Revoke token ${t.name}? Whatever uses it stops working.`,
      `/api/v1/tokens/${t.id}`, `Token ${t.name} revoked.`)));
}

async function refreshUsers() {
  const [list, tokens] = await Promise.all([api("GET", "/api/v1/users"), api("GET", "/api/v1/tokens")]);
  const me = state.me;
  users.byId = new Map(list.items.map((u) => [u.id, u]));
  $("user-rows").replaceChildren(...list.items.map((u) => userRow(u, me)));
  const live = tokens.items.filter((t) => !t.revoked);
  $("token-rows").replaceChildren(...(live.length ? live.map(tokenRow) : [el("tr", {}, el("td", { colspan: "6" }, "No tokens."))]));
  const chosen = $("token-user").value;
  $("token-user").replaceChildren(...list.items.filter((u) => !u.disabled).map((u) => el("option", { value: String(u.id) }, `${u.username} (${u.role})`)));
  if (chosen) $("token-user").value = chosen;
}

async function addUser(ev) {
  ev.preventDefault();
  const f = ev.target;
  const name = f.username.value;
  const ok = await act("/api/v1/users", { username: name, role: f.role.value, password: f.password.value }, `User ${name} added.`);
  if (ok) f.reset();
}

async function createToken(ev) {
  ev.preventDefault();
  const f = ev.target;
  const box = $("token-secret");
  box.hidden = true;
  try {
    const made = await api("POST", "/api/v1/tokens", {
      name: f.name.value, user_id: Number(f.user_id.value), expires_in_days: Number(f.days.value),
    });
    box.querySelector("span").textContent = `Token ${made.info.name} (copy it now, it is not shown again):`;
    box.querySelector("code").textContent = made.token;
    box.hidden = false;
    f.name.value = "";
    notice("", false);
  } catch (e) {
    notice(e.message, true);
  }
  await refreshUsers().catch(() => {});
}

// ------------------------------------------------------------------ restore
// Two steps, as the API requires: a preview (what would be created or replaced, and a
// short-lived confirmation token), then the restore with that token. Replacing live data
// also needs the word REPLACE typed.

const restore = { id: null, token: null, replace: false };

function openRestore(id) {
  restore.id = id;
  restore.token = null;
  $("restore-id").textContent = `#${id}`;
  $("restore-plan").hidden = true;
  $("restore").hidden = false;
  $("restore").scrollIntoView();
}

function closeRestore() {
  restore.id = null;
  restore.token = null;
  $("restore").hidden = true;
}

function confirmable() {
  const typed = $("restore-typed").value.trim() === "REPLACE";
  $("restore-confirm").disabled = !restore.token || (restore.replace && !typed);
}

async function previewRestore(ev) {
  ev.preventDefault();
  restore.replace = ev.target.mode.value === "replace";
  try {
    const plan = await api("POST", `/api/v1/backups/${restore.id}/restore/preview`, { replace: restore.replace });
    restore.token = plan.confirmation_token;
    const targets = [
      ...plan.will_replace.map((t) => el("li", { class: "error" }, `replaces ${t.type} ${t.source}: ${t.target}`)),
      ...plan.will_create.map((t) => el("li", {}, `creates ${t.type} ${t.source}: ${t.target}`)),
    ];
    $("restore-targets").replaceChildren(...targets);
    $("restore-summary").textContent = plan.replace
      ? `This replaces live data${plan.safety_backup ? " after a safety backup of it" : ""}. The confirmation expires at ${when(plan.expires_at)} UTC.`
      : `This creates copies beside the live data. The confirmation expires at ${when(plan.expires_at)} UTC.`;
    $("restore-typed").value = "";
    $("restore-typed-label").hidden = !plan.replace;
    $("restore-plan").hidden = false;
    confirmable();
  } catch (e) {
    notice(e.message, true);
  }
}

async function confirmRestore() {
  const id = restore.id;
  const body = { confirmation_token: restore.token };
  closeRestore();
  await act(`/api/v1/backups/${id}/restore`, body, `Restore of backup ${id} queued.`);
}

// ------------------------------------------------------------------ live updates

function later(name, fn, ms) {
  clearTimeout(state.timers[name]);
  state.timers[name] = setTimeout(fn, ms);
}

function startEvents() {
  stopEvents();
  if (!window.EventSource) return;
  const es = new EventSource("/api/v1/events");
  es.addEventListener("job", () => {
    later("jobs", () => refreshJobs().catch(() => {}), 300);
    later("health", () => refreshHealth().catch(() => {}), 1000);
    later("schedules", () => refreshSchedules().catch(() => {}), 1000);
  });
  state.events = es;
}

function stopEvents() {
  if (state.events) state.events.close();
  state.events = null;
  clearInterval(state.timers.health);
  for (const name of ["jobs", "health", "schedules"]) clearTimeout(state.timers[name]);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("restore-form").addEventListener("submit", previewRestore);
  $("user-form").addEventListener("submit", addUser);
  $("schedule-form").addEventListener("submit", saveSchedule);
  $("settings-form").addEventListener("submit", saveSettings);
  $("password-form").addEventListener("submit", changePassword);
  $("schedule-form-reset").addEventListener("click", newSchedule);
  $("token-form").addEventListener("submit", createToken);
  $("restore-close").addEventListener("click", closeRestore);
  $("restore-typed").addEventListener("input", confirmable);
  $("restore-confirm").addEventListener("click", confirmRestore);
  for (const b of document.querySelectorAll("[data-backup]")) {
    b.addEventListener("click", () => backupNow(b.dataset.backup));
  }
  start();
});
