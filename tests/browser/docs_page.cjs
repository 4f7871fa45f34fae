// Opens the admin API reference at BASE/docs in headless chromium and checks that it renders the
// document with nothing loaded from another origin and no Content-Security-Policy violation.
// Usage: NODE_PATH=scripts/node/node_modules node tests/browser/docs_page.cjs BASE
// Prints one JSON line: {"rendered": bool, "outside": [...], "violations": [...], "errors": [...]}.
'use strict';
const { chromium } = require('playwright-core');

async function main() {
  const base = process.argv[2];
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const report = { rendered: false, outside: [], violations: [], errors: [] };
  try {
    const page = await browser.newPage();
    const origin = new URL(base).origin;
    page.on('request', (request) => {
      const url = request.url();
      if (!url.startsWith(origin) && !url.startsWith('data:')) report.outside.push(url);
    });
    page.on('response', (response) => {
      if (response.status() >= 400) report.errors.push(`${response.status()} ${response.url()}`);
    });
    page.on('console', (message) => {
      if (message.type() === 'error') report.errors.push(message.text());
    });
    page.on('pageerror', (error) => report.errors.push(String(error)));
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (event) => {
        console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
      });
    });
    await page.goto(`${base}/docs`);
    // RapiDoc renders in its shadow root, which the locator pierces: an operation's path and the
    // document's title show that the document was fetched and rendered.
    await page.locator('rapi-doc').getByText('Cerberus admin API').first().waitFor({ timeout: 30000 });
    await page.locator('rapi-doc').getByText('/api/v1/auth/login').first().waitFor({ timeout: 30000 });
    report.rendered = true;
  } catch (error) {
    report.errors.push(String(error));
  } finally {
    await browser.close();
  }
  // Each distinct message once: a broken policy repeats the same violation hundreds of times.
  report.errors = [...new Set(report.errors)];
  report.violations = report.errors.filter((e) => e.startsWith('CSP violation'));
  console.log(JSON.stringify(report));
}

main().catch((error) => {
  console.error(error);
  process.exit(2);
});
