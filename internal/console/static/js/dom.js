// Building the page from data, safely: every string goes in as text (a text node or
// textContent), never as markup, so a payload or topic such as "<script>" shows as those
// characters. Attributes are set one by one with setAttribute; nothing here parses HTML.

const SVG = 'http://www.w3.org/2000/svg';

function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'value' && 'value' in el) {
      el.value = v;
    } else if (k === 'checked' || k === 'disabled' || k === 'selected') {
      el[k] = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

// h('div', {class: 'x', onclick: fn}, 'text', child, [more]) builds an element.
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

// s() is h() for SVG elements.
export function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  append(el, kids);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...kids) {
  clear(el);
  append(el, kids);
  return el;
}

// table(columns, rows) builds a table; a column is {title, value: row => text or Node, cls,
// sort: key}; onSort(key) makes sortable headers.
export function table(columns, rows, opts = {}) {
  const head = h('tr', null, columns.map(c => {
    const th = h('th', {class: c.cls}, c.title);
    if (c.sort && opts.onSort) {
      th.classList.add('sortable');
      if (opts.sorted === c.sort) th.classList.add(opts.desc ? 'desc' : 'asc');
      th.setAttribute('tabindex', '0');
      th.addEventListener('click', () => opts.onSort(c.sort));
    }
    return th;
  }));
  const body = rows.map(r => {
    const tr = h('tr', opts.rowAttrs ? opts.rowAttrs(r) : null,
      columns.map(c => h('td', {class: c.cls}, c.value(r))));
    if (opts.onRow) {
      tr.classList.add('clickable');
      tr.addEventListener('click', () => opts.onRow(r));
    }
    return tr;
  });
  if (rows.length === 0) {
    body.push(h('tr', null, h('td', {class: 'empty', colspan: columns.length}, opts.empty || 'Nothing here.')));
  }
  return h('table', {class: 'grid'}, h('thead', null, head), h('tbody', null, body));
}

// field(label, input) wraps a form control with its label.
export function field(label, input, hint) {
  return h('label', {class: 'field'}, h('span', {class: 'label'}, label), input, hint ? h('span', {class: 'hint'}, hint) : null);
}

export function card(title, ...kids) {
  return h('section', {class: 'card'}, title ? h('h2', null, title) : null, kids);
}

// notice shows a message in a status line: kind is 'ok', 'error' or 'info'.
export function notice(el, kind, text) {
  el.className = 'notice ' + kind;
  el.textContent = text;
}

// confirmButton is a button that asks for a second click before it acts (no browser dialog).
export function confirmButton(label, confirmLabel, action, cls = 'danger') {
  const b = h('button', {type: 'button', class: cls}, label);
  let armed = false;
  let timer = null;
  b.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      b.textContent = confirmLabel;
      b.classList.add('armed');
      timer = setTimeout(() => { armed = false; b.textContent = label; b.classList.remove('armed'); }, 4000);
      return;
    }
    clearTimeout(timer);
    armed = false;
    b.textContent = label;
    b.classList.remove('armed');
    b.disabled = true;
    try { await action(); } finally { b.disabled = false; }
  });
  return b;
}

export function fmtBytes(n) {
  if (n === undefined || n === null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
}

export function fmtNum(n) {
  if (n === undefined || n === null) return '–';
  return Number(n).toLocaleString('en-US');
}

export function fmtTime(t) {
  if (!t) return '–';
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  // sv-SE writes 2026-12-05 11:21:52: unambiguous, and local time.
  return d.toLocaleString('sv-SE');
}

export function fmtAge(seconds) {
  if (!seconds) return '0 s';
  if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + ' s';
  if (seconds < 3600) return (seconds / 60).toFixed(0) + ' min';
  return (seconds / 3600).toFixed(1) + ' h';
}

// payloadText is an event's payload as text: UTF-8 as it is, anything else as base64, marked.
export function payloadText(ev) {
  if (ev.payload !== undefined && ev.payload !== null) return ev.payload;
  if (ev.payload_base64) return '(binary, base64) ' + ev.payload_base64;
  return '';
}

export function badge(text, kind) {
  return h('span', {class: 'badge ' + (kind || '')}, text);
}
