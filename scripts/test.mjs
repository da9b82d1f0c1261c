// Runs the whole suite: the Node tests (model, runtime, reflector, and integration against a real `wrangler dev` and
// `partykit dev`), then the Chromium tests through @web/test-runner. Ends with one line: `N passed, N failed`.
import { execFileSync, spawn } from "node:child_process";
import { mkdir, readFile, rm } from "node:fs/promises";
import { build } from "esbuild";

execFileSync("bash", ["scripts/install-chromium.sh"], { stdio: "inherit" });

const results = "test-results";
await rm(results, { recursive: true, force: true });
await mkdir(results, { recursive: true });

// QR decoders are CommonJS; the browser tests import this ESM bundle instead.
await build({ entryPoints: ["node_modules/jsqr/dist/jsQR.js"], outfile: `${results}/bundles/jsqr.js`, bundle: true, format: "esm", logLevel: "warning" });

const run = (command, args, env = {}) =>
  new Promise((resolve) => {
    const child = spawn(command, args, { stdio: "inherit", env: { ...process.env, ...env } });
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });

const only = process.argv[2]; // "node" or "browser" runs one half
const suites = [];
let passed = 0;
let failed = 0;
if (only === undefined) {
  // The strict typecheck counts as one check of the suite: the project against the DOM, the Worker against the
  // Workers runtime (party/tsconfig.json).
  const code = (await run(process.execPath, ["node_modules/typescript/bin/tsc", "--noEmit", "-p", "."])) || (await run(process.execPath, ["node_modules/typescript/bin/tsc", "--noEmit", "-p", "party"]));
  console.log(code === 0 ? "typecheck passed" : "typecheck failed");
  if (code === 0) passed++;
  else failed++;
}
if (only !== "browser") {
  const file = `${results}/node-counts.json`;
  const files = process.argv.slice(3).length > 0 && only === "node" ? process.argv.slice(3) : ["test/node/*.test.ts"];
  const code = await run("sh", [
    "-c",
    `exec node --import tsx --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout --test-reporter=./test/support/node-count-reporter.mjs --test-reporter-destination=${file} ${files.join(" ")}`,
  ]);
  suites.push({ name: "node", file, code });
}
if (only !== "node") {
  const file = `${results}/browser-counts.json`;
  const code = await run(process.execPath, ["--import", "tsx", "node_modules/@web/test-runner/dist/bin.js", "--config", "web-test-runner.config.mjs"], {
    WTR_COUNTS_FILE: file,
  });
  suites.push({ name: "browser", file, code });
}

for (const suite of suites) {
  try {
    const counts = JSON.parse(await readFile(suite.file, "utf8"));
    passed += counts.passed;
    failed += counts.failed;
    if (suite.code !== 0 && counts.failed === 0) failed++; // the runner failed outside any test
  } catch {
    console.error(`${suite.name} tests wrote no counts (exit code ${suite.code})`);
    failed++;
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
