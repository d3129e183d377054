// End-to-end check of the dashboard in headless Chromium (Debian's, driven by playwright-core; no browser download).
//   node tests/dashboard/dashboard.spec.mjs BASE_URL SCREENSHOT.png DETECTOR [DRIFT_STATUS]
// Loads the page, checks DETECTOR's drift badge (when DRIFT_STATUS is given), filters by DETECTOR, selects its first incident
// (the anomaly list must then show exactly that incident's anomalies), opens the first of them, waits until its contributions chart is drawn, and
// saves a full-page screenshot; then opens an alert's link (?detector=&entity=) and checks that only that entity's
// incidents are listed. Exit code 0 only when every step worked; the reason otherwise on stderr.
import { chromium } from 'playwright-core';

const [baseUrl, screenshot, detector, driftStatus] = process.argv.slice(2);
if (!baseUrl || !screenshot || !detector) {
  console.error('usage: node dashboard.spec.mjs BASE_URL SCREENSHOT.png DETECTOR [DRIFT_STATUS]');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const fail = (message) => { throw new Error(message); };

const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });

  await page.goto(baseUrl + '/', { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15000 });
  if (!(await page.evaluate(() => typeof window.Chart === 'function'))) fail('Chart.js was not loaded from /dashboard/vendor');

  if (driftStatus) {
    const badge = await page.$eval(`#detectors .detector[data-detector="${detector}"] [data-drift]`,
      (b) => ({ status: b.dataset.drift, text: b.textContent }));
    if (badge.status !== driftStatus || !badge.text.includes('PSI')) fail(`drift badge of ${detector}: ${JSON.stringify(badge)}, expected ${driftStatus} with PSI`);
    console.log(`drift badge: ${badge.text}`);
  }

  // Filter by detector: every row shown must then belong to it.
  await page.selectOption('#detector-filter', detector);
  await page.waitForFunction((d) => {
    const rows = [...document.querySelectorAll('#anomaly-table tbody tr[data-id]')];
    return rows.length > 0 && rows.every((r) => r.children[1].textContent === d);
  }, detector, { timeout: 15000 });
  const rows = await page.$$eval('#anomaly-table tbody tr[data-id]', (trs) => trs.map((r) => [r.dataset.id, r.children[1].textContent]));
  console.log(`filtered to ${rows.length} rows of ${detector}`);
  const timelinePoints = await page.evaluate(() => {
    const chart = Object.values(window.Chart.instances).find((c) => c.canvas.id === 'timeline-chart');
    return chart ? chart.data.datasets.map((d) => d.data.length) : null;
  });
  if (!timelinePoints || timelinePoints[0] === 0) fail(`timeline chart has no points: ${JSON.stringify(timelinePoints)}`);
  if (timelinePoints.length < 2) fail('timeline chart has no threshold line');

  // Incidents first: the detector's incidents are listed; selecting one lists exactly its anomalies.
  await page.waitForFunction((d) => {
    const rows = [...document.querySelectorAll('#incident-table tbody tr[data-id]')];
    return rows.length > 0 && rows.every((r) => r.children[1].textContent === d);
  }, detector, { timeout: 15000 });
  const incident = await page.$eval('#incident-table tbody tr[data-id]', (r) => ({ id: r.dataset.id, count: Number(r.dataset.count), entity: r.children[2].textContent }));
  await page.click(`#incident-table tbody tr[data-id="${incident.id}"]`);
  await page.waitForSelector(`body[data-incident="${incident.id}"]`, { timeout: 15000 });
  const drilled = await page.$$eval('#anomaly-table tbody tr[data-id]', (trs) => trs.map((r) => r.children[2].textContent));
  if (drilled.length !== Math.min(incident.count, 50)) fail(`incident ${incident.id} has ${incident.count} anomalies, the list shows ${drilled.length}`);
  if (drilled.some((e) => e !== incident.entity)) fail(`incident ${incident.id} of ${incident.entity} lists anomalies of ${[...new Set(drilled)].join(', ')}`);
  console.log(`incident ${incident.id}: ${drilled.length} anomalies of ${incident.entity}`);

  // Open the incident's first anomaly and wait for its contribution bars.
  const id = await page.$eval('#anomaly-table tbody tr[data-id]', (r) => r.dataset.id);
  await page.click(`#anomaly-table tbody tr[data-id="${id}"]`);
  await page.waitForSelector(`body[data-contributions-for="${id}"]`, { timeout: 15000 });
  const bars = await page.evaluate(() => {
    const chart = Object.values(window.Chart.instances).find((c) => c.canvas.id === 'contributions-chart');
    return chart ? { labels: chart.data.labels, values: chart.data.datasets[0].data } : null;
  });
  if (!bars || bars.labels.length === 0) fail('contributions chart is empty');
  if (bars.values.some((v, i) => i > 0 && v > bars.values[i - 1])) fail('contributions are not largest first');
  console.log(`anomaly ${id}: contributions ${bars.labels.join(', ')}`);
  // The window column: how many events of which entity a windowed model reads, "each event" otherwise.
  const models = await page.$$eval('#models-table tbody tr', (trs) => trs.map((r) => [r.children[0].textContent, r.children[6]?.textContent]));
  console.log(`models table rows: ${models.length}`);
  for (const [detector, window] of models) console.log(`model ${detector}: ${window}`);

  await page.locator('#detail-card').scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) fail(problems.join('\n'));
  console.log(`screenshot: ${screenshot}`);

  // An alert's dashboard link (Alertmanager:DashboardUrl): ?detector=&entity= opens the page filtered to that entity.
  await page.goto(`${baseUrl}/?detector=${encodeURIComponent(detector)}&entity=${encodeURIComponent(incident.entity)}`, { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15000 });
  const linked = await page.$$eval('#incident-table tbody tr[data-id]', (trs) => trs.map((r) => r.children[2].textContent));
  if (linked.length === 0 || linked.some((e) => e !== incident.entity)) fail(`link to ${incident.entity} lists incidents of ${[...new Set(linked)].join(', ')}`);
  console.log(`alert link: ${linked.length} incidents of ${incident.entity}`);
} catch (e) {
  console.error(`dashboard test failed: ${e.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
