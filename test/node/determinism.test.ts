import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { checkModelCode, findForbiddenUses, MODEL_ENTRY_FILES, type Violation } from "../support/determinism.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

function describe(violations: Violation[]): string {
  return violations.map(({ file, line, column, name, reason }) => `${file}:${line}:${column} ${name} — ${reason}`).join("\n");
}

test("the model code is deterministic", async () => {
  const { files, violations } = await checkModelCode(MODEL_ENTRY_FILES);
  assert.equal(violations.length, 0, `forbidden uses in model code:\n${describe(violations)}`);
  const visited = files.map((file) => relative(root, file));
  for (const file of ["component/chat-model.ts", "component/runtime.ts", "component/prng.ts", "component/nicknames.ts"]) {
    assert.ok(visited.includes(file), `${file} is not among the visited files: ${visited.join(", ")}`);
  }
});

const forbidden: [snippet: string, name: string][] = [
  ["const x = Math.random();", "Math.random"],
  ["const t = Date.now();", "Date"],
  ["const d = new Date();", "Date"],
  ["const t = performance.now();", "performance"],
  ["setTimeout(f, 1);", "setTimeout"],
  ["queueMicrotask(f);", "queueMicrotask"],
  ["const t = document.title;", "document"],
  ["const y = window.x;", "window"],
  ['fetch("/x");', "fetch"],
  ['const s = new WebSocket("ws://x");', "WebSocket"],
  ["crypto.getRandomValues(a);", "crypto"],
  ["const c = a.localeCompare(b);", "localeCompare"],
  ["const s = n.toLocaleString();", "toLocaleString"],
  ["const f = new Intl.NumberFormat();", "Intl"],
  ["const g = globalThis.foo;", "globalThis"],
  ['import x from "lit";', "lit"],
];

for (const [snippet, name] of forbidden) {
  test(`the checker refuses ${snippet}`, () => {
    const violations = findForbiddenUses("snippet.ts", snippet);
    assert.deepEqual(
      violations.map((violation) => violation.name),
      [name],
      describe(violations),
    );
  });
}

const allowed: [what: string, snippet: string][] = [
  ["a method named now", "class M { now() { return 1; } f() { return this.now(); } }"],
  ["an object literal with keys named like globals", "const o = { random: 1, date: 2 };"],
  ["a property named time", "const t = entry.time;"],
  ["a property named like a global", "const d = this.document;"],
  ["a local variable named timeout", "let timeout = 5; timeout++;"],
  ["a local variable that shadows a global", "const document = { format: 1 }; const f = document.format;"],
  ["a type-only position", "let d: DateLike;"],
  ["a type-only import of a package", 'import type { X } from "lit";'],
];

for (const [what, snippet] of allowed) {
  test(`the checker allows ${what}`, () => {
    const violations = findForbiddenUses("snippet.ts", snippet);
    assert.deepEqual(violations, [], describe(violations));
  });
}

test("checkModelCode follows relative imports", async () => {
  const folder = await mkdtemp(join(tmpdir(), "determinism-"));
  try {
    await writeFile(join(folder, "a.ts"), 'import { later } from "./b.js";\nexport const value = later();\n');
    await writeFile(join(folder, "b.ts"), "export function later(): number {\n  return Date.now() + 1;\n}\n");
    const { violations } = await checkModelCode([join(folder, "a.ts")]);
    assert.deepEqual(
      violations.map(({ file, line, column, name }) => ({ file, line, column, name })),
      [{ file: join(folder, "b.ts"), line: 2, column: 10, name: "Date" }],
    );
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});
