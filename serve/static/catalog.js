// The catalog page (GET /): one page of GET /files at a time, grouped by DCC, with each file's
// format, size and state; a filter over the page shown; paging with the API's cursors. The DCC,
// page size and filter live in the address (?dcc=&limit=&q=), so a view can be linked.
import { el, formatBytes, safeHref, stateBadge, viewable } from './common.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const asked = Number(params.get('limit'));
const state = {
  dcc: params.get('dcc') || '',
  limit: Number.isInteger(asked) && asked >= 1 && asked <= 500 ? asked : 25, // the API's range
  q: params.get('q') || '',
  cursors: [null], // the cursor of each page shown so far; the last one is the current page's
  files: [],
  next: null,
};

function setup() {
  const dccs = document.body.dataset.dccs.split(',').filter(Boolean);
  $('dcc').append(...dccs.map((dcc) => el('option', { value: dcc }, dcc)));
  if (![...$('limit').options].some((o) => Number(o.value) === state.limit)) {
    $('limit').append(el('option', {}, String(state.limit)));
  }
  $('dcc').value = state.dcc;
  $('limit').value = String(state.limit);
  $('filter').value = state.q;
  $('controls').addEventListener('submit', (event) => event.preventDefault());
  $('dcc').addEventListener('change', () => restart({ dcc: $('dcc').value }));
  $('limit').addEventListener('change', () => restart({ limit: Number($('limit').value) }));
  $('filter').addEventListener('input', () => {
    state.q = $('filter').value;
    render();
  });
  $('next').addEventListener('click', () => {
    state.cursors.push(state.next);
    load();
  });
  $('prev').addEventListener('click', () => {
    state.cursors.pop();
    load();
  });
  load();
}

function restart(changes) {
  Object.assign(state, changes, { cursors: [null] });
  load();
}

async function load() {
  document.body.dataset.loading = 'true';
  const query = new URLSearchParams({ limit: String(state.limit) });
  if (state.dcc) query.set('dcc', state.dcc);
  const cursor = state.cursors[state.cursors.length - 1];
  if (cursor) query.set('cursor', cursor);
  try {
    const response = await fetch(`/files?${query}`, { headers: { Accept: 'application/json' } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
    state.files = body.files;
    state.next = body.next_cursor;
    render();
  } catch (error) {
    $('status').textContent = `The catalog cannot be listed: ${error.message}`;
    $('status').classList.add('error');
  } finally {
    delete document.body.dataset.loading;
  }
}

function render() {
  const q = state.q.trim().toLowerCase();
  const matches = (f) => [f.local_id, f.filename, f.format, f.state, f.dcc].some((v) => v && v.toLowerCase().includes(q));
  const shown = q ? state.files.filter(matches) : state.files;
  const groups = new Map();
  for (const file of shown) {
    if (!groups.has(file.dcc)) groups.set(file.dcc, []);
    groups.get(file.dcc).push(file);
  }
  $('listing').replaceChildren(...[...groups].map(([dcc, files]) => group(dcc, files)));
  if (!shown.length) {
    $('listing').replaceChildren(el('p', { class: 'muted' }, q ? 'No file on this page matches.' : 'No files here.'));
  }
  const page = state.files.length === 1 ? '1 file' : `${state.files.length} files`;
  $('status').classList.remove('error');
  $('status').textContent = q
    ? `${shown.length} of the ${page} on this page match “${state.q.trim()}”.`
    : `${page} on this page.`;
  $('page').textContent = `Page ${state.cursors.length}`;
  $('prev').disabled = state.cursors.length === 1;
  $('next').disabled = !state.next;
  const address = new URLSearchParams();
  if (state.dcc) address.set('dcc', state.dcc);
  if (state.limit !== 25) address.set('limit', String(state.limit));
  if (state.q) address.set('q', state.q);
  history.replaceState(null, '', address.size ? `?${address}` : location.pathname);
}

function group(dcc, files) {
  const head = el('tr', {}, ...['File', 'Format', 'Size', 'State', ''].map((t) => el('th', { scope: 'col' }, t)));
  return el('section', { class: 'dcc', 'data-dcc': dcc },
    el('h2', {}, dcc),
    el('table', { class: 'files' }, el('thead', {}, head), el('tbody', {}, ...files.map(row))));
}

function row(file) {
  const name = file.filename && file.filename !== file.local_id ? el('span', { class: 'filename' }, file.filename) : null;
  return el('tr', { 'data-local-id': file.local_id, 'data-state': file.state },
    el('td', { class: 'file' }, el('span', { class: 'id' }, file.local_id), name),
    el('td', {}, file.format),
    el('td', { class: 'num' }, formatBytes(file.size)),
    el('td', {}, stateBadge(file.state, file.error || file.job?.error)),
    el('td', { class: 'action' }, action(file)));
}

function action(file) {
  const path = `${encodeURIComponent(file.dcc)}/${encodeURIComponent(file.local_id)}`;
  if (viewable(file)) return el('a', { class: 'button', href: `/view/${path}` }, 'View');
  const download = file.state === 'passthrough' ? safeHref(file.data_url) : null;
  if (download) return el('a', { href: download, title: `${file.format} files have no genome view` }, 'Download');
  return el('span', { class: 'muted', title: file.error || 'No genome view for this file' }, '—');
}

setup();
