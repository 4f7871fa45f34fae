// One workspace: its settings and upstream, its agent accesses (a new key is shown once, with the
// client configurations filled in), and the tools its server lists with their pinned definitions.

import * as api from '../api.js';
import {
  button, copy, field, form, h, labelLines, notify, parseLabels, replace, table, title, when,
} from '../dom.js';
import { environmentSelect } from './workspaces.js';
import { describeUpstream, upstreamFields } from './upstream.js';

export async function workspacePage(id) {
  const path = `${api.organisationPath()}/mcp-server-workspaces/${encodeURIComponent(id)}`;
  const workspace = await api.get(path);
  const agents = h('section', { class: 'panel', 'aria-labelledby': 'agents-heading' });
  const tools = h('section', { class: 'panel', 'aria-labelledby': 'tools-heading' });
  const page = h('section', {},
    title(`Workspace ${workspace.name}`),
    h('p', {},
      `${workspace.environment} · `, h('code', {}, describeUpstream(workspace.upstream)), ' · ',
      h('a', { href: `#/policies?workspace=${workspace.id}` }, 'Policies'), ' · ',
      h('a', { href: `#/audit?workspace_id=${workspace.id}` }, 'Audit log')),
    agents, tools);
  if (api.canWrite()) page.append(settings(path, workspace));
  await Promise.all([drawAgents(agents, workspace), drawTools(tools, path)]);
  return page;
}

function settings(path, workspace) {
  const upstream = upstreamFields(workspace.upstream);
  const confirmDelete = h('div', { hidden: true },
    h('p', {}, `Delete ${workspace.name}? Its agents stop working at once.`),
    button(`Delete ${workspace.name}`, async () => {
      await api.remove(path);
      notify(`Deleted ${workspace.name}.`);
      window.location.hash = '#/workspaces';
    }, { class: 'danger' }));
  return h('section', { class: 'panel' },
    h('h2', {}, 'Settings'),
    form('Workspace settings', [
      field('Name', h('input', { type: 'text', name: 'name', value: workspace.name, required: true })),
      field('Environment', environmentSelect(workspace.environment)),
      upstream.element,
      field('Labels', h('textarea', { name: 'labels', rows: 3 }, labelLines(workspace.labels)),
        'One key=value per line; rules read them as workspace.labels.KEY.'),
    ], 'Save', async (data) => {
      const labels = parseLabels(String(data.get('labels')));
      await api.patch(path, {
        name: String(data.get('name')).trim(),
        environment: data.get('environment'),
        upstream: upstream.read(),
      });
      await api.put(`${path}/labels`, { labels });
      notify('Saved.');
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    }),
    h('h3', {}, 'Delete'),
    button('Delete workspace…', () => { confirmDelete.hidden = false; }, { class: 'danger' }),
    confirmDelete);
}

/** Whether an access works now, and why not. */
function state(agent) {
  if (agent.revoked_at) return `revoked ${when(agent.revoked_at)}`;
  if (agent.expires_at && new Date(agent.expires_at) <= new Date()) return `expired ${when(agent.expires_at)}`;
  return agent.expires_at ? `active until ${when(agent.expires_at)}` : 'active';
}

async function drawAgents(section, workspace) {
  const agents = await api.all(`/api/v1/mcp-server-workspaces/${workspace.id}/agent-accesses`);
  const shown = h('div', { class: 'key-panel', 'aria-live': 'polite' });
  const redraw = () => drawAgents(section, workspace);
  const rows = agents.map((agent) => {
    let actions = '';
    if (api.canWrite()) {
      actions = agent.revoked_at
        ? button('Delete', async () => {
          await api.remove(`/api/v1/agent-accesses/${agent.id}`);
          notify(`Deleted ${agent.name}.`);
          await redraw();
        }, { class: 'danger', 'aria-label': `Delete ${agent.name}` })
        : agentActions(agent, shown, redraw);
    }
    return [
      agent.name,
      h('code', {}, `${agent.key_prefix}…`),
      state(agent),
      agent.previous_key_valid_until ? `old key until ${when(agent.previous_key_valid_until)}` : '',
      agentLabels(agent, redraw),
      h('a', { href: `#/audit?agent_id=${agent.id}` }, 'calls'),
      actions,
    ];
  });
  replace(section,
    h('h2', { id: 'agents-heading' }, 'Agent accesses'),
    h('p', {}, 'An agent access is one key for one agent; the gateway keeps only its SHA-256 hash.'),
    table('Agent accesses', ['Name', 'Key', 'State', 'Rotation', 'Labels', 'Audit', 'Actions'], rows, 'No agent access yet.'),
    shown,
    api.canWrite() ? newAgent(workspace, shown, redraw) : null);
}

/** An agent's labels, and for admins an editor of them. */
function agentLabels(agent, redraw) {
  const text = labelLines(agent.labels) || '—';
  if (!api.canWrite() || agent.revoked_at) return h('code', {}, text);
  const area = h('textarea', { rows: 3, 'aria-label': `Labels of ${agent.name}, one key=value per line` }, labelLines(agent.labels));
  return h('details', {},
    h('summary', {}, text),
    area,
    button('Save labels', async () => {
      await api.put(`/api/v1/agent-accesses/${agent.id}/labels`, { labels: parseLabels(area.value) });
      notify(`Saved the labels of ${agent.name}.`);
      await redraw();
    }, { 'aria-label': `Save the labels of ${agent.name}` }));
}

function agentActions(agent, shown, redraw) {
  const grace = h('input', {
    type: 'number', min: 0, max: 2592000, step: 1, value: 3600, name: 'grace', class: 'short',
    'aria-label': `Seconds the old key of ${agent.name} keeps working`,
  });
  return h('div', { class: 'actions' },
    grace,
    button('Rotate', async () => {
      const rotated = await api.create(`/api/v1/agent-accesses/${agent.id}/rotate`, {
        grace_period_secs: Number(grace.value),
      });
      await redraw();
      showKey(document.querySelector('.key-panel'), rotated);
    }, { 'aria-label': `Rotate the key of ${agent.name}` }),
    button('Revoke', async () => {
      await api.create(`/api/v1/agent-accesses/${agent.id}/revoke`);
      notify(`Revoked ${agent.name}.`);
      await redraw();
    }, { class: 'danger', 'aria-label': `Revoke ${agent.name}` }));
}

function newAgent(workspace, shown, redraw) {
  return h('div', {},
    h('h3', {}, 'New agent access'),
    form('New agent access', [
      field('Name', h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' })),
      field('Expires', h('input', { type: 'datetime-local', name: 'expires' }), 'Optional: when the key stops working by itself.'),
    ], 'Create agent access', async (data) => {
      const body = { name: String(data.get('name')).trim() };
      const expires = String(data.get('expires') || '');
      if (expires) body.expires_at = new Date(expires).toISOString();
      const created = await api.create(`/api/v1/mcp-server-workspaces/${workspace.id}/agent-accesses`, body);
      await redraw();
      showKey(document.querySelector('.key-panel'), created);
    }));
}

/** The key of a new or rotated access, shown this once, with each client's configuration. */
function showKey(panel, { agent_access: agent, key }) {
  const endpoint = `${window.location.origin}/governance-plane/api/v1/proxy/mcp`;
  const snippets = [
    ['Claude Desktop (claude_desktop_config.json)', JSON.stringify({
      mcpServers: { cerberus: {
        command: 'npx',
        args: ['-y', 'mcp-remote', endpoint, '--header', 'Authorization:${CERBERUS_AUTH}'],
        env: { CERBERUS_AUTH: `Bearer ${key}` },
      } },
    }, null, 2)],
    ['Cursor (~/.cursor/mcp.json)', JSON.stringify({
      mcpServers: { cerberus: { url: endpoint, headers: { Authorization: `Bearer ${key}` } } },
    }, null, 2)],
    ['VS Code (.vscode/mcp.json; paste the key when asked)', JSON.stringify({
      inputs: [{ type: 'promptString', id: 'cerberus-key', description: 'Cerberus agent key', password: true }],
      servers: { cerberus: { type: 'http', url: endpoint, headers: { Authorization: 'Bearer ${input:cerberus-key}' } } },
    }, null, 2)],
    ['curl', `curl -si ${endpoint} -H "Authorization: Bearer ${key}" -H "Content-Type: application/json" -H "Accept: application/json, text/event-stream" -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'`],
  ];
  const keyField = h('input', { type: 'text', readonly: true, value: key, id: 'new-key', class: 'key', spellcheck: 'false' });
  replace(panel,
    h('h3', {}, `The key of ${agent.name}`),
    h('p', { class: 'notice warning' }, 'Copy it now: it is shown this once, and only its hash is kept.'),
    h('div', { class: 'row' },
      field('Key', keyField),
      button('Copy key', () => copy(key))),
    snippets.map(([name, text]) => h('details', {},
      h('summary', {}, name),
      h('pre', {}, h('code', {}, text)),
      button(`Copy ${name.split(' (')[0]} configuration`, () => copy(text)))),
    button('Done, hide the key', () => replace(panel)));
  keyField.focus();
  keyField.select();
}

async function drawTools(section, path) {
  const { tools } = await api.get(`${path}/tool-pins`);
  const rows = tools.map((tool) => [
    tool.tool,
    h('span', { class: `badge ${tool.status}` }, tool.status),
    when(tool.listed_at),
    tool.changes.length ? changes(tool) : '',
    tool.status !== 'approved' && api.canWrite()
      ? button('Approve', async () => {
        await api.create(`${path}/tool-pins/approve`, { tool: tool.tool, fingerprint: tool.fingerprint });
        notify(`Approved the listed definition of ${tool.tool}.`);
        await drawTools(section, path);
      }, { 'aria-label': `Approve the listed definition of ${tool.tool}` })
      : '',
  ]);
  replace(section,
    h('h2', { id: 'tools-heading' }, 'Tools and their pinned definitions'),
    h('p', {}, 'With the tool_pinning guardrail, a tool whose definition changes since it was pinned is held until approved here.'),
    table('Tools', ['Tool', 'Status', 'Listed', 'Changes', ''], rows, 'The server has listed no tool through the gateway yet, or tool pinning is off.'));
}

/** The members a listed definition changes: pinned against listed. */
export function changes(tool) {
  return h('details', {},
    h('summary', {}, `${tool.changes.length} change${tool.changes.length === 1 ? '' : 's'}`),
    tool.changes.map((change) => h('div', { class: 'diff' },
      h('h4', {}, change.member),
      h('div', { class: 'diff-pair' },
        h('div', { class: 'removed' }, h('span', { class: 'label' }, 'pinned'),
          h('pre', {}, change.pinned === undefined ? '(absent)' : JSON.stringify(change.pinned, null, 2))),
        h('div', { class: 'added' }, h('span', { class: 'label' }, 'listed'),
          h('pre', {}, change.listed === undefined ? '(absent)' : JSON.stringify(change.listed, null, 2)))))));
}
