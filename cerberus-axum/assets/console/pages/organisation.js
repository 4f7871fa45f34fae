// The organisation: its name, its users and their roles (owners manage both), and a new
// organisation with its first owner.

import * as api from '../api.js';
import {
  button, field, form, h, labelLines, notify, parseLabels, replace, table, title, when,
} from '../dom.js';

const ROLES = ['viewer', 'admin', 'owner'];

export async function organisationPage() {
  const path = api.organisationPath();
  const [organisation, users] = await Promise.all([api.get(path), api.all(`${path}/users`)]);
  const me = api.currentUser();
  const manage = api.canManage();
  const rows = users.map((user) => [
    user.email,
    manage && user.id !== me.id ? roleSelect(path, user) : user.role,
    when(user.created_at),
    manage && user.id !== me.id ? button('Remove', async () => {
      await api.remove(`${path}/users/${user.id}`);
      notify(`Removed ${user.email}.`);
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    }, { class: 'danger', 'aria-label': `Remove ${user.email}` }) : '',
  ]);
  const page = h('section', {},
    title(`Organisation ${organisation.name}`),
    h('p', {}, `Created ${when(organisation.created_at)}. Viewers read; admins also change workspaces, agent accesses and policies; owners also manage the organisation and its users.`),
    table('Users', ['Email', 'Role', 'Since', ''], rows));
  if (manage) page.append(newUser(path), settings(path, organisation), newOrganisation());
  return page;
}

function roleSelect(path, user) {
  const select = h('select', { 'aria-label': `Role of ${user.email}` },
    ROLES.map((role) => h('option', { value: role, selected: role === user.role }, role)));
  select.addEventListener('change', async () => {
    try {
      await api.patch(`${path}/users/${user.id}`, { role: select.value });
      notify(`${user.email} is now ${select.value}.`);
    } catch (error) {
      notify(error.message, 'error');
      select.value = user.role;
    }
  });
  return select;
}

function newUser(path) {
  return h('section', { class: 'panel' },
    h('h2', {}, 'New user'),
    form('New user', [
      field('Email', h('input', { type: 'email', name: 'email', required: true, autocomplete: 'off' })),
      field('Password', h('input', { type: 'password', name: 'password', required: true, autocomplete: 'new-password' }), 'At least 12 characters, not easily guessed.'),
      field('Role', h('select', { name: 'role' }, ROLES.map((role) => h('option', { value: role, selected: role === 'viewer' }, role)))),
    ], 'Add user', async (data) => {
      await api.create(`${path}/users`, { email: String(data.get('email')).trim(), password: String(data.get('password')), role: data.get('role') });
      notify('User added.');
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    }));
}

function settings(path, organisation) {
  const confirm = h('div', { hidden: true },
    h('p', {}, `Delete ${organisation.name}? Every workspace, key and policy in it stops working, and you are signed out.`),
    button(`Delete ${organisation.name}`, async () => {
      await api.remove(path);
      await api.signOut();
    }, { class: 'danger' }));
  return h('section', { class: 'panel' },
    h('h2', {}, 'Settings'),
    form('Organisation settings', [
      field('Name', h('input', { type: 'text', name: 'name', value: organisation.name, required: true })),
      field('Labels', h('textarea', { name: 'labels', rows: 3 }, labelLines(organisation.labels)),
        'One key=value per line; rules read them as organisation.labels.KEY.'),
    ], 'Save', async (data) => {
      const labels = parseLabels(String(data.get('labels')));
      await api.patch(path, { name: String(data.get('name')).trim() });
      await api.put(`${path}/labels`, { labels });
      notify('Saved.');
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    }),
    h('h3', {}, 'Delete'),
    button('Delete organisation…', () => { confirm.hidden = false; }, { class: 'danger' }),
    confirm);
}

function newOrganisation() {
  const result = h('div', { role: 'status' });
  return h('section', { class: 'panel' },
    h('h2', {}, 'New organisation'),
    h('p', {}, 'A separate tenant: its owner signs in on its own, and sees nothing of this one.'),
    form('New organisation', [
      field('Name', h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' })),
      field('Owner email', h('input', { type: 'email', name: 'email', required: true, autocomplete: 'off' })),
      field('Owner password', h('input', { type: 'password', name: 'password', required: true, autocomplete: 'new-password' })),
    ], 'Create organisation', async (data) => {
      const created = await api.create('/api/v1/organisations', {
        name: String(data.get('name')).trim(),
        owner: { email: String(data.get('email')).trim(), password: String(data.get('password')) },
      });
      replace(result, h('p', { class: 'notice info' }, `Created ${created.organisation.name}; ${created.owner.email} can sign in now.`));
    }),
    result);
}
