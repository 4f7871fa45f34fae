// Charts drawn as SVG from nodes (no library, nothing loaded from elsewhere): stacked bars over time
// and horizontal bars for rankings, each with a text alternative for screen readers.

import { h, svg } from './dom.js';

/** The decisions, in stacking order, with their class (colour) and label. */
export const SERIES = [
  ['allow', 'allowed'],
  ['modify', 'redacted'],
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
