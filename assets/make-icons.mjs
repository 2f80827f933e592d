#!/usr/bin/env node
// Renders the icons in assets/svg/ to the PNGs the app and its installers use:
//   tray-STATE.svg -> tray/tray-STATE.png (16 px) and tray/tray-STATE@2x.png (32 px)
//   icon.svg       -> icon.png (512 px)
// With Chromium through playwright-core (CROWDBAKE_CHROMIUM, default /usr/bin/chromium).
// Run after editing an SVG and commit the PNGs:  node assets/make-icons.mjs
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const dir = new URL('.', import.meta.url).pathname;
const executablePath = process.env.CROWDBAKE_CHROMIUM ?? '/usr/bin/chromium';

const jobs = [];
for (const file of readdirSync(`${dir}svg`).filter((f) => f.endsWith('.svg')).sort()) {
  const name = file.replace(/\.svg$/, '');
  if (name.startsWith('tray-')) {
    jobs.push({ file, size: 16, out: `tray/${name}.png` }, { file, size: 32, out: `tray/${name}@2x.png` });
  } else if (name === 'icon') {
    jobs.push({ file, size: 512, out: 'icon.png' });
  }
}

mkdirSync(`${dir}tray`, { recursive: true });
const browser = await chromium.launch({
  executablePath, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage({ deviceScaleFactor: 1 });
  for (const job of jobs) {
    const svg = readFileSync(`${dir}svg/${job.file}`).toString('base64');
    await page.setViewportSize({ width: job.size, height: job.size });
    await page.setContent(
      `<!doctype html><html><body style="margin:0;background:transparent">`
      + `<img src="data:image/svg+xml;base64,${svg}" width="${job.size}" height="${job.size}" style="display:block"></body></html>`,
    );
    await page.locator('img').evaluate((img) => img.decode());
    await page.screenshot({ path: `${dir}${job.out}`, omitBackground: true, clip: { x: 0, y: 0, width: job.size, height: job.size } });
    console.log(`assets/${job.out}  ${job.size}x${job.size}`);
  }
} finally {
  await browser.close();
}
