/**
 * What `npm run build` makes for the package besides the bundles: the npm entry, which leaves lit, partysocket and
 * qrcode to the consumer, its .d.ts types and the Custom Elements Manifest, all named by package.json.
 * `npm test` builds first.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { test } from "node:test";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const at = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const pkg = JSON.parse(await readFile(at("package.json"), "utf8"));
const ENTRY = "dist/npm/multiuser-chat.js";
/** The class without its registration, `multiuser-chat/class`. */
const CLASS = "dist/npm/class.js";
const TAG = "multiuser-chat";
/** The single-file bundles; each names its .LEGAL.txt (the libraries' licence comments) in its last lines. */
const bundles = ["dist/multiuser-chat.js", "dist/multiuser-chat.iife.js"];

/** Every file package.json points consumers and tools at. */
const named = (): string[] =>
  [
    pkg.module,
    pkg.types,
    pkg.customElements,
    ...Object.values(pkg.exports as Record<string, string | Record<string, string>>).flatMap((target) =>
      typeof target === "string" ? [target] : Object.values(target),
    ),
  ].map((path: string) => path.replace(/^\.\//, ""));

test("package.json's module, types, exports and customElements name files the build wrote", () => {
  assert.equal(pkg.exports["."].default, `./${ENTRY}`);
  for (const path of named()) assert.ok(existsSync(at(path)), `${path} is missing: run \`npm run build\` first (\`npm test\` does)`);
});

/** The package's modules that `path` loads: itself and, through their relative imports, the modules they import. */
async function loaded(path: string): Promise<Map<string, string>> {
  const modules = new Map<string, string>();
  const visit = async (file: string) => {
    if (modules.has(file)) return;
    const text = await readFile(at(file), "utf8");
    modules.set(file, text);
    for (const [, specifier] of text.matchAll(/^(?:import|export) .* from "(\.[^"]+)";$/gm)) await visit(`${dirname(file)}/${specifier!.replace(/^\.\//, "")}`);
  };
  await visit(path);
  return modules;
}

test("the npm entry imports the class module, and the two import lit, partysocket and qrcode instead of containing them", async () => {
  const modules = await loaded(ENTRY);
  assert.deepEqual([...modules.keys()], [ENTRY, CLASS]);
  const packages = new Set(
    [...modules.values()].flatMap((text) => [...text.matchAll(/^import .* from "([^".][^"]*)";$/gm)].map(([, specifier]) => specifier!.split("/")[0])),
  );
  assert.deepEqual([...packages].sort(), Object.keys(pkg.dependencies).sort());
  // Each library's own code, which the single-file bundles carry. (Not a name the session imports partysocket's
  // socket under, such as ReconnectingWebSocket: a string of partysocket's own.)
  for (const marker of ["litElementVersions", "max retries reached", "getSymbolSize"]) {
    for (const [path, text] of modules) assert.ok(!text.includes(marker), `${path} contains ${marker}`);
    assert.ok((await readFile(at("dist/multiuser-chat.js"), "utf8")).includes(marker), `${marker} is no marker of the bundled libraries`);
  }
});

test("only the npm entry registers the element: the class module can be imported to register it under another name", async () => {
  const defines = async (path: string) => (await readFile(at(path), "utf8")).includes("customElements.define(");
  assert.equal(await defines(ENTRY), true);
  assert.equal(await defines(CLASS), false);
});

test("a TypeScript consumer of the package gets the element's class and its tag from the .d.ts types, the class alone from multiuser-chat/class, and the headless client from multiuser-chat/session", async () => {
  // Inside the package, its own name resolves through its `exports`, as it would from a consumer's node_modules.
  const dir = at("test-results/consumer");
  await mkdir(dir, { recursive: true });
  await writeFile(
    `${dir}/consumer.ts`,
    `import { MultiuserChat } from "${pkg.name}";
import { MultiuserChat as Unregistered } from "${pkg.name}/class";
import { ChatModel, Session, type SessionEventMap } from "${pkg.name}/session";
const chat: MultiuserChat = document.createElement("${TAG}");
chat.room = "lobby";
export const isChat: boolean = chat instanceof MultiuserChat;
export const sameClass: typeof MultiuserChat = Unregistered;
// The headless client: a session typed by its model, and its events by name.
const session = Session.join({ host: "127.0.0.1:1999", room: "lobby", model: ChatModel });
export const users: number | undefined = session.model?.users.length;
session.addEventListener("reflector-error", (event: SessionEventMap["reflector-error"]) => event.detail.code);
`,
  );
  const compilerOptions = {
    strict: true,
    noEmit: true,
    target: "ES2022",
    module: "ESNext",
    moduleResolution: "Bundler",
    lib: ["ES2022", "DOM", "DOM.Iterable"],
    types: [],
  };
  await writeFile(`${dir}/tsconfig.json`, JSON.stringify({ compilerOptions, files: ["consumer.ts"] }));
  try {
    execFileSync(process.execPath, [at("node_modules/typescript/bin/tsc"), "-p", dir], { encoding: "utf8" });
  } catch (error) {
    assert.fail(`tsc: ${(error as { stdout: string }).stdout}`);
  }
});

test("custom-elements.json describes <multiuser-chat> as the element's JSDoc does", async () => {
  const manifest = JSON.parse(await readFile(at(pkg.customElements), "utf8"));
  const source = await readFile(at("component/multiuser-chat/multiuser-chat.ts"), "utf8");
  const documented = (tag: string) => [...source.matchAll(new RegExp(`^ \\* @${tag} ([\\w-]+)`, "gm"))].map(([, name]) => name).sort();
  const names = (list: { name: string }[] | undefined) => (list ?? []).map(({ name }) => name).sort();

  const modules = manifest.modules as { path: string; declarations?: Record<string, never>[]; exports?: { kind: string; name: string }[] }[];
  const element = modules.flatMap((module) => module.declarations ?? []).find((declaration) => declaration.tagName === TAG);
  assert.ok(element, `no declaration with tagName ${TAG}`);
  assert.equal(element.name, "MultiuserChat");
  assert.ok(modules.some((module) => module.path === ENTRY && module.exports?.some(({ kind, name }) => kind === "custom-element-definition" && name === TAG)));

  for (const attribute of ["host", "room", "key", "party", "join-url"])
    assert.ok(documented("attr").includes(attribute), `@attr ${attribute} is not documented`);
  // Exactly the documented attributes: none missing, and no internal state (`state: true`) passed off as one.
  assert.deepEqual(names(element.attributes), documented("attr"));
  for (const [tag, field] of [
    ["fires", "events"],
    ["csspart", "cssParts"],
    ["cssprop", "cssProperties"],
  ]) {
    assert.ok(documented(tag).length > 0, `no @${tag} in the element's JSDoc`);
    assert.deepEqual(names(element[field]), documented(tag), `the manifest's ${field}`);
  }
});

test("each single-file bundle points at its license text, which holds the bundled libraries' notices", async () => {
  for (const bundle of bundles) {
    const name = bundle.slice("dist/".length);
    assert.ok((await readFile(at(bundle), "utf8")).includes(`see ${name}.LEGAL.txt */`), `${bundle} does not name ${name}.LEGAL.txt`);
    const notices = await readFile(at(`${bundle}.LEGAL.txt`), "utf8");
    for (const library of ["lit-html/lit-html.js", "@lit/reactive-element/reactive-element.js"])
      assert.ok(notices.includes(library), `${bundle}.LEGAL.txt has no notice for ${library}`);
  }
});

test("npm pack would ship the entry, the types, both bundles with their license texts and the manifest, and no sources, tests or demo", () => {
  const [{ files }] = JSON.parse(
    execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: at(""), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }),
  );
  const paths = (files as { path: string }[]).map(({ path }) => path);
  for (const path of [...named().filter((path) => path !== "package.json"), ...bundles.flatMap((bundle) => [bundle, `${bundle}.LEGAL.txt`])])
    assert.ok(paths.includes(path), `${path} is not packed`);
  assert.deepEqual(
    paths.filter((path) => !/^(dist\/|README\.md$|package\.json$)/.test(path) || path === "dist/index.html"),
    [],
  );
});
