/**
 * The size budget of the single-file bundles, ESM and classic script (lit, partysocket and qrcode inside). Size is
 * deterministic, so a test may enforce it; `npm test` builds the bundles first.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { gzipSync } from "node:zlib";

/** 30 kB gzipped, at gzip's default level, as a CDN would serve it. */
const GZIP_BUDGET = 30_000;

for (const [kind, file] of [
  ["ESM", "multiuser-chat.js"],
  ["classic-script", "multiuser-chat.iife.js"],
]) {
  test(`the element's ${kind} bundle is at most ${GZIP_BUDGET} bytes gzipped`, async () => {
    const bundle = await readFile(new URL(`../../dist/${file}`, import.meta.url)).catch(() => {
      throw new Error(`dist/${file} is missing: run \`npm run build\` first (\`npm test\` does)`);
    });
    const gzipped = gzipSync(bundle).length;
    console.log(`# ${file}: ${bundle.length} bytes minified, ${gzipped} bytes gzipped (budget ${GZIP_BUDGET})`);
    assert.ok(gzipped <= GZIP_BUDGET, `${file} is ${gzipped} bytes gzipped; the budget is ${GZIP_BUDGET}`);
  });
}
