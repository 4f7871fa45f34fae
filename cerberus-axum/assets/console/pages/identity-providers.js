// Identity providers: the sign-in services whose people connect MCP clients with OAuth instead of an
// agent key (docs/authentication.md), the workspaces each reaches, and the policies of their groups
// and people.

import * as api from '../api.js';
import { button, field, form, h, notify, table, title, when } from '../dom.js';

const providersPath = () => `${api.organisationPath()}/identity-providers`;

/** Names separated by spaces, commas or lines. */
const names = (text) => String(text || '').split(/[\s,]+/).filter(Boolean);

/** A policy document from a text field; empty is none. */
function documentOf(text, label) {
  const trimmed = String(text || '').trim();
  if (!trimmed) return undefined;
  try {
    return JSON.parse(trimmed);
  } catch (error) {
    throw new Error(`${label} is not JSON: ${error.message}`);
  }
}

function workspacesText(workspaces, workspaceName) {
  if (workspaces === '*') return 'every workspace';
  return workspaces.map((id) => workspaceName.get(id) || id).join(', ');
}

async function workspaceNames() {
  const workspaces = await api.all(`${api.organisationPath()}/mcp-server-workspaces`);
  return { workspaces, workspaceName: new Map(workspaces.map((w) => [w.id, w.name])) };
}

export async function identityProvidersPage() {
  let providers;
  try {
    providers = await api.all(providersPath());
  } catch (error) {
    if (error.status !== 404) throw error;
    return h('section', {}, title('Identity providers'),
      h('p', {}, 'This build of the gateway takes no OAuth access tokens (cargo feature oauth): people connect with agent keys.'));
  }
  const { workspaces, workspaceName } = await workspaceNames();
  const rows = providers.map((provider) => [
    h('a', { href: `#/identity-providers/${provider.id}` }, provider.name),
    provider.issuer,
    workspacesText(provider.workspaces, workspaceName),
    provider.required_scopes.join(' '),
    when(provider.created_at),
  ]);
  const page = h('section', {},
    title('Identity providers'),
    h('p', {}, 'People of these providers sign in from their MCP client (Claude, VS Code, the MCP Inspector) and call tools as themselves, with their own policies, limits and audit trail. Each workspace a provider reaches is at /mcp/WORKSPACE-ID on the gateway\'s public address.'),
    table('Identity providers', ['Name', 'Issuer', 'Workspaces', 'Required scopes', 'Since'], rows, 'No identity provider yet: people connect with agent keys only.'));
  if (api.canWrite()) page.append(newProvider(workspaces));
  return page;
}

/** The workspace fields of a provider's form: every workspace, or those checked. */
function workspaceFields(workspaces, chosen = []) {
  const every = h('input', { type: 'checkbox', name: 'every', checked: chosen === '*' });
  return h('fieldset', {},
    h('legend', {}, 'Workspaces'),
    h('label', {}, every, ' Every workspace, those created later too'),
    workspaces.map((w) => h('label', {},
      h('input', { type: 'checkbox', name: 'workspace', value: w.id, checked: Array.isArray(chosen) && chosen.includes(w.id) }),
      ` ${w.name}`)));
}

function settingsOf(data) {
  return {
    name: String(data.get('name')).trim(),
    issuer: String(data.get('issuer')).trim(),
    workspaces: data.get('every') ? '*' : data.getAll('workspace').map(String),
    required_scopes: names(data.get('scopes')),
    allowed_groups: String(data.get('groups') || '').split('\n').map((g) => g.trim()).filter(Boolean),
    policy: documentOf(data.get('policy'), 'The policy'),
  };
}

function providerFields(workspaces, provider = {}) {
  return [
    field('Name', h('input', { type: 'text', name: 'name', required: true, value: provider.name || '', autocomplete: 'off' })),
    field('Issuer', h('input', { type: 'url', name: 'issuer', required: true, value: provider.issuer || '', placeholder: 'https://login.example.com/realms/acme' }),
      'The provider\'s issuer identifier, exactly as its tokens\' iss claim has it.'),
    workspaceFields(workspaces, provider.workspaces),
    field('Required scopes', h('input', { type: 'text', name: 'scopes', value: (provider.required_scopes || []).join(' ') }),
      'Separated by spaces; every token must carry them.'),
    field('Allowed groups', h('textarea', { name: 'groups', rows: 2 }, (provider.allowed_groups || []).join('\n')),
      'One per line; when any, a person must be in one of them.'),
    field('Policy', h('textarea', { name: 'policy', rows: 4, class: 'code' }, provider.policy ? JSON.stringify(provider.policy, null, 2) : ''),
      'A policy document for everyone the provider signs in (optional).'),
  ];
}

function newProvider(workspaces) {
  return h('section', { class: 'panel' },
    h('h2', {}, 'New identity provider'),
    form('New identity provider', providerFields(workspaces), 'Trust identity provider', async (data) => {
      const created = await api.create(providersPath(), settingsOf(data));
      notify(`${created.name} is trusted.`);
      window.location.hash = `#/identity-providers/${created.id}`;
    }));
}

export async function identityProviderPage(id) {
  const path = `${providersPath()}/${id}`;
  const [provider, members, { workspaces, workspaceName }] = await Promise.all([
    api.get(path), api.get(`${path}/member-policies`), workspaceNames(),
  ]);
  const write = api.canWrite();
  const reached = provider.workspaces === '*' ? workspaces.map((w) => w.id) : provider.workspaces;
  const rows = members.members.map((policy) => {
    const { kind, name } = policy.member;
    const label = `${kind} ${name}`;
    return [
      label,
      h('pre', {}, JSON.stringify(policy.document)),
      when(policy.updated_at),
      write ? button('Remove', async () => {
        await api.remove(`${path}/${kind === 'group' ? 'groups' : 'people'}/${encodeURIComponent(name)}/policy`);
        notify(`Removed the policy of ${label}.`);
        window.dispatchEvent(new HashChangeEvent('hashchange'));
      }, { class: 'danger', 'aria-label': `Remove the policy of ${label}` }) : '',
    ];
  });
  const page = h('section', {},
    title(`Identity provider ${provider.name}`),
    h('dl', {},
      h('dt', {}, 'Issuer'), h('dd', {}, provider.issuer),
      h('dt', {}, 'Workspaces'), h('dd', {}, workspacesText(provider.workspaces, workspaceName)),
      h('dt', {}, 'Where people connect'), h('dd', {}, reached.length
        ? h('ul', {}, reached.map((w) => h('li', {}, `${workspaceName.get(w) || w}: /mcp/${w}`)))
        : 'nowhere yet'),
      h('dt', {}, 'Required scopes'), h('dd', {}, provider.required_scopes.join(' ') || 'none'),
      h('dt', {}, 'Allowed groups'), h('dd', {}, provider.allowed_groups.join(', ') || 'anyone it signs in')),
    h('h2', {}, 'Policies of groups and people'),
    h('p', {}, 'They apply after the provider\'s own policy: groups first, by name, then the person\'s.'),
    table('Policies of groups and people', ['Member', 'Policy', 'Changed', ''], rows, 'No group or person has a policy of their own.'));
  if (write) page.append(memberForm(path), editProvider(path, provider, workspaces), removal(provider, path));
  return page;
}

function memberForm(path) {
  return h('section', { class: 'panel' },
    h('h2', {}, 'Attach a policy'),
    form('Attach a policy', [
      field('Kind', h('select', { name: 'kind' },
        h('option', { value: 'group' }, 'a group'),
        h('option', { value: 'person' }, 'a person'))),
      field('Group or subject', h('input', { type: 'text', name: 'member', required: true, autocomplete: 'off' }),
        'A group\'s name, or a person\'s subject (the sub claim of their tokens), exactly as tokens carry it.'),
      field('Policy document', h('textarea', { name: 'document', rows: 4, class: 'code', required: true }, '{"guardrails": []}')),
    ], 'Attach policy', async (data) => {
      const kind = data.get('kind') === 'person' ? 'people' : 'groups';
      const member = String(data.get('member')).trim();
      await api.put(`${path}/${kind}/${encodeURIComponent(member)}/policy`, { document: documentOf(data.get('document'), 'The policy document') || {} });
      notify(`Attached a policy to ${member}.`);
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    }));
}

function editProvider(path, provider, workspaces) {
  return h('section', { class: 'panel' },
    h('h2', {}, 'Settings'),
    form('Identity provider settings', providerFields(workspaces, provider), 'Save', async (data) => {
      await api.put(path, { ...settingsOf(data), algorithms: provider.algorithms, claims: provider.claims, jwks_uri: provider.jwks_uri });
      notify('Saved.');
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    }));
}

function removal(provider, path) {
  const confirm = h('div', { hidden: true },
    h('p', {}, `Stop trusting ${provider.name}? Its people's tokens stop working at once.`),
    button(`Delete ${provider.name}`, async () => {
      await api.remove(path);
      notify(`${provider.name} is no longer trusted.`);
      window.location.hash = '#/identity-providers';
    }, { class: 'danger' }));
  return h('section', { class: 'panel' },
    h('h2', {}, 'Delete'),
    button('Delete identity provider…', () => { confirm.hidden = false; }, { class: 'danger' }),
    confirm);
}
