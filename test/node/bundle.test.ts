/**
 * The size budget of the single-file ESM bundle (lit, partysocket and qrcode inside). Size is deterministic, so
 * a test may enforce it; `npm test` builds the bundle first.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { gzipSync } from "node:zlib";

/** 30 kB gzipped, at gzip's default level, as a CDN would serve it. */
const GZIP_BUDGET = 30_000;

test(`the element's ESM bundle is at most ${GZIP_BUDGET} bytes gzipped`, async () => {
  const bundle = await readFile(new URL("../../dist/multiuser-chat.js", import.meta.url)).catch(() => {
    throw new Error("dist/multiuser-chat.js is missing: run `npm run build` first (`npm test` does)");
  });
  const gzipped = gzipSync(bundle).length;
  console.log(`# bundle: ${bundle.length} bytes minified, ${gzipped} bytes gzipped (budget ${GZIP_BUDGET})`);
  assert.ok(gzipped <= GZIP_BUDGET, `the bundle is ${gzipped} bytes gzipped; the budget is ${GZIP_BUDGET}`);
});
