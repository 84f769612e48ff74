// The demo's status page in a real browser (Debian's chromium, driven by playwright-core) while the
// demo's story runs in this process on a real cluster: both replicas listed, counters moving, the
// killed replica shown down, and a screenshot for the README taken once the story is over.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { type DemoResult, runDemo } from './demo.js';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = fileURLToPath(new URL('./status-page.png', import.meta.url));

/** The number in a counter cell of a router's row. */
async function counter(page: Page, contender: string, name: string): Promise<number> {
  return Number(await page.locator(`[data-contender="${contender}"] [data-counter="${name}"]`).textContent());
}

describe('npm run demo: the status page', () => {
  let browser: Browser | undefined;
  const stop = new AbortController();
  let demo: Promise<DemoResult> | undefined;
  afterAll(async () => {
    stop.abort(); // a failed assertion ends the story early; the demo stops what it started
    await browser?.close();
    await demo?.catch(() => {});
  });

  it('shows both replicas, moving counters and a replica down after the kill, live in Chromium', async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `${CHROMIUM} not found: install Debian's chromium package (apt-get install chromium), as .ci/run does`,
      );
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });

    let screenshotTaken = false;
    let pageUrl: (url: string) => void = () => {};
    let startFailed: (error: unknown) => void = () => {};
    const ready = new Promise<string>((resolve, reject) => {
      pageUrl = resolve;
      startFailed = reject;
    });
    demo = runDemo({
      once: true,
      log: () => {},
      signal: stop.signal,
      onReady: (url) => pageUrl(url),
      // The page still serves the story's final state here: the picture the README shows.
      onStoryEnd: async () => {
        if (stop.signal.aborted) return; // the test failed already: keep the last good screenshot
        await page.locator('body[data-done="true"]').waitFor({ timeout: 10_000 });
        await page.screenshot({ path: SCREENSHOT, fullPage: true });
        screenshotTaken = true;
      },
    });
    demo.catch(startFailed);
    const requested: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    const url = await ready;
    await page.goto(url);

    // Both lagless routers list both replicas.
    for (const router of ['lagless-prisma', 'lagless-drizzle']) {
      for (const replica of ['replica1', 'replica2']) {
        await page.locator(`[data-router="${router}"] [data-replica="${replica}"]`).waitFor({ timeout: 30_000 });
      }
    }

    // Counters change while the story runs: a count read now is overtaken later.
    await page.locator('body[data-step]:not([data-step="0"])').waitFor({ timeout: 30_000 });
    const before = await counter(page, 'lagless-drizzle', 'reads');
    const peerBefore = await counter(page, 'drizzle-with-replicas', 'reads');
    await expect
      .poll(async () => (await counter(page, 'lagless-drizzle', 'reads')) > before, { timeout: 30_000, interval: 100 })
      .toBe(true);
    await expect
      .poll(async () => (await counter(page, 'drizzle-with-replicas', 'reads')) > peerBefore, {
        timeout: 30_000,
        interval: 100,
      })
      .toBe(true);

    // Step 2 kills replica1: once it has, the page shows it down (in the router that noticed first, at least).
    await page.locator('body[data-step="2"]').waitFor({ timeout: 30_000 });
    await page.locator('[data-replica="replica1"][data-state="down"]').first().waitFor({ timeout: 30_000 });
    expect(await page.locator('#events').textContent()).toContain('killing replica1');

    // Everything the page loaded came from the demo itself: no CDN, no font, no chart library.
    expect(requested.length).toBeGreaterThan(1);
    expect(requested.filter((r) => !r.startsWith(url))).toEqual([]);

    const result = await demo;
    expect(screenshotTaken).toBe(true);
    // What the page showed, the story measured on real servers: lagless neither stale nor failing,
    // the peers both (random choice over a paused replica: stale with probability 1 - 2^-40).
    expect(result.broken).toEqual([]);
    expect(result.tallies['prisma-extension'].stale).toBeGreaterThan(0);
    expect(result.tallies['drizzle-with-replicas'].stale).toBeGreaterThan(0);
    expect(result.tallies['prisma-extension'].failed).toBeGreaterThan(0);
    expect(result.tallies['drizzle-with-replicas'].failed).toBeGreaterThan(0);
    expect(result.tallies['lagless-prisma'].reads).toBeGreaterThan(0);
  }, 120_000);
});
