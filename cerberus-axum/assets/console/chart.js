// Charts drawn as SVG from nodes (no library, nothing loaded from elsewhere): stacked bars over time
// and horizontal bars for rankings, each with a text alternative for screen readers.

import { h, svg } from './dom.js';

/** The decisions, in stacking order, with their class (colour) and label. */
export const SERIES = [
  ['allow', 'allowed'],
  ['modify', 'modified'],
  ['block', 'blocked'],
  ['throttle', 'throttled'],
];

/** A stacked bar chart of `buckets` (each with `start` and a count per series), labelled by day
 * when `days`, else by time of day. */
export function stackedBars(caption, buckets, days = false) {
  const width = 720;
  const height = 220;
  const left = 40;
  const bottom = 24;
  const most = Math.max(1, ...buckets.map((b) => SERIES.reduce((sum, [key]) => sum + (b[key] || 0), 0)));
  const slot = (width - left) / Math.max(1, buckets.length);
  const scale = (height - bottom - 8) / most;
  const bars = buckets.flatMap((bucket, index) => {
    let y = height - bottom;
    return SERIES.map(([key, label]) => {
      const value = bucket[key] || 0;
      const tall = value * scale;
      y -= tall;
      if (value === 0) return null;
      return svg('rect', {
        class: `bar ${key}`, x: left + index * slot + 1, y, width: Math.max(1, slot - 2), height: tall,
      }, svg('title', {}, `${new Date(bucket.start).toLocaleString()}: ${value} ${label}`));
    });
  });
  const ticks = [0, Math.round(most / 2), most].map((value) => svg('text', {
    x: left - 6, y: height - bottom - value * scale + 4, 'text-anchor': 'end', class: 'tick',
  }, String(value)));
  const every = Math.max(1, Math.ceil(buckets.length / 6));
  const labels = buckets.map((bucket, index) => (index % every === 0 ? svg('text', {
    x: left + index * slot + slot / 2, y: height - 6, 'text-anchor': 'middle', class: 'tick',
  }, days
    ? new Date(bucket.start).toLocaleDateString([], { month: 'short', day: 'numeric' })
    : new Date(bucket.start).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })) : null));
  const total = (key) => buckets.reduce((sum, b) => sum + (b[key] || 0), 0);
  const summary = SERIES.map(([key, label]) => `${total(key)} ${label}`).join(', ');
  return h('figure', { class: 'chart' },
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `${caption}: ${summary}` },
      svg('line', { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: 'axis' }),
      ticks, bars, labels),
    h('figcaption', {}, caption, legend()));
}

/** The colour key of the series. */
export function legend() {
  return h('ul', { class: 'legend' }, SERIES.map(([key, label]) => h('li', {}, h('span', { class: `swatch ${key}` }), label)));
}

/** Horizontal bars of `rows` (`[label, count per series]`), longest first, as a list. */
export function ranking(caption, rows, empty) {
  if (rows.length === 0) return h('figure', { class: 'ranking' }, h('figcaption', {}, caption), h('p', { class: 'empty' }, empty));
  const most = Math.max(1, ...rows.map(([, counts]) => counts.total));
  return h('figure', { class: 'ranking' },
    h('figcaption', {}, caption),
    h('ol', {}, rows.map(([label, counts]) => h('li', {},
      h('span', { class: 'name' }, label),
      svg('svg', { viewBox: '0 0 200 12', preserveAspectRatio: 'none', 'aria-hidden': 'true', class: 'track' },
        (() => {
          let x = 0;
          return SERIES.map(([key]) => {
            const wide = ((counts[key] || 0) / most) * 200;
            const bar = wide > 0 ? svg('rect', { class: `bar ${key}`, x, y: 0, width: wide, height: 12 }) : null;
            x += wide;
            return bar;
          });
        })()),
      h('span', { class: 'count' }, SERIES.filter(([key]) => counts[key]).map(([key, label]) => `${counts[key]} ${label}`).join(', ') || '0')))));
}

/** Latency percentiles as bars on one scale: `rows` of `[name, {p50, p90, p99, max}]`, in µs. */
export function latencyBars(caption, rows) {
  const marks = [['p50', 'median'], ['p90', '90th'], ['p99', '99th'], ['max', 'max']];
  const most = Math.max(1, ...rows.flatMap(([, p]) => marks.map(([key]) => p[key] || 0)));
  const width = 720;
  const left = 70;
  const line = 18;
  const height = rows.length * ((marks.length + 1) * line + 10);
  let y = 0;
  const bars = rows.flatMap(([name, p]) => {
    const group = [svg('text', { x: 0, y: y + 13, class: 'tick name' }, name)];
    y += line;
    marks.forEach(([key, label]) => {
      const value = p[key];
      const wide = value ? (value / most) * (width - left - 90) : 0;
      group.push(
        svg('text', { x: left - 6, y: y + 13, 'text-anchor': 'end', class: 'tick' }, label),
        svg('rect', { class: `bar latency ${key}`, x: left, y: y + 3, width: Math.max(wide, value ? 1 : 0), height: line - 6 }),
        svg('text', { x: left + wide + 6, y: y + 13, class: 'tick' }, value ? `${value} µs` : '—'));
      y += line;
    });
    y += 10;
    return group;
  });
  const summary = rows.map(([name, p]) => `${name}: median ${p.p50 ?? '—'} µs, 99th ${p.p99 ?? '—'} µs`).join('; ');
  return h('figure', { class: 'chart latency' },
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `${caption}: ${summary}` }, bars),
    h('figcaption', {}, caption));
}
