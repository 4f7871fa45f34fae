// The organisation's workspaces (one MCP server each): the list, and a new one for admins.

import * as api from '../api.js';
import { field, form, h, table, title, when } from '../dom.js';
import { describeUpstream, upstreamFields } from './upstream.js';

/** The environment select, with `selected` chosen. */
export function environmentSelect(selected = 'production') {
  return h('select', { name: 'environment' },
    ['production', 'staging', 'development'].map((value) => h('option', { value, selected: value === selected }, value)));
}

export async function workspacesPage() {
  const workspaces = await api.all(`${api.organisationPath()}/mcp-server-workspaces`);
  const rows = workspaces.map((w) => [
    h('a', { href: `#/workspaces/${w.id}` }, w.name),
    w.environment,
    h('code', {}, describeUpstream(w.upstream)),
    when(w.created_at),
  ]);
  const page = h('section', {},
    title('Workspaces'),
    h('p', {}, 'Each workspace is one MCP server behind the gateway, with its agents and policy.'),
    table('Workspaces', ['Name', 'Environment', 'Upstream', 'Created'], rows, 'No workspace yet.'));
  if (api.canWrite()) page.append(newWorkspace());
  return page;
}

function newWorkspace() {
  const upstream = upstreamFields();
  return h('section', { class: 'panel' },
    h('h2', {}, 'New workspace'),
    form('New workspace', [
      field('Name', h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' })),
      field('Environment', environmentSelect()),
      upstream.element,
    ], 'Create workspace', async (data) => {
      const created = await api.create(`${api.organisationPath()}/mcp-server-workspaces`, {
        name: String(data.get('name')).trim(),
        environment: data.get('environment'),
        upstream: upstream.read(),
      });
      window.location.hash = `#/workspaces/${created.id}`;
    }));
}
