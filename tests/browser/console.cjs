// Drives the admin console at BASE/console/ in headless chromium as an administrator would: signs in
// with the keyboard, creates a workspace and an agent access, has a bad policy refused and a good one
// saved and tried, makes a governed MCP call with the new key, finds it in the audit log with its
// trace, and sees the analytics drawn. Along the way it checks every page for unlabelled controls,
// Content-Security-Policy violations and requests to other origins, and takes a screenshot of each
// page (at 1280×800, and the audit log on a phone) into SHOTS.
// Then, with the key of an agent of another workspace whose `echo` needs approval and whose server
// changed the definition of `search`, it approves a held call and the changed definition.
// It rotates and revokes the agent's key, exports the audit log, lets its access token expire (the
// gateway is started with short-lived ones) and goes on, and finally signs in as VIEWER to check that
// nothing the role may not do is offered.
// Usage: NODE_PATH=scripts/node/node_modules node tests/browser/console.cjs BASE EMAIL PASSWORD UPSTREAM SHOTS HELD_KEY VIEWER
// Prints one JSON line: the report; exits 0 whatever it found (the caller asserts).
'use strict';
const path = require('path');
const fs = require('fs');
const { chromium } = require('playwright-core');

const [base, email, password, upstream, shots, heldKey, viewer] = process.argv.slice(2);

/** One MCP request with the agent key; the JSON-RPC answer (from JSON or an event stream). */
async function mcp(key, session, body) {
  if (!session && body.method !== 'initialize') {
    const init = await mcp(key, null, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'console-test', version: '1' } } });
    await mcp(key, init.session, { jsonrpc: '2.0', method: 'notifications/initialized' });
    return mcp(key, init.session, body);
  }
  const headers = {
    Authorization: `Bearer ${key}`,
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    'MCP-Protocol-Version': '2025-11-25',
  };
  if (session) headers['Mcp-Session-Id'] = session;
  const response = await fetch(`${base}/mcp`, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await response.text();
  const data = text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).filter(Boolean).pop();
  return { session: response.headers.get('mcp-session-id'), status: response.status, answer: text ? JSON.parse(data || text) : null };
}

async function main() {
  const report = { steps: [], unlabelled: [], outside: [], errors: [], violations: [], screenshots: [] };
  const step = (name) => report.steps.push(name);
  fs.mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(base).origin });
    const page = await context.newPage();
    const origin = new URL(base).origin;
    report.refreshes = 0;
    page.on('request', (request) => {
      const url = request.url();
      if (url.endsWith('/api/v1/auth/refresh')) report.refreshes += 1;
      if (!url.startsWith(origin) && !url.startsWith('data:') && !url.startsWith('blob:')) report.outside.push(url);
    });
    page.on('console', (message) => {
      if (message.type() === 'error' && !/status of (401|422)/.test(message.text())) report.errors.push(message.text());
    });
    page.on('pageerror', (error) => report.errors.push(String(error)));
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (event) => {
        console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
      });
    });
    const audit = async (name) => {
      const missing = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter((c) => c.offsetParent !== null)
        .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute('aria-label') && !c.getAttribute('aria-labelledby') && !(c.tagName === 'BUTTON' && c.textContent.trim()))
        .map((c) => `${c.tagName.toLowerCase()}#${c.id || c.name || '?'}`));
      missing.forEach((m) => report.unlabelled.push(`${name}: ${m}`));
    };
    const shoot = async (name, fullPage = true) => {
      await audit(name);
      // A passing notice would float over the middle of a full-page picture.
      await page.evaluate(() => document.getElementById('status').replaceChildren());
      const file = path.join(shots, `${name}.png`);
      await page.screenshot({ path: file, fullPage });
      report.screenshots.push(file);
    };

    // Sign in with the keyboard alone: the skip link first, then the fields, then Enter.
    await page.goto(`${base}/console`);
    await page.getByLabel('Email').waitFor();
    // The order a keyboard takes: the skip link, the email, the password, the button.
    report.tabOrder = [];
    for (let i = 0; i < 4; i += 1) {
      await page.keyboard.press('Tab');
      report.tabOrder.push(await page.evaluate(() => {
        const e = document.activeElement;
        return e ? e.getAttribute('name') || e.textContent.trim() : null;
      }));
    }
    await shoot('sign-in', false);
    await page.getByLabel('Email').focus();
    await page.keyboard.type(email);
    await page.keyboard.press('Tab');
    await page.keyboard.type('wrong password');
    await page.keyboard.press('Enter');
    await page.getByRole('alert').filter({ hasText: 'wrong email or password' }).waitFor();
    step('a wrong password is refused');
    await page.getByLabel('Password').fill(password);
    await page.getByLabel('Password').press('Enter');
    await page.getByRole('heading', { name: 'Workspaces' }).waitFor();
    step('signed in');

    // A workspace, then an agent access whose key is shown once.
    await page.getByLabel('Name').fill('crm');
    await page.getByLabel('URL').fill(upstream);
    await page.getByRole('button', { name: 'Create workspace' }).click();
    await page.getByRole('heading', { name: 'Workspace crm' }).waitFor();
    step('workspace created');
    await page.getByRole('form', { name: 'New agent access' }).getByLabel('Name').fill('support-bot');
    await page.getByRole('button', { name: 'Create agent access' }).click();
    const keyField = page.locator('#new-key');
    await keyField.waitFor();
    const key = await keyField.inputValue();
    report.keyShown = /^cbk_/.test(key);
    await page.getByRole('button', { name: 'Copy key' }).click();
    report.keyCopied = (await page.evaluate(() => navigator.clipboard.readText())) === key;
    await page.getByText('Cursor (~/.cursor/mcp.json)').click();
    report.snippetHasKey = (await page.locator('details[open] pre').first().textContent()).includes(key);
    await shoot('workspace');
    step('agent access created');
    await page.locator('tr').filter({ hasText: 'support-bot' }).locator('summary').click();
    await page.getByLabel('Labels of support-bot, one key=value per line').fill('team=support');
    await page.getByRole('button', { name: 'Save the labels of support-bot' }).click();
    await page.locator('tr').filter({ hasText: 'support-bot' }).locator('summary').filter({ hasText: 'team=support' }).waitFor();
    step('labels are set');

    // A bad policy is refused, naming the entry; a good one is saved and tried on a sample.
    await page.getByRole('link', { name: 'Policies' }).first().click();
    await page.getByRole('heading', { name: 'Policies' }).waitFor();
    const editor = page.locator('#policy-document');
    await editor.fill(JSON.stringify({ guardrails: [{ type: 'rbac', allow: ['echo'] }, { type: 'rate_limit_per_minute', limit: 0 }] }));
    await page.locator('#policy-check .error').filter({ hasText: 'guardrails[1]' }).waitFor();
    report.badPolicyMessage = await page.locator('#policy-check').textContent();
    await page.getByRole('button', { name: 'Create policy' }).click();
    await page.locator('#status').filter({ hasText: 'not saved' }).waitFor();
    step('a bad policy is refused');
    await editor.fill(JSON.stringify({ guardrails: [{ type: 'rbac', allow: ['echo', 'whoami'] }, { type: 'pii_email', action: 'redact' }] }, null, 2));
    await page.locator('#policy-check .ok').waitFor();
    await page.getByRole('button', { name: 'Create policy' }).click();
    await page.getByRole('button', { name: 'Save policy' }).waitFor();
    step('a good policy is saved');
    await page.locator('#sample-message').fill(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'mail jane@example.com' } } }));
    await page.getByRole('button', { name: 'Try', exact: true }).click();
    await page.locator('#trial-result').waitFor();
    report.trial = await page.locator('#trial-result').textContent();
    await shoot('policies');
    step('the policy is tried');

    // The access token lives a second (and five of leeway): the next request renews it, unseen.
    await page.waitForTimeout(6500);
    report.refreshesBefore = report.refreshes;

    // A governed MCP call with the new key.
    const init = await mcp(key, null, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'console-test', version: '1' } } });
    await mcp(key, init.session, { jsonrpc: '2.0', method: 'notifications/initialized' });
    const called = await mcp(key, init.session, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'mail jane@example.com' } } });
    report.callAnswer = called.answer;
    const denied = await mcp(key, init.session, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'delete_everything', arguments: {} } });
    report.deniedAnswer = denied.answer;
    step('governed calls made');

    // The calls in the audit log, with their trace; the records arrive as the writer flushes.
    let found = false;
    for (let attempt = 0; attempt < 60 && !found; attempt += 1) {
      // The same address again does not open the page again: reload it.
      if (attempt === 0) await page.goto(`${base}/console/#/audit?method=tools%2Fcall&decision=block`);
      else await page.reload();
      await page.locator('#audit-results table, #audit-results .empty').first().waitFor();
      found = (await page.locator('#audit-results tbody tr:not(.detail)').filter({ hasText: 'delete_everything' }).count()) > 0;
      if (!found) await page.waitForTimeout(500);
    }
    report.auditFound = found;
    await page.getByRole('button', { name: /^Trace of the record/ }).first().click();
    report.auditTrace = await page.locator('tr.detail:not([hidden]) ol.trace').first().textContent();
    await page.goto(`${base}/console/#/audit?guardrail=pii_email`);
    await page.locator('#audit-results tbody tr').first().waitFor();
    report.byGuardrail = await page.locator('#audit-results tbody tr:not(.detail)').allTextContents();
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export CSV' }).click(),
    ]);
    report.exportName = download.suggestedFilename();
    report.exported = fs.readFileSync(await download.path(), 'utf8');
    await page.getByRole('button', { name: /^Trace of the record/ }).first().click();
    report.auditPayload = await page.locator('tr.detail:not([hidden]) pre.payload').first().textContent();
    await shoot('audit');
    step('the audit log shows the calls');

    await page.getByRole('link', { name: 'Analytics' }).click();
    await page.locator('figure.chart svg rect.bar').first().waitFor();
    report.analyticsBars = await page.locator('figure.chart svg rect.bar').count();
    report.latencyBars = await page.locator('figure.latency svg rect.bar').count();
    report.analyticsTotals = await page.locator('ul.totals').textContent();
    await shoot('analytics');
    step('the analytics are drawn');

    // A call held for approval waits while an administrator looks at it in the console.
    const held = mcp(heldKey, null, { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'echo', arguments: { q: 'refund jane@example.com' } } });
    let waiting = false;
    for (let attempt = 0; attempt < 60 && !waiting; attempt += 1) {
      if (attempt === 0) await page.goto(`${base}/console/#/approvals`);
      else await page.reload();
      await page.getByRole('heading', { name: 'Changed tool definitions' }).waitFor();
      waiting = (await page.getByRole('button', { name: 'Approve the call to echo' }).count()) > 0;
      if (!waiting) await page.waitForTimeout(250);
    }
    report.heldCard = await page.locator('li.card').first().textContent();
    await page.locator('tr').filter({ hasText: 'search' }).locator('summary').click();
    report.toolDiff = await page.locator('.diff').first().textContent();
    await shoot('approvals');
    await page.getByLabel('Note for the call to echo').fill('refund agreed with the customer');
    await page.getByRole('button', { name: 'Approve the call to echo' }).click();
    report.heldAnswer = (await held).answer;
    step('a held call is approved');
    await page.getByRole('button', { name: 'Approve the listed definition of search in knowledge' }).click();
    await page.getByText('Every listed tool definition is approved.').waitFor();
    step('a changed tool definition is approved');

    // An identity provider for the crm workspace, and one person's policy.
    await page.getByRole('link', { name: 'Identity providers' }).click();
    await page.getByRole('heading', { name: 'Identity providers', level: 1 }).waitFor();
    const newProvider = page.getByRole('form', { name: 'New identity provider' });
    await newProvider.getByLabel('Name').fill('acme-login');
    await newProvider.getByLabel('Issuer').fill('ftp://login.acme.example');
    await newProvider.getByLabel('crm').check();
    await newProvider.getByLabel('Required scopes').fill('mcp');
    await page.getByRole('button', { name: 'Trust identity provider' }).click();
    await newProvider.getByRole('alert').filter({ hasText: '(issuer)' }).waitFor();
    await newProvider.getByLabel('Issuer').fill('https://login.acme.example/realms/acme');
    await page.getByRole('button', { name: 'Trust identity provider' }).click();
    await page.getByRole('heading', { name: 'Identity provider acme-login' }).waitFor();
    report.providerConnects = await page.locator('dd li').first().textContent();
    step('an identity provider is trusted');
    const attach = page.getByRole('form', { name: 'Attach a policy' });
    await attach.getByLabel('Kind').selectOption('person');
    await attach.getByLabel('Group or subject').fill('00u1ann');
    await attach.getByLabel('Policy document').fill(JSON.stringify({ guardrails: [{ type: 'rate_limit_per_minute', limit: 120 }] }));
    await page.getByRole('button', { name: 'Attach policy' }).click();
    await page.getByRole('cell', { name: 'person 00u1ann', exact: true }).waitFor();
    await shoot('identity-provider');
    step('a person\'s policy is attached');
    await page.getByRole('link', { name: 'Organisation' }).click();
    await page.getByRole('heading', { name: /^Organisation / }).waitFor();
    await shoot('organisation');
    step('every page opens');

    // On a phone.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/console/#/audit`);
    await page.locator('#audit-results table').waitFor();
    const overflows = () => page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    report.phoneOverflow = [];
    if (await overflows()) report.phoneOverflow.push('audit');
    await shoot('audit-phone', false);
    for (const [section, heading] of [['workspaces', 'Workspaces'], ['policies', 'Policies'], ['analytics', 'Analytics'], ['approvals', 'Approvals'], ['identity-providers', 'Identity providers'], ['organisation', 'Organisation acme']]) {
      await page.goto(`${base}/console/#/${section}`);
      await page.getByRole('heading', { level: 1, name: heading, exact: true }).waitFor();
      if (await overflows()) report.phoneOverflow.push(section);
    }
    step('readable on a phone');

    // Rotating gives a new key while the old one keeps working for its grace period; revoking ends
    // both.
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.getByRole('link', { name: 'Workspaces' }).click();
    await page.getByRole('link', { name: 'crm' }).click();
    await page.getByRole('button', { name: 'Rotate the key of support-bot' }).click();
    await page.locator('#new-key').waitFor();
    const rotated = await page.locator('#new-key').inputValue();
    report.rotatedKeyDiffers = /^cbk_/.test(rotated) && rotated !== key;
    report.oldKeyInGrace = (await mcp(key, null, { jsonrpc: '2.0', id: 20, method: 'tools/list' })).status;
    report.newKeyWorks = (await mcp(rotated, null, { jsonrpc: '2.0', id: 21, method: 'tools/list' })).status;
    await page.getByRole('button', { name: 'Revoke support-bot' }).click();
    await page.getByRole('cell', { name: /^revoked/ }).waitFor();
    report.revokedKey = (await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${rotated}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'console-test', version: '1' } } }),
    })).status;
    step('a key is rotated and revoked');

    // Signing out forgets the session.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await page.reload();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    step('signed out');

    // A viewer reads everything and is offered nothing to change.
    await page.getByLabel('Email').fill(viewer);
    await page.getByLabel('Password').fill(password);
    await page.getByLabel('Password').press('Enter');
    await page.getByRole('heading', { name: 'Workspaces' }).waitFor();
    report.viewerOffered = [];
    const offered = async (where) => {
      const controls = await page.locator('main button:not([aria-expanded]), main textarea:not([readonly])').allTextContents();
      controls.filter((text) => !/^(Filter|Show|Export|Older|Copy)/.test(text.trim()))
        .forEach((text) => report.viewerOffered.push(`${where}: ${text.trim() || 'a writable field'}`));
    };
    await offered('workspaces');
    await page.getByRole('link', { name: 'crm' }).click();
    await page.getByRole('heading', { name: 'Workspace crm' }).waitFor();
    await offered('workspace');
    for (const [link, heading] of [['Policies', 'Policies'], ['Approvals', 'Approvals'], ['Identity providers', 'Identity providers'], ['Organisation', /^Organisation /]]) {
      await page.getByRole('link', { name: link, exact: true }).first().click();
      await page.getByRole('heading', { name: heading }).first().waitFor();
      await page.locator('p.loading').waitFor({ state: 'detached' });
      await offered(link);
    }
    await page.goto(`${base}/console/#/identity-providers`);
    await page.getByRole('link', { name: 'acme-login' }).click();
    await page.getByRole('heading', { name: 'Identity provider acme-login' }).waitFor();
    await offered('identity provider');
    report.viewerPolicyReadonly = await page.goto(`${base}/console/#/policies`).then(() => page.locator('#policy-document').getAttribute('readonly'));
    step('a viewer is offered nothing to change');
  } catch (error) {
    report.errors.push(String(error && error.stack || error));
  } finally {
    await browser.close();
  }
  report.errors = [...new Set(report.errors)];
  report.violations = report.errors.filter((e) => e.startsWith('CSP violation'));
  console.log(JSON.stringify(report));
  // A call still held after a failure would keep the process alive until the gateway refuses it.
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  process.exit(2);
});
