// Calls held for approval: the pending ones with approve and deny (and a note), the answered ones
// after them; and every workspace's tools whose definition changed since it was pinned.

import * as api from '../api.js';
import { button, h, notify, replace, table, title, when } from '../dom.js';
import { changes } from './workspace.js';

export async function approvalsPage(query) {
  const status = ['pending', 'approved', 'denied', 'timed_out'].includes(query.get('status')) ? query.get('status') : 'pending';
  const names = await api.directory();
  const path = `${api.organisationPath()}/approvals`;
  const approvals = (await api.get(`${path}?status=${status}&limit=200`)).items;
  const list = h('div');
  const draw = (items) => replace(list, items.length === 0
    ? h('p', { class: 'empty' }, status === 'pending' ? 'No call is waiting for an answer.' : `No ${status.replace('_', ' ')} call.`)
    : h('ul', { class: 'cards' }, items.map((approval) => card(approval, names, path))));
  draw(approvals);
  const pins = await changedTools(names);
  return h('section', {},
    title('Approvals'),
    h('nav', { 'aria-label': 'Approval status', class: 'tabs' }, ['pending', 'approved', 'denied', 'timed_out'].map((s) => h('a', {
      href: `#/approvals?status=${s}`, 'aria-current': s === status ? 'page' : undefined,
    }, s.replace('_', ' ')))),
    list,
    h('h2', {}, 'Changed tool definitions'),
    pins);
}

function card(approval, names, path) {
  const note = h('input', { type: 'text', maxlength: 1000, 'aria-label': `Note for the call to ${approval.target || approval.method}`, placeholder: 'Note (optional)' });
  const answer = (verb) => button(verb === 'approve' ? 'Approve' : 'Deny', async () => {
    const body = note.value.trim() ? { note: note.value.trim() } : {};
    await api.create(`${path}/${approval.id}/${verb}`, body);
    notify(`${verb === 'approve' ? 'Approved' : 'Denied'} the call to ${approval.target || approval.method}.`);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  }, { class: verb === 'deny' ? 'danger' : undefined, 'aria-label': `${verb === 'approve' ? 'Approve' : 'Deny'} the call to ${approval.target || approval.method}` });
  return h('li', { class: 'card' },
    h('h3', {}, `${approval.method} ${approval.target || ''}`),
    h('p', {}, `By ${names.agentName.get(approval.agent) || approval.agent} in ${names.workspaceName.get(approval.workspace) || approval.workspace}, held by `,
      h('code', {}, approval.guardrail), `: ${approval.reason}`),
    h('p', {}, `Held ${when(approval.requested_at)}; `, approval.status === 'pending'
      ? `refused at ${when(approval.expires_at)} unless answered.`
      : `${approval.status.replace('_', ' ')} ${when(approval.decided_at)}${approval.note ? ` — “${approval.note}”` : ''}.`),
    approval.arguments === undefined || approval.arguments === null ? null
      : h('details', { open: approval.status === 'pending' }, h('summary', {}, 'Arguments (redacted)'), h('pre', {}, JSON.stringify(approval.arguments, null, 2))),
    approval.status === 'pending' && api.canWrite() ? h('div', { class: 'row' }, note, answer('approve'), answer('deny')) : null);
}

async function changedTools(names) {
  const base = `${api.organisationPath()}/mcp-server-workspaces`;
  const found = await Promise.all(names.workspaces.map(async (workspace) => {
    const { tools } = await api.get(`${base}/${workspace.id}/tool-pins?status=unapproved`);
    return tools.map((tool) => [workspace, tool]);
  }));
  const rows = found.flat().map(([workspace, tool]) => [
    h('a', { href: `#/workspaces/${workspace.id}` }, workspace.name),
    tool.tool,
    h('span', { class: `badge ${tool.status}` }, tool.status),
    changes(tool),
    api.canWrite() ? button('Approve', async () => {
      await api.create(`${base}/${workspace.id}/tool-pins/approve`, { tool: tool.tool, fingerprint: tool.fingerprint });
      notify(`Approved the listed definition of ${tool.tool}.`);
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    }, { 'aria-label': `Approve the listed definition of ${tool.tool} in ${workspace.name}` }) : '',
  ]);
  return table('Tools whose listed definition is not approved', ['Workspace', 'Tool', 'Status', 'Changes', ''], rows, 'Every listed tool definition is approved.');
}
