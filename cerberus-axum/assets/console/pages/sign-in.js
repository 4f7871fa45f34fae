// Sign-in with an admin user's email and password (POST /api/v1/auth/login).

import * as api from '../api.js';
import { field, form, h, title } from '../dom.js';

export function signInPage(signedIn) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', {
    type: 'password', name: 'password', autocomplete: 'current-password', required: true,
  });
  return h('section', { class: 'sign-in' },
    title('Sign in'),
    h('p', {}, 'The control plane of this gateway: workspaces, agent keys, policies and the audit log.'),
    form('Sign in', [field('Email', email), field('Password', password)], 'Sign in', async (data) => {
      await api.signIn(String(data.get('email')).trim(), String(data.get('password')));
      signedIn();
    }));
}
