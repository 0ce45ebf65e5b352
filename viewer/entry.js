// The one module the viewer page imports: Gosling's embed(), bundled with its peers (React 18,
// pixi.js 6, HiGlass) by scripts/setup.sh, since gosling.js 1.0.7 ships an ES module whose imports
// are bare package names a browser cannot resolve on its own.
export { embed, version } from 'gosling.js';
