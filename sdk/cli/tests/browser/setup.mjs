// Drives `ocellus setup`'s page in headless Chromium (Debian's, through playwright-core), for
// sdk/cli/tests/setup_page.rs. Usage: node setup.mjs URL OUT_DIR EXPECT_JSON
//   EXPECT_JSON: {"a": [x, y], "b": [x, y]} the config's first line, normalised.
// Prints one JSON object with what it saw; the Rust test judges it. Exits non-zero only when the
// browser cannot be driven at all.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [, , url, outDir, expectJson] = process.argv;
const expect = JSON.parse(expectJson);
const modules = process.env.OCELLUS_NODE_MODULES;
if (!modules) throw new Error('OCELLUS_NODE_MODULES is not set (models/provision.sh installs playwright-core)');
const require = createRequire(join(modules, 'noop.js'));
const { chromium } = require('playwright-core');

const profile = mkdtempSync(join(tmpdir(), 'ocellus-chromium-'));
// a fresh profile each run
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.OCELLUS_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 760 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const result = {};
try {
  const page = browser.pages()[0] || await browser.newPage();
  page.setDefaultTimeout(30000);
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.ready === '1' && Number(document.body.dataset.stills || 0) >= 1);
  // wait for the still to be painted at its size
  await page.waitForFunction(() => document.getElementById('view').naturalWidth > 0);

  const geometry = () => page.evaluate(() => {
    const r = (e) => { const b = e.getBoundingClientRect(); return { x: b.x, y: b.y, w: b.width, h: b.height }; };
    const centre = (sel) => { const b = document.querySelector(sel).getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; };
    return {
      img: r(document.getElementById('view')),
      a: centre('[data-handle="line-0-a"]'),
      b: centre('[data-handle="line-0-b"]'),
      natural: [document.getElementById('view').naturalWidth, document.getElementById('view').naturalHeight],
    };
  });
  const g = await geometry();
  result.image = g.img;
  result.natural = g.natural;
  result.handleA = g.a;
  result.handleB = g.b;
  const at = (p) => [g.img.x + p[0] * g.img.w, g.img.y + p[1] * g.img.h];
  result.expectA = at(expect.a);
  result.expectB = at(expect.b);

  // the screenshot's pixels along the drawn line: decoded by the browser itself
  const shot = await page.screenshot({ path: join(outDir, 'setup.png') });
  const samples = [0.25, 0.5, 0.75].map((t) => [
    result.expectA[0] + t * (result.expectB[0] - result.expectA[0]),
    result.expectA[1] + t * (result.expectB[1] - result.expectA[1]),
  ]);
  const offLine = [result.expectA[0] - 40, (result.expectA[1] + result.expectB[1]) / 2];
  result.lineColours = await page.evaluate(async ({ png, points }) => {
    const bitmap = await createImageBitmap(await (await fetch('data:image/png;base64,' + png)).blob());
    const c = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = c.getContext('2d');
    ctx.drawImage(bitmap, 0, 0);
    return points.map(([x, y]) => Array.from(ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data).slice(0, 3));
  }, { png: shot.toString('base64'), points: [...samples, offLine] });

  // a save the config check refuses: the error shows next to the rule, nothing is written
  await page.fill('#line-0-name', 'bad name/with slash');
  await page.click('#save');
  await page.waitForFunction(() => Number(document.body.dataset.refused || 0) >= 1);
  result.refusedError = await page.textContent('#line-0-error');
  result.refusedGeneral = await page.textContent('#general-error');

  // rename, drag the a end by (+0.1, +0.05) of the image, save
  await page.fill('#line-0-name', 'front-door');
  const to = [g.a[0] + 0.1 * g.img.w, g.a[1] + 0.05 * g.img.h];
  await page.mouse.move(g.a[0], g.a[1]);
  await page.mouse.down();
  await page.mouse.move((g.a[0] + to[0]) / 2, (g.a[1] + to[1]) / 2, { steps: 5 });
  await page.mouse.move(to[0], to[1], { steps: 5 });
  await page.mouse.up();
  result.dragTo = [(to[0] - g.img.x) / g.img.w, (to[1] - g.img.y) / g.img.h];
  await page.click('#save');
  await page.waitForFunction(() => Number(document.body.dataset.saved || 0) >= 1);
  result.status = await page.textContent('#status');
  // after the save the page reloads the file: the handle sits where it was dropped
  const after = await geometry();
  result.handleAAfter = after.a;
  result.nameAfter = await page.inputValue('#line-0-name');
  // live counts for the renamed rule arrive from the running pipeline
  await page.waitForFunction(() => document.getElementById('line-0-count').textContent.includes('a>b'));
  result.countText = await page.textContent('#line-0-count');
  await page.screenshot({ path: join(outDir, 'setup-saved.png') });
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
