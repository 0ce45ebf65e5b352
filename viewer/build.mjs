// Bundles the viewer's browser libraries into serve/static/vendor/ (scripts/setup.sh runs it after
// `npm ci`): gosling.js 1.0.7 ships an ES module whose imports are bare package names (react,
// pixi.js, higlass, d3-*, ...), which a browser cannot resolve without a bundler or a CDN, so its
// embed() is bundled once, with the versions package-lock.json pins, into one ES module.
// Writes gosling.js and LICENSES.txt (every bundled package, its version, license and text).
import { build } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const vendor = path.resolve(here, '../serve/static/vendor');
const staging = `${vendor}.tmp`;

rmSync(staging, { recursive: true, force: true });
mkdirSync(staging, { recursive: true });
const result = await build({
  entryPoints: [path.join(here, 'entry.js')],
  bundle: true,
  format: 'esm',
  minify: true,
  target: 'es2020',
  define: { 'process.env.NODE_ENV': '"production"' },
  legalComments: 'none', // the licenses are in LICENSES.txt, whole
  outfile: path.join(staging, 'gosling.js'),
  metafile: true,
  logLevel: 'error',
});

// The package directory of each bundled file: the part up to its last node_modules/<name>.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = /^(?:\(disabled\):)?(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (match) packages.set(path.resolve(here, match[1]), null);
}
const lines = [];
const texts = [];
for (const dir of [...packages.keys()].sort()) {
  const meta = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const license = typeof meta.license === 'string' ? meta.license : (meta.license?.type ?? 'see text');
  const file = readdirSync(dir).find((name) => /^(licen[cs]e|copying)/i.test(name));
  lines.push(`${meta.name}@${meta.version} ${license}`);
  if (file) texts.push(`==== ${meta.name}@${meta.version} (${file})\n\n${readFileSync(path.join(dir, file), 'utf8').trim()}\n`);
}
const unique = [...new Set(lines)];
writeFileSync(path.join(staging, 'LICENSES.txt'),
  `The packages bundled into gosling.js (viewer/package-lock.json), one per line, then their license texts.\n\n${unique.join('\n')}\n\n${[...new Set(texts)].join('\n')}`);

if (existsSync(vendor)) rmSync(vendor, { recursive: true });
renameSync(staging, vendor);
console.log(`viewer: bundled ${unique.length} packages into ${path.relative(process.cwd(), vendor)}/gosling.js`);
