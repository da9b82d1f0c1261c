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
  // The habits the project keeps count as checks of the suite, one each: the strict typecheck (the project against
  // the DOM, the Worker against the Workers runtime: party/tsconfig.json), the formatter and linter (Biome,
  // biome.jsonc), and the element's templates (lit-analyzer; its CSS rules do not know today's CSS, so they are off).
  const checks = [
    [
      "typecheck",
      [
        ["node_modules/typescript/bin/tsc", "--noEmit", "-p", "."],
        ["node_modules/typescript/bin/tsc", "--noEmit", "-p", "party"],
      ],
    ],
    ["format and lint", [["node_modules/@biomejs/biome/bin/biome", "ci", "."]]],
    [
      "Lit templates",
      [["node_modules/lit-analyzer/cli.js", "component/multiuser-chat/*.ts", "--strict", "--maxWarnings", "0", "--rules.no-invalid-css", "off"]],
    ],
  ];
  for (const [name, commands] of checks) {
    let code = 0;
    for (const command of commands) code ||= await run(process.execPath, command);
    console.log(`${name} ${code === 0 ? "passed" : "failed"}`);
    if (code === 0) passed++;
    else failed++;
  }
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

// An artifact, not a check: screenshots of the demo for a person to look at. Counted neither way; if they cannot be
// taken, the run says so and goes on.
if (only === undefined && (await run(process.execPath, ["--import", "tsx", "scripts/screenshots.ts"])) !== 0) console.error("screenshots: not written");

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
