// The operator page (/ui/) in headless Chromium (Debian's, driven by playwright-core), against the
// real gateway: the token asked once, every view shown (a screenshot of each), a held transaction
// approved from the page and followed until it is mined, an idempotency key that is markup shown
// as text, a dead letter that cannot be cancelled and is retried, and the banner when a refresh
// fails.
//
//   node operator_page.cjs <admin url> <admin token> <held transaction id> <its idempotency key>
//                          <dead letter id> <screenshot folder>
//
// Prints a JSON summary on stdout; exits 1 (with why on stderr) when something is not as it should.
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const [adminUrl, token, heldId, evilKey, deadId, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: operator_page.cjs <admin url> <token> <held id> <idempotency key> ' +
    '<dead letter id> <folder>');
  process.exit(2);
}

function check(condition, what) {
  if (!condition) throw new Error('not as expected: ' + what);
}

async function waitFor(what, predicate, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function main() {
  const started = Date.now();
  fs.mkdirSync(shots, { recursive: true });
  const summary = { screenshots: [], dialogs: [], policyViolations: [], pageErrors: [] };
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.on('dialog', async (d) => {
      summary.dialogs.push(d.message());
      await d.dismiss();
    });
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) summary.policyViolations.push(m.text());
    });
    page.on('pageerror', (e) => summary.pageErrors.push(String(e)));
    const shot = async (name) => {
      const file = path.join(shots, String(summary.screenshots.length + 1).padStart(2, '0') + '-' + name + '.png');
      await page.screenshot({ path: file, fullPage: true });
      summary.screenshots.push(file);
    };
    const tab = (view) => page.click('#tabs button[data-view="' + view + '"]');
    const visibleText = (selector) => page.locator(selector).innerText();

    // /ui redirects to /ui/, whose answer carries the policy; the token is asked first.
    const response = await page.goto(adminUrl + '/ui');
    check(page.url() === adminUrl + '/ui/', 'redirected to /ui/, at ' + page.url());
    summary.contentSecurityPolicy = response.headers()['content-security-policy'];
    check(/default-src 'self'/.test(summary.contentSecurityPolicy || ''), 'the page has its policy');
    await page.locator('#login').waitFor({ state: 'visible' });
    await shot('token');

    // A wrong token is refused and asked again; the right one is kept for the session.
    await page.fill('#token', 'not-the-token');
    await page.click('#login-form button[type=submit]');
    await waitFor('the wrong token to be refused', async () =>
      /refused/.test(await visibleText('#login-message')));
    check(await page.evaluate(() => sessionStorage.length) === 0, 'a refused token is not kept');
    await page.fill('#token', token);
    await page.click('#login-form button[type=submit]');

    // Upstreams: the node with its state, score explained and lag.
    await page.locator('#view-upstreams table').waitFor();
    await waitFor('the upstream to be up', async () =>
      /\bup\b/.test(await visibleText('#view-upstreams table')));
    summary.upstreams = await visibleText('#view-upstreams table');
    check(summary.upstreams.includes('node') && summary.upstreams.includes('latency'),
      'the upstream with its score explained');
    await shot('upstreams');

    await tab('chains');
    await page.locator('#view-chains .chain').waitFor();
    await waitFor('the chain head', async () => /Head\s+\d+/.test(await visibleText('#view-chains')));
    summary.chains = await visibleText('#view-chains');
    check(/Finalized/.test(summary.chains) && /No reorgs seen|Recent reorgs/.test(summary.chains),
      'the chain with its tags and reorgs');
    await shot('chains');

    // Approvals: the held transaction, its reason, and its idempotency key shown as text.
    await tab('approvals');
    const row = page.locator('#view-approvals tr', { hasText: heldId });
    await row.waitFor();
    summary.heldRow = await row.innerText();
    check(summary.heldRow.includes('max_value_wei'), 'the rule that held it: ' + summary.heldRow);
    check(summary.heldRow.includes(evilKey), 'its idempotency key, as text');
    summary.imagesAfterApprovals = await page.locator('img').count();
    check(summary.imagesAfterApprovals === 0, 'no element was made of the key');
    await shot('approvals');

    await row.getByRole('button', { name: 'Approve' }).click();
    await page.fill('#decision-by', 'playwright-operator');
    await page.fill('#decision-reason', 'approved from the operator page');
    await page.click('#decision-submit');
    await waitFor('the approval to be confirmed', async () =>
      /approved by playwright-operator/.test(await visibleText('#approvals-message')));
    summary.approvalMessage = await visibleText('#approvals-message');
    await waitFor('the approvals list to be empty', async () =>
      /Nothing is held/.test(await visibleText('#view-approvals .content')));

    // Transactions: followed on the page until it is mined.
    await tab('transactions');
    const txRow = page.locator('#view-transactions .content tr', { hasText: heldId });
    await waitFor('the approved transaction to be COMPLETED', async () =>
      (await txRow.count()) === 1 && (await txRow.locator('.state').innerText()) === 'COMPLETED',
    60000);
    summary.minedRow = await txRow.innerText();
    await page.fill('#tx-query', heldId);
    await page.click('#tx-search button[type=submit]');
    await waitFor('its history', async () =>
      /approved by playwright-operator: approved from the operator page/.test(
        await visibleText('#tx-found')));
    summary.found = await visibleText('#tx-found');
    check(/minedHash\s+0x[0-9a-f]{64}/.test(summary.found), 'the mined hash: ' + summary.found);
    await shot('transactions');

    // Found by its idempotency key, still text.
    await page.fill('#tx-query', evilKey);
    await page.click('#tx-search button[type=submit]');
    await waitFor('the search by idempotency key', async () =>
      (await visibleText('#tx-found')).includes('with idempotency key') &&
      (await visibleText('#tx-found')).includes(heldId));
    summary.imagesAfterSearch = await page.locator('img').count();
    check(summary.imagesAfterSearch === 0, 'no element was made of the key in the search');
    await shot('search');

    // Dead letters: one that is final cannot be cancelled (the gateway's 409 is shown); retried,
    // it leaves the list (its sender was funded meanwhile).
    await tab('dead-letters');
    const deadRow = page.locator('#view-dead-letters tr', { hasText: deadId });
    await deadRow.waitFor();
    summary.deadRow = await deadRow.innerText();
    check(/retries exhausted/.test(summary.deadRow), 'why it is a dead letter: ' + summary.deadRow);
    await shot('dead-letters');
    await deadRow.getByRole('button', { name: 'Cancel' }).click();
    await waitFor('the refused cancel', async () =>
      /HTTP 409/.test(await visibleText('#dead-letters-message')));
    summary.cancelMessage = await visibleText('#dead-letters-message');
    await deadRow.getByRole('button', { name: 'Retry' }).click();
    await waitFor('the retry', async () =>
      /retry: now QUEUED/.test(await visibleText('#dead-letters-message')));
    summary.retryMessage = await visibleText('#dead-letters-message');
    await waitFor('the dead letters list to be empty', async () =>
      /No managed dead letters/.test(await visibleText('#view-dead-letters')));

    await tab('streams');
    // The stream the test made through the admin API, following the transactions above.
    await waitFor('the streams', async () => {
      const text = await visibleText('#view-streams');
      return /page-transactions/.test(text) && /\bapi\b/.test(text) && /following/.test(text);
    });
    summary.streams = await visibleText('#view-streams');
    await shot('streams');

    summary.bannerWhileFresh = await page.locator('#banner').isVisible();
    check(!summary.bannerWhileFresh, 'no banner while the data is fresh');

    // The same session keeps the token across a reload.
    await page.reload();
    await page.locator('#view-streams table, #view-streams .empty').first().waitFor();
    check(await page.locator('#login').isHidden(), 'the token is not asked again in the session');

    // The admin API unreachable: the page says what it shows is stale.
    await page.route('**/admin/**', (route) => route.abort());
    await page.locator('#banner').waitFor({ state: 'visible', timeout: 15000 });
    summary.banner = await visibleText('#banner');
    check(/^Stale: the last refresh failed/.test(summary.banner), 'the banner: ' + summary.banner);
    await shot('stale');

    check(summary.dialogs.length === 0, 'no dialog (alert) was opened: ' + summary.dialogs);
    check(summary.policyViolations.length === 0, 'nothing was blocked by the policy: ' +
      summary.policyViolations);
    check(summary.pageErrors.length === 0, 'no script error: ' + summary.pageErrors);
    await context.close();
  } finally {
    await browser.close();
  }
  summary.ms = Date.now() - started;
  process.stdout.write(JSON.stringify(summary) + '\n');
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
