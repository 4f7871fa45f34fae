// Analytics: calls by decision over time, the busiest tools and agents, the guardrails that acted
// most, and the gateway's latency, over a chosen range.

import * as api from '../api.js';
import { field, form, h, table, title } from '../dom.js';
import { latencyBars, ranking, stackedBars } from '../chart.js';

/** The ranges offered, with a bucket width that gives about 24 to 60 bars. */
const RANGES = [
  ['1h', 'Last hour', 3600e3, '1m'],
  ['24h', 'Last 24 hours', 86400e3, '1h'],
  ['7d', 'Last 7 days', 7 * 86400e3, '6h'],
  ['30d', 'Last 30 days', 30 * 86400e3, '1d'],
];

export async function analyticsPage(query) {
  const chosen = RANGES.find(([key]) => key === query.get('range')) || RANGES[1];
  const [key, , span, bucket] = chosen;
  const direction = ['request', 'response', 'all'].includes(query.get('direction')) ? query.get('direction') : 'request';
  const to = new Date();
  const params = new URLSearchParams({
    from: new Date(to.getTime() - span).toISOString(), to: to.toISOString(), bucket, direction, top: '10',
  });
  const [data, names] = await Promise.all([
    api.get(`${api.organisationPath()}/analytics?${params}`),
    api.directory(),
  ]);
  const rangeSelect = h('select', { name: 'range' }, RANGES.map(([value, label]) => h('option', { value, selected: value === key }, label)));
  const directionSelect = h('select', { name: 'direction' },
    [['request', 'calls from clients'], ['response', 'answers from servers'], ['all', 'both']]
      .map(([value, label]) => h('option', { value, selected: value === direction }, label)));
  const t = data.totals;
  const micro = (value) => (value === null || value === undefined ? '—' : `${value} µs`);
  const latency = (name, p) => [name, String(p.count), micro(p.p50), micro(p.p90), micro(p.p99), micro(p.max)];
  return h('section', { class: 'analytics' },
    title('Analytics'),
    form('Analytics range', h('div', { class: 'filters' }, field('Range', rangeSelect), field('Messages', directionSelect)),
      'Show', async (formData) => {
        window.location.hash = `#/analytics?${new URLSearchParams({ range: formData.get('range'), direction: formData.get('direction') })}`;
      }),
    h('ul', { class: 'totals' },
      [['Messages', t.total], ['Allowed', t.allow], ['Modified (redacted)', t.modify], ['Blocked', t.block], ['Throttled', t.throttle]]
        .map(([label, value]) => h('li', {}, h('span', { class: 'figure' }, String(value)), h('span', {}, label)))),
    stackedBars('Messages over time, by decision', data.over_time, span > 86400e3),
    h('div', { class: 'rankings' },
      ranking('Top tools', data.by_tool.map((row) => [row.key || '(no tool)', row]), 'No tool was called.'),
      ranking('Top agents', data.by_agent.map((row) => [names.agentName.get(row.key) || row.key, row]), 'No agent called.'),
      ranking('Guardrails that acted', data.guardrails.map((row) => [
        `${row.guardrail} · ${row.direction}s`,
        { total: row.count, [row.decision]: row.count },
      ]), 'No guardrail changed or refused a message.')),
    latencyBars('Latency percentiles', [
      ['Gateway overhead', data.latency.gateway_overhead_us],
      ['Upstream', data.latency.upstream_us],
    ]),
    table('Latency', ['', 'Measured', 'p50', 'p90', 'p99', 'max'], [
      latency('Gateway overhead', data.latency.gateway_overhead_us),
      latency('Upstream', data.latency.upstream_us),
    ]));
}
