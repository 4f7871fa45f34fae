// The audit log: filtered as the API filters it, newest first, a page at a time; each record opens to
// its trace (which guardrail, at which policy level, what it decided and why) and its redacted
// payload, when the gateway keeps payloads. The filters live in the address, so a view can be shared.

import * as api from '../api.js';
import { button, field, form, h, notify, replace, title, when } from '../dom.js';

const DECISIONS = ['allow', 'modify', 'block', 'throttle'];

/** The datetime-local value of an RFC 3339 time, and back. */
function localValue(text) {
  if (!text) return '';
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return '';
  return new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function options(values, selected, none) {
  return [h('option', { value: '' }, none),
    ...values.map(([value, label]) => h('option', { value, selected: value === selected }, label))];
}

export async function auditPage(query) {
  const names = await api.directory();
  const filters = filterForm(query, names);
  const results = h('div', { id: 'audit-results' });
  const page = h('section', {},
    title('Audit log'),
    h('p', {}, 'Every message the gateway decided on, with the guardrail that decided and why.'),
    filters, results);
  await drawResults(results, query, names);
  return page;
}

function filterForm(query, names) {
  const control = (name, element) => {
    element.setAttribute('name', name);
    return element;
  };
  const guardrails = ['rbac', 'rules', 'pii_email', 'pii_phone', 'pii_credit_card', 'pii_ssn', 'pii_iban',
    'pii_ip_address', 'secrets', 'rate_limit_per_minute', 'rate_limit_per_hour', 'max_size', 'tool_pinning', 'approval'];
  return form('Filter the audit log', h('div', { class: 'filters' },
    field('From', control('from', h('input', { type: 'datetime-local', value: localValue(query.get('from')) }))),
    field('To', control('to', h('input', { type: 'datetime-local', value: localValue(query.get('to')) }))),
    field('Workspace', control('workspace_id', h('select', {},
      options(names.workspaces.map((w) => [w.id, w.name]), query.get('workspace_id'), 'any')))),
    field('Agent', control('agent_id', h('select', {},
      options(names.agents.map((a) => [a.id, `${a.name} (${names.workspaceName.get(a.workspace) || '?'})`]), query.get('agent_id'), 'any')))),
    field('Tool', control('tool', h('input', { type: 'text', value: query.get('tool') || '', autocomplete: 'off' }))),
    field('Decision', control('decision', h('select', {},
      options(DECISIONS.map((d) => [d, d]), query.get('decision'), 'any')))),
    field('Guardrail', control('guardrail', h('input', {
      type: 'text', list: 'guardrail-names', value: query.get('guardrail') || '', autocomplete: 'off',
    })), 'That changed or refused the message.'),
    h('datalist', { id: 'guardrail-names' }, guardrails.map((g) => h('option', { value: g }))),
    field('Method', control('method', h('input', { type: 'text', value: query.get('method') || '', placeholder: 'tools/call', autocomplete: 'off' })))),
  'Filter', async (data) => {
    const next = new URLSearchParams();
    for (const [name, value] of data.entries()) {
      const text = String(value).trim();
      if (!text) continue;
      next.set(name, name === 'from' || name === 'to' ? new Date(text).toISOString() : text);
    }
    window.location.hash = `#/audit?${next}`;
  });
}

/** The API's query for the page's filters. */
function apiQuery(query, extra = {}) {
  const params = new URLSearchParams();
  for (const name of ['from', 'to', 'workspace_id', 'agent_id', 'tool', 'decision', 'guardrail', 'method']) {
    if (query.get(name)) params.set(name, query.get(name));
  }
  for (const [name, value] of Object.entries(extra)) params.set(name, value);
  return params;
}

async function drawResults(results, query, names) {
  const tbody = h('tbody');
  const more = h('div', { class: 'more' });
  const load = async (cursor) => {
    const extra = { limit: '50' };
    if (cursor) extra.cursor = cursor;
    const page = await api.get(`${api.organisationPath()}/audit-logs?${apiQuery(query, extra)}`);
    page.items.forEach((record) => tbody.append(...recordRows(record, names)));
    replace(more, page.next_cursor ? button('Older records', () => load(page.next_cursor)) : null);
    return page.items.length;
  };
  replace(results,
    h('div', { class: 'row' },
      button('Export JSON lines', () => exportLog(query, 'jsonl')),
      button('Export CSV', () => exportLog(query, 'csv'))),
    h('div', { class: 'scroll' }, h('table', { class: 'audit' },
      h('caption', {}, 'Audit records, newest first'),
      h('thead', {}, h('tr', {}, ['Time', 'Agent', 'Workspace', 'Direction', 'Method', 'Tool', 'Decision', 'Guardrails', '']
        .map((text) => h('th', { scope: 'col' }, text)))),
      tbody)),
    more);
  if ((await load(null)) === 0) {
    tbody.append(h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No record matches.')));
  }
}

/** A record's row, and the row under it that its button opens: the trace and the payload. */
function recordRows(record, names) {
  const acted = record.trace.filter((entry) => entry.decision !== 'allow').map((entry) => entry.guardrail);
  const detail = h('tr', { class: 'detail', hidden: true }, h('td', { colspan: 9 }, recordDetail(record)));
  const toggle = h('button', { type: 'button', 'aria-expanded': 'false', 'aria-label': `Trace of the record at ${when(record.time)}` }, 'Trace');
  toggle.addEventListener('click', () => {
    detail.hidden = !detail.hidden;
    toggle.setAttribute('aria-expanded', String(!detail.hidden));
  });
  const row = h('tr', {},
    h('td', {}, when(record.time)),
    h('td', {}, names.agentName.get(record.identity.agent) || record.key_prefix || record.identity.agent),
    h('td', {}, names.workspaceName.get(record.identity.workspace) || record.identity.workspace),
    h('td', {}, record.direction),
    h('td', {}, record.method || ''),
    h('td', {}, record.target || ''),
    h('td', {}, h('span', { class: `badge ${record.decision}` }, record.decision)),
    h('td', {}, [...new Set(acted)].join(', ')),
    h('td', {}, toggle));
  return [row, detail];
}

function recordDetail(record) {
  const facts = [
    ['Record', record.id],
    ['Session', record.session],
    ['JSON-RPC id', record.jsonrpc_id],
    ['Size', `${record.size_bytes} bytes`],
    ['Gateway overhead', `${record.overhead_us} µs`],
    ['Upstream', record.upstream_us === undefined ? undefined : `${record.upstream_us} µs, HTTP ${record.upstream_status ?? '—'}`],
  ].filter(([, value]) => value !== undefined && value !== null);
  return h('div', { class: 'record' },
    h('dl', {}, facts.map(([name, value]) => [h('dt', {}, name), h('dd', {}, String(value))])),
    h('h3', {}, 'Trace'),
    record.trace.length === 0
      ? h('p', {}, 'No guardrail ran.')
      : h('ol', { class: 'trace' }, record.trace.map((entry) => h('li', {},
        h('span', { class: `badge ${entry.decision}` }, entry.decision), ' ',
        h('strong', {}, entry.guardrail), ` at the ${entry.level} level`,
        entry.code ? [' · ', h('code', {}, entry.code)] : null,
        entry.reason ? `: ${entry.reason}` : null,
        entry.retry_after_ms !== undefined ? ` (retry after ${entry.retry_after_ms} ms)` : null))),
    h('h3', {}, 'Payload'),
    record.payload === undefined
      ? h('p', {}, 'Not kept: the gateway keeps redacted payloads only with [audit] payloads = "redacted".')
      : h('pre', { class: 'payload' }, JSON.stringify(record.payload, null, 2)));
}

/** Downloads the export of the page's filters, as the API streams it. */
async function exportLog(query, format) {
  const response = await api.request('GET', `${api.organisationPath()}/audit-logs/export?${apiQuery(query, { format })}`, undefined, { raw: true });
  const blob = await response.blob();
  const link = h('a', { href: URL.createObjectURL(blob), download: `audit-log.${format}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  notify(`Exported ${blob.size} bytes.`);
}
