// A small line chart in SVG, written for the console: no library, no markup strings.
import {s} from './dom.js';

// lineChart draws series [{name, cls, points: [numbers]}] on a shared scale, newest at the right.
export function lineChart(series, opts = {}) {
  const w = opts.width || 640, hgt = opts.height || 180;
  const pad = {l: 48, r: 12, t: 12, b: 22};
  const n = Math.max(2, opts.capacity || Math.max(...series.map(x => x.points.length), 2));
  const top = Math.max(1, ...series.flatMap(x => x.points));
  const scale = niceCeil(top);
  const x = i => pad.l + (w - pad.l - pad.r) * (i / (n - 1));
  const y = v => pad.t + (hgt - pad.t - pad.b) * (1 - v / scale);
  const svg = s('svg', {viewBox: `0 0 ${w} ${hgt}`, class: 'chart', role: 'img', 'aria-label': opts.label || 'chart'});
  for (let k = 0; k <= 4; k++) {
    const v = scale * k / 4;
    svg.append(s('line', {x1: pad.l, x2: w - pad.r, y1: y(v), y2: y(v), class: 'gridline'}));
    svg.append(s('text', {x: pad.l - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end'}, fmt(v)));
  }
  svg.append(s('text', {x: pad.l, y: hgt - 6, class: 'axis'}, opts.leftLabel || ''));
  svg.append(s('text', {x: w - pad.r, y: hgt - 6, class: 'axis', 'text-anchor': 'end'}, 'now'));
  for (const ser of series) {
    const off = n - ser.points.length;
    const pts = ser.points.map((v, i) => `${x(i + off).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    if (ser.points.length > 1) svg.append(s('polyline', {points: pts, class: 'series ' + ser.cls}));
  }
  return svg;
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (v >= 1e3) return (v / 1e3).toFixed(1) + 'k';
  return String(Math.round(v * 100) / 100);
}
