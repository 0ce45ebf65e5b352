// Small helpers the catalog and view pages share: building DOM nodes, sizes, state badges.

/** An element with attributes (null/false ones left out) and children (strings become text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name === 'className' ? 'class' : name, value === true ? '' : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** 1536 → "1.5 KiB"; null → "—". */
export function formatBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A file's state as a badge; ``title`` (e.g. the error) shows on hover. */
export function stateBadge(state, title) {
  return el('span', { class: `badge state-${state}`, title, 'data-state': state }, state);
}

/** Whether the viewer can show a file: processed families (once ready) and bigWig passthroughs. */
export function viewable(file) {
  if (file.state === 'unprocessable') return false;
  return file.family === 'alignments' || file.family === 'intervals' || file.format === 'bigWig';
}

/** ``url`` as an absolute http(s) URL, or null (never a javascript: link from a response). */
export function safeHref(url, base = location.href) {
  if (!url) return null;
  try {
    const parsed = new URL(url, base);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
  } catch {
    return null;
  }
}
