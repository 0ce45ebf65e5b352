// The view page (GET /view/{dcc}/{local_id}): asks the API for the file; a file that is not ready
// is requested (POST /files/...) and its job followed (state, stages, progress, elapsed, the Dagster
// run); once ready, its contigs give the assembly and first region, and Gosling reads the
// content-addressed /artifacts URLs with range requests. A failed build shows its error sentence.
// The phase (loading, building, rendering, ready, failed, unsupported) is on <body data-phase>.
import { el, formatBytes, safeHref, stateBadge, viewable } from './common.js';

// The API's origin: this page's own. The browser tests set window.CFDB_API to another origin of
// the same server, so that Gosling reads cross-origin, through CORS, as a portal embedding it does.
const API = window.CFDB_API || location.origin;
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);
const { dcc, localId } = document.body.dataset;
const FILE = `/files/${encodeURIComponent(dcc)}/${encodeURIComponent(localId)}`;
const viewer = { phase: 'loading', rows: {}, spec: null, gosling: null, file: null };
window.cfdbViewer = viewer; // what the page shows, for the browser tests and for debugging

/** The JSON answer of an API request: {status, body}. */
async function call(path, options = {}) {
  const response = await fetch(new URL(path, API), { ...options, headers: { Accept: 'application/json' } });
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = { detail: `The API answered HTTP ${response.status} without a body.` };
  }
  return { status: response.status, body };
}

function phase(name) {
  viewer.phase = name;
  document.body.dataset.phase = name;
}

function stop(sentence, kind = 'failed') {
  $('message').textContent = sentence;
  $('message').className = `message ${kind === 'failed' ? 'error' : 'note'}`;
  $('message').hidden = false;
  phase(kind);
}

function showFile(file) {
  viewer.file = file;
  const links = [
    ['/files JSON', safeHref(FILE, API)],
    ['Dagster partition', safeHref(file.asset_url)],
  ].filter(([, href]) => href).map(([text, href]) => el('a', { href }, text));
  const parts = [file.format, formatBytes(file.size), stateBadge(file.state, file.error || file.job?.error), ...links];
  $('meta').replaceChildren(...parts.flatMap((part, i) => (i ? [' · ', part] : [part])));
  if (file.filename && file.filename !== file.local_id) $('title').textContent = `${file.local_id} · ${file.filename}`;
}

async function main() {
  let { status, body } = await call(FILE);
  if (status !== 200) return stop(body.detail);
  showFile(body);
  if (!viewable(body)) {
    const why = body.state === 'unprocessable' ? body.error : `${body.format} files have no genome view.`;
    return stop(why, 'unsupported');
  }
  if (body.state !== 'ready' && body.format !== 'bigWig') {
    if (body.state === 'missing' || body.state === 'failed') {
      ({ status, body } = await call(FILE, { method: 'POST' }));
      if (status !== 200 && status !== 202) return stop(body.detail);
      showFile(body);
    }
    if (body.state !== 'ready') {
      const job = await follow(body.job.url);
      if (job.status === 'failed') {
        const now = await call(FILE);
        if (now.status === 200) showFile(now.body);
        return stop(`Preparing this file failed: ${job.error}`);
      }
      ({ status, body } = await call(FILE));
      if (status !== 200 || body.state !== 'ready') return stop(body.detail || `The file is ${body.state}, not ready.`);
      showFile(body);
    }
  }
  await show(body);
}

/** Poll a job until it ends (following the job that replaced a failed one); its last answer. */
async function follow(path) {
  phase('building');
  $('build').hidden = false;
  for (;;) {
    const { status, body } = await call(path);
    if (status !== 200) return { status: 'failed', error: body.detail };
    if (body.status === 'failed' && body.superseded_by) {
      path = `/jobs/${encodeURIComponent(body.superseded_by)}`;
      continue;
    }
    showJob(body);
    if (body.status === 'completed' || body.status === 'failed') return body;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function showJob(job) {
  $('job-status').replaceWith(Object.assign(stateBadge(job.status), { id: 'job-status' }));
  for (const item of document.querySelectorAll('.stages li')) {
    item.classList.toggle('done', job.stages_done.includes(item.dataset.stage));
  }
  $('job-progress').textContent = job.progress || (job.status === 'pending' ? 'waiting for a run to start' : '');
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(job.created_at)) / 1000));
  $('job-elapsed').textContent = Number.isFinite(seconds) ? `${seconds} s` : '';
  const links = [['job JSON', safeHref(`/jobs/${job.job_id}`, API)], ['Dagster run', safeHref(job.run_url)]];
  $('job-links').replaceChildren(...links.filter(([, href]) => href).flatMap(([text, href], i) =>
    [i ? ' · ' : '', el('a', { href }, text)]));
}

async function show(file) {
  phase('rendering');
  $('build').hidden = true;
  if (file.index_type === 'csi') {
    return stop('This file needed a CSI index (a contig longer than 2^29 bases), and Gosling 1.0.7 reads BAI '
      + 'and TBI indexes only; its data and index are still served at the links above.', 'unsupported');
  }
  const { status, body: contigs } = await call(`${FILE}/contigs`);
  if (status !== 200) return stop(contigs.detail);
  const { goslingSpec } = await import('cfdb/spec');
  const width = Math.max(600, $('view').parentElement.clientWidth - 90);
  const spec = goslingSpec(file, contigs, API, width);
  if (!spec.xDomain) return stop('This file has no records to show.', 'unsupported');
  viewer.spec = spec;
  const region = spec.xDomain;
  const assembly = spec.assembly === 'hg38' ? 'hg38' : `the file's own ${spec.assembly.length} contigs`;
  $('region').textContent = `${region.chromosome}:${region.interval[0].toLocaleString()}–`
    + `${region.interval[1].toLocaleString()} · assembly: ${assembly} · drag to pan, scroll to zoom`;
  $('view').hidden = false;
  const { embed } = await import('gosling');
  const gosling = await embed($('gosling'), spec, { padding: 0 });
  viewer.gosling = gosling;
  gosling.subscribe('rawData', (_type, event) => {
    viewer.rows[event.id] = event.data.length;
    $('gosling').dataset.rows = JSON.stringify(viewer.rows);
  });
  phase('ready');
}

main().catch((error) => {
  stop(`The viewer stopped: ${error.message}`);
  throw error; // unexpected: also reported on the console
});
