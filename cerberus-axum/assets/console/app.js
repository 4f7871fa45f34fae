// The console's shell: the navigation, the session, and the router that shows a page for the
// location's fragment (`#/workspaces/ID`), so that every page has an address to bookmark or share.

import * as api from './api.js';
import { clearStaleNotice, h, notify, replace } from './dom.js';
import { signInPage } from './pages/sign-in.js';
import { organisationPage } from './pages/organisation.js';
import { workspacesPage } from './pages/workspaces.js';
import { workspacePage } from './pages/workspace.js';
import { policiesPage } from './pages/policies.js';
import { auditPage } from './pages/audit.js';
import { analyticsPage } from './pages/analytics.js';
import { approvalsPage } from './pages/approvals.js';
import { identityProviderPage, identityProvidersPage } from './pages/identity-providers.js';

/** The sections in the navigation, and the page each shows. */
const SECTIONS = [
  { path: 'workspaces', label: 'Workspaces', page: workspacesPage },
  { path: 'policies', label: 'Policies', page: policiesPage },
  { path: 'audit', label: 'Audit log', page: auditPage },
  { path: 'analytics', label: 'Analytics', page: analyticsPage },
  { path: 'approvals', label: 'Approvals', page: approvalsPage },
  { path: 'identity-providers', label: 'Identity providers', page: identityProvidersPage },
  { path: 'organisation', label: 'Organisation', page: organisationPage },
];

const main = document.getElementById('main');
const header = document.querySelector('header.top');

/** The location's fragment as a path and its query: `#/audit?agent_id=…`. */
function location() {
  const fragment = window.location.hash.replace(/^#\/?/, '');
  const [path, query] = fragment.split('?');
  return { parts: path.split('/').filter(Boolean), query: new URLSearchParams(query || '') };
}

function drawNavigation(current) {
  const nav = document.getElementById('nav');
  replace(nav, SECTIONS.map((section) => h('li', {},
    h('a', {
      href: `#/${section.path}`,
      'aria-current': section.path === current ? 'page' : undefined,
    }, section.label))));
  const user = api.currentUser();
  replace(document.getElementById('who'), user ? `${user.email} (${user.role})` : '');
}

async function show() {
  const { parts, query } = location();
  const user = api.currentUser();
  clearStaleNotice();
  header.hidden = user === null;
  if (user === null) {
    replace(main, signInPage(() => {
      window.location.hash = '#/workspaces';
      show();
    }));
    return;
  }
  const [section = 'workspaces', id] = parts;
  drawNavigation(section);
  let page;
  if (section === 'workspaces' && id) {
    page = () => workspacePage(id);
  } else if (section === 'identity-providers' && id) {
    page = () => identityProviderPage(id);
  } else {
    const found = SECTIONS.find((s) => s.path === section) || SECTIONS[0];
    page = () => found.page(query);
  }
  replace(main, h('p', { class: 'loading' }, 'Loading…'));
  try {
    replace(main, await page());
  } catch (error) {
    replace(main, h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, error.message));
  }
  main.focus({ preventScroll: true });
}

document.getElementById('sign-out').addEventListener('click', async () => {
  await api.signOut();
  notify('Signed out.');
});

api.onSessionChange((user) => {
  if (user === null) show();
});
window.addEventListener('hashchange', show);

(async () => {
  try {
    await api.resume();
  } catch {
    // Not signed in: the sign-in page follows.
  }
  show();
})();
