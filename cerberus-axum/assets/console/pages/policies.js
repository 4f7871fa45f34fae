// Policies: the organisation's, a workspace's or an agent's document, checked as it is typed (the
// error names the entry), saved or removed; the effective policy of a workspace and its agents with
// the level each entry comes from; and a sample message tried against the document being edited,
// with the stored policies of the other levels, through the `cerberus check` engine.

import * as api from '../api.js';
import { button, field, h, notify, replace, table, title } from '../dom.js';

const SAMPLE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'tools/call',
  params: { name: 'lookup_customer', arguments: { email: 'jane@example.com' } },
};

/** Every place a policy may attach, as `[level, id, label]`. */
function targets(names) {
  const user = api.currentUser();
  return [
    ['organisation', user.organisation, 'The organisation'],
    ...names.workspaces.map((w) => ['workspace', w.id, `Workspace ${w.name}`]),
    ...names.agents.filter((a) => !a.revoked_at).map((a) => ['agent', a.id, `Agent ${a.name} (${names.workspaceName.get(a.workspace) || '?'})`]),
  ];
}

export async function policiesPage(query) {
  const [names, policies] = await Promise.all([api.directory(), api.all('/api/v1/policies')]);
  const places = targets(names);
  const wanted = query.get('agent') || query.get('workspace') || places[0][1];
  const [level, id] = places.find(([, placeId]) => placeId === wanted) || places[0];
  const stored = policies.find((p) => p.target.level === level && p.target.id === id) || null;
  const chooser = h('select', { id: 'policy-target' },
    places.map(([placeLevel, placeId, label]) => h('option', {
      value: `${placeLevel}:${placeId}`, selected: placeId === id,
    }, `${label}${policies.some((p) => p.target.id === placeId) ? ' · has a policy' : ''}`)));
  chooser.addEventListener('change', () => {
    const [chosenLevel, chosenId] = chooser.value.split(':');
    window.location.hash = chosenLevel === 'organisation' ? '#/policies' : `#/policies?${chosenLevel}=${chosenId}`;
  });
  const workspaceId = level === 'workspace' ? id : level === 'agent' ? names.agents.find((a) => a.id === id)?.workspace : null;
  const effective = h('section', { class: 'panel', 'aria-labelledby': 'effective-heading' });
  const page = h('section', { class: 'policies' },
    title('Policies'),
    h('p', {}, 'A policy is a list of guardrails. The organisation\'s applies everywhere; a workspace\'s and an agent\'s add to it or override it, unless an entry above is mandatory.'),
    field('Policy of', chooser),
    editor(level, id, stored),
    effective);
  await drawEffective(effective, workspaceId, level === 'agent' ? id : null, names);
  return page;
}

function editor(level, id, stored) {
  const writable = api.canWrite();
  const text = h('textarea', {
    id: 'policy-document', rows: 16, spellcheck: 'false', class: 'code', readonly: !writable,
    'aria-describedby': 'policy-check',
  }, JSON.stringify(stored ? stored.document : { guardrails: [] }, null, 2));
  const verdict = h('p', { id: 'policy-check', role: 'status', 'aria-live': 'polite' });
  const trial = h('div', { class: 'trial' });
  let checking = 0;
  /** The document as typed, or null (and the verdict says why) when it is not JSON. */
  const parsed = () => {
    try {
      return JSON.parse(text.value);
    } catch (error) {
      replace(verdict, h('span', { class: 'error' }, `Not JSON: ${error.message}`));
      return null;
    }
  };
  const check = async () => {
    const document = parsed();
    if (document === null) return false;
    checking += 1;
    const mine = checking;
    try {
      await api.create('/api/v1/policies/check', { level, target_id: id, document });
      if (mine === checking) replace(verdict, h('span', { class: 'ok' }, 'Valid.'));
      return true;
    } catch (error) {
      if (mine === checking) replace(verdict, h('span', { class: 'error' }, error.message));
      return false;
    }
  };
  let timer = null;
  text.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
  const section = h('section', { class: 'panel' },
    h('h2', {}, stored ? 'Document' : 'Document (none stored yet)'),
    field('Policy document (JSON)', text),
    verdict);
  if (writable) {
    setTimeout(check, 0);
    section.append(h('div', { class: 'row' },
      button(stored ? 'Save policy' : 'Create policy', async () => {
        const document = parsed();
        if (document === null || !(await check())) {
          notify('The policy was not saved: it is not valid.', 'error');
          return;
        }
        if (stored) {
          await api.put(`/api/v1/policies/${stored.id}`, { document });
        } else {
          await api.create('/api/v1/policies', { level, target_id: id, document });
        }
        notify('Policy saved; the gateway applies it at once.');
        window.dispatchEvent(new HashChangeEvent('hashchange'));
      }),
      stored ? button('Remove policy', async () => {
        await api.remove(`/api/v1/policies/${stored.id}`);
        notify('Policy removed.');
        window.dispatchEvent(new HashChangeEvent('hashchange'));
      }, { class: 'danger' }) : null),
    tryPanel(level, id, parsed, trial));
  }
  return section;
}

function tryPanel(level, id, parsed, output) {
  const message = h('textarea', { id: 'sample-message', rows: 8, spellcheck: 'false', class: 'code' }, JSON.stringify(SAMPLE, null, 2));
  const direction = h('select', { id: 'sample-direction' },
    h('option', { value: '' }, 'from the message'),
    h('option', { value: 'request' }, 'request (client to server)'),
    h('option', { value: 'response' }, 'response (server to client)'));
  const method = h('input', { type: 'text', id: 'sample-method', placeholder: 'tools/call', autocomplete: 'off' });
  return h('section', { class: 'try', 'aria-labelledby': 'try-heading' },
    h('h3', { id: 'try-heading' }, 'Try it on a message'),
    h('p', {}, 'Runs the message through this document and the stored policies of the other levels, as the gateway would; nothing is sent to a server, no quota is spent.'),
    field('Sample JSON-RPC message', message),
    h('div', { class: 'filters' },
      field('Direction', direction),
      field('Answers the method', method, 'For a response: the method of the request it answers.')),
    button('Try', async () => {
      const document = parsed();
      if (document === null) return;
      let sample;
      try {
        sample = JSON.parse(message.value);
      } catch (error) {
        replace(output, h('p', { class: 'error' }, `The message is not JSON: ${error.message}`));
        return;
      }
      const body = { level, target_id: id, document, message: sample };
      if (direction.value) body.direction = direction.value;
      if (method.value.trim()) body.method = method.value.trim();
      try {
        const { result } = await api.create('/api/v1/policies/check', body);
        replace(output, trialResult(result));
      } catch (error) {
        replace(output, h('p', { class: 'error', role: 'alert' }, error.message));
      }
    }),
    output);
}

function trialResult(result) {
  return h('div', { class: 'result', id: 'trial-result' },
    h('p', {}, 'Decision: ', h('span', { class: `badge ${result.decision}` }, result.decision),
      result.reason ? ` — ${result.reason}` : ''),
    h('h4', {}, 'Trace'),
    result.trace.length
      ? h('ol', { class: 'trace' }, result.trace.map((entry) => h('li', {},
        h('span', { class: `badge ${entry.decision}` }, entry.decision), ' ',
        h('strong', {}, entry.guardrail), ` at the ${entry.level} level`,
        entry.code ? [' · ', h('code', {}, entry.code)] : null,
        entry.reason ? `: ${entry.reason}` : null)))
      : h('p', {}, 'No guardrail applies to this message.'),
    result.ignored ? h('p', {}, `Ignored (a higher level made them mandatory): ${result.ignored.map((i) => `${i.guardrail} at the ${i.level} level`).join(', ')}`) : null,
    h('h4', {}, 'The message after the gateway'),
    h('pre', { class: 'payload' }, JSON.stringify(result.message, null, 2)));
}

async function drawEffective(section, workspaceId, agentId, names) {
  if (!workspaceId) {
    replace(section,
      h('h2', { id: 'effective-heading' }, 'Effective policy'),
      h('p', {}, 'Choose a workspace or an agent to see the policy the gateway applies to it, entry by entry.'));
    return;
  }
  const effective = await api.get(`/api/v1/policies/mcp-server-workspaces/${workspaceId}/effective-policies`);
  const chosen = agentId ? effective.agents.find((a) => a.agent_access_id === agentId)?.effective : effective.workspace;
  const whom = agentId ? `agent ${names.agentName.get(agentId) || agentId}` : `an agent of workspace ${names.workspaceName.get(workspaceId) || workspaceId} with no policy of its own`;
  const entries = chosen ? chosen.entries : [];
  replace(section,
    h('h2', { id: 'effective-heading' }, 'Effective policy'),
    h('p', {}, `What the gateway applies to ${whom}, in the order the guardrails run.`),
    table('Effective policy', ['Guardrail', 'From the level', 'Settings'], entries.map((entry) => {
      const { type, level, ...settings } = entry;
      return [h('strong', {}, type), level, h('code', {}, JSON.stringify(settings))];
    }), 'No guardrail applies: every message passes.'),
    chosen && chosen.ignored && chosen.ignored.length
      ? h('p', {}, `Ignored because a higher level made them mandatory: ${chosen.ignored.map((i) => `${i.guardrail} (${i.level})`).join(', ')}`)
      : null);
}
