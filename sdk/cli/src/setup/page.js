// ocellus setup: draw the config's lines and zones on the camera's view, save them back.
'use strict';

const token = new URLSearchParams(location.search).get('token');
const auth = token ? { Authorization: 'Bearer ' + token } : {};
const withToken = (path) => path + (token ? (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : '');
const SVG = 'http://www.w3.org/2000/svg';

const img = document.getElementById('view');
const svg = document.getElementById('overlay');
const list = document.getElementById('rules');
const statusBox = document.getElementById('status');
const generalError = document.getElementById('general-error');

let rules = { lines: [], zones: [] };
let counts = { lines: {}, zones: {} };
let errors = {};          // "line-0" -> message
let size = [768, 576];    // the still's size: the overlay's units
let drag = null;          // { kind, index, point }
let dirty = false;

function say(text) { statusBox.textContent = text; }

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

const px = (p) => [p[0] * size[0], p[1] * size[1]];

function lineLabel(l) {
  const c = counts.lines[l.name];
  return c ? `${l.name}  a>b ${c[0]}  b>a ${c[1]}` : l.name;
}

function zoneLabel(z) {
  const c = counts.zones[z.name];
  return c === undefined ? z.name : `${z.name}: ${c} in`;
}

function drawOverlay() {
  svg.setAttribute('viewBox', `0 0 ${size[0]} ${size[1]}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.replaceChildren();
  const defs = el('defs', {}, svg);
  const marker = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' }, defs);
  el('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#46f0f0' }, marker);
  rules.zones.forEach((z, i) => {
    const points = z.polygon.map((p) => px(p).join(',')).join(' ');
    el('polygon', { class: 'zone', points, 'data-rule': `zone-${i}` }, svg);
    const [x, y] = px(z.polygon[0] || [0, 0]);
    el('text', { x: x + 6, y: y + 16, 'data-label': `zone-${i}` }, svg).textContent = zoneLabel(z);
  });
  rules.lines.forEach((l, i) => {
    const [x1, y1] = px(l.a);
    const [x2, y2] = px(l.b);
    el('line', { class: 'line', x1, y1, x2, y2, 'marker-end': 'url(#arrow)', 'data-rule': `line-${i}` }, svg);
    // the label inside the picture: to the left of an end near the right edge
    const right = x1 > size[0] * 0.6;
    el('text', { x: right ? x1 - 8 : x1 + 8, y: y1 - 8, 'text-anchor': right ? 'end' : 'start', 'data-label': `line-${i}` }, svg).textContent = lineLabel(l);
  });
  // handles on top of everything
  rules.zones.forEach((z, i) => z.polygon.forEach((p, k) => {
    const [cx, cy] = px(p);
    el('circle', { class: 'handle', cx, cy, r: 7, 'data-kind': 'zone', 'data-index': i, 'data-point': k, 'data-handle': `zone-${i}-${k}` }, svg);
  }));
  rules.lines.forEach((l, i) => ['a', 'b'].forEach((end) => {
    const [cx, cy] = px(l[end]);
    el('circle', { class: 'handle ' + end, cx, cy, r: 7, 'data-kind': 'line', 'data-index': i, 'data-point': end, 'data-handle': `line-${i}-${end}` }, svg);
  }));
}

function row(kind, i, rule) {
  const id = `${kind}-${i}`;
  const div = document.createElement('div');
  div.className = 'rule';
  div.id = id;
  const name = document.createElement('input');
  name.id = `${id}-name`;
  name.value = rule.name;
  name.setAttribute('aria-label', `${kind} name`);
  name.addEventListener('input', () => { rule.name = name.value; changed(false); });
  const count = document.createElement('span');
  count.className = 'count';
  count.id = `${id}-count`;
  const remove = document.createElement('button');
  remove.id = `${id}-remove`;
  remove.textContent = 'Remove';
  remove.addEventListener('click', () => { rules[kind + 's'].splice(i, 1); errors = {}; changed(true); });
  const error = document.createElement('div');
  error.className = 'error';
  error.id = `${id}-error`;
  error.textContent = errors[id] || '';
  div.append(kind === 'line' ? 'Line ' : 'Zone ', name, count, ' ', remove, error);
  return div;
}

function drawList() {
  list.replaceChildren(
    ...rules.lines.map((l, i) => row('line', i, l)),
    ...rules.zones.map((z, i) => row('zone', i, z)),
  );
  showCounts();
}

function showCounts() {
  rules.lines.forEach((l, i) => {
    const c = counts.lines[l.name];
    const e = document.getElementById(`line-${i}-count`);
    if (e) e.textContent = c ? `a>b ${c[0]}  b>a ${c[1]}` : '';
  });
  rules.zones.forEach((z, i) => {
    const c = counts.zones[z.name];
    const e = document.getElementById(`zone-${i}-count`);
    if (e) e.textContent = c === undefined ? '' : `${c} in`;
  });
}

function changed(relist) {
  dirty = true;
  say('Unsaved changes');
  drawOverlay();
  if (relist) drawList();
}

async function loadConfig() {
  const r = await fetch('api/config', { headers: auth, cache: 'no-store' });
  if (!r.ok) { generalError.textContent = await r.text(); return; }
  const c = await r.json();
  rules = { lines: c.lines, zones: c.zones };
  if (c.width && c.height) size = [c.width, c.height];
  document.getElementById('file').textContent = c.path;
  errors = {};
  generalError.textContent = '';
  dirty = false;
  drawOverlay();
  drawList();
  document.body.dataset.rules = String(rules.lines.length + rules.zones.length);
}

async function save() {
  say('Saving…');
  const r = await fetch('api/config', {
    method: 'POST',
    headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify(rules),
  });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  errors = {};
  generalError.textContent = '';
  if (r.ok) {
    await loadConfig();
    say('Saved to ' + body.saved);
    document.body.dataset.saved = String((Number(document.body.dataset.saved) || 0) + 1);
    return;
  }
  if (body.kind !== null && body.kind !== undefined) errors[`${body.kind}-${body.index}`] = body.error;
  else generalError.textContent = body.error;
  drawList();
  say('Not saved: see the message');
  document.body.dataset.refused = String((Number(document.body.dataset.refused) || 0) + 1);
}

async function pollCounts() {
  try {
    const r = await fetch('api/counts', { headers: auth, cache: 'no-store' });
    if (!r.ok) return;
    const c = await r.json();
    counts = { lines: Object.fromEntries(c.lines), zones: Object.fromEntries(c.zones) };
    if (c.stopped) generalError.textContent = 'The pipeline stopped: ' + c.stopped;
    showCounts();
    for (const t of svg.querySelectorAll('text[data-label]')) {
      const [kind, i] = t.dataset.label.split('-');
      const rule = rules[kind + 's'][Number(i)];
      if (rule) t.textContent = kind === 'line' ? lineLabel(rule) : zoneLabel(rule);
    }
  } catch (_) { /* the next poll tries again */ }
}

function refreshStill() {
  const next = new Image();
  next.onload = () => {
    img.src = next.src;
    if (next.naturalWidth && (next.naturalWidth !== size[0] || next.naturalHeight !== size[1])) {
      size = [next.naturalWidth, next.naturalHeight];
      drawOverlay();
    }
    document.body.dataset.stills = String((Number(document.body.dataset.stills) || 0) + 1);
  };
  next.src = withToken('api/frame.jpg?n=' + Date.now());
}

function pointerAt(e) {
  const r = svg.getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)];
}

svg.addEventListener('pointerdown', (e) => {
  const h = e.target.closest('circle.handle');
  if (!h) return;
  drag = { kind: h.dataset.kind, index: Number(h.dataset.index), point: h.dataset.point };
  svg.setPointerCapture(e.pointerId);
  e.preventDefault();
});
svg.addEventListener('pointermove', (e) => {
  if (!drag) return;
  const p = pointerAt(e);
  if (drag.kind === 'line') rules.lines[drag.index][drag.point] = p;
  else rules.zones[drag.index].polygon[Number(drag.point)] = p;
  changed(false);
});
const endDrag = () => { drag = null; };
svg.addEventListener('pointerup', endDrag);
svg.addEventListener('pointercancel', endDrag);

document.getElementById('add-line').addEventListener('click', () => {
  let n = rules.lines.length + 1;
  while (rules.lines.some((l) => l.name === `line${n}`)) n += 1;
  rules.lines.push({ name: `line${n}`, a: [0.3, 0.5], b: [0.7, 0.5], orig: null });
  changed(true);
});
document.getElementById('add-zone').addEventListener('click', () => {
  let n = rules.zones.length + 1;
  while (rules.zones.some((z) => z.name === `zone${n}`)) n += 1;
  rules.zones.push({ name: `zone${n}`, polygon: [[0.35, 0.35], [0.65, 0.35], [0.65, 0.65], [0.35, 0.65]], orig: null });
  changed(true);
});
document.getElementById('save').addEventListener('click', save);
document.getElementById('reload').addEventListener('click', () => { loadConfig(); say(''); });
window.addEventListener('beforeunload', (e) => { if (dirty) e.preventDefault(); });

loadConfig().then(() => { document.body.dataset.ready = '1'; });
refreshStill();
setInterval(refreshStill, 1000);
pollCounts();
setInterval(pollCounts, 1000);
