// Builds into dist/, the folder partykit.json serves:
// - multiuser-chat.js, the single-file ESM bundle (lit, partysocket and qrcode inside), for <script type="module">;
// - multiuser-chat.iife.js, the same as a classic script, for CodePen's "external scripts" and pages without modules;
// - npm/, the package's entry, which leaves lit, partysocket and qrcode to the consumer's bundler, with .d.ts types;
// - custom-elements.json, the Custom Elements Manifest, read from the element's JSDoc;
// - the demo.
import { create, ts } from "@custom-elements-manifest/analyzer";
import { litPlugin } from "@custom-elements-manifest/analyzer/src/features/framework-plugins/lit/lit.js";
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

/** The module that registers the element: the entry of the bundles and of the package. */
const DEFINE = "component/multiuser-chat/define.ts";
/** The element's class, which the manifest documents. */
const ELEMENT = "component/multiuser-chat/multiuser-chat.ts";
/** The package's entry, which registers the element, and the class alone (`multiuser-chat/class`). */
const NPM_ENTRY = "dist/npm/multiuser-chat.js";
const NPM_CLASS = "dist/npm/class.js";
/** The headless client, `multiuser-chat/session`. */
const NPM_SESSION = "dist/npm/session.js";

await mkdir("dist", { recursive: true });
// Types of modules that no longer exist must not linger in the package.
await rm("dist/npm", { recursive: true, force: true });

/** Short names for the private custom properties (`--_accent` becomes `--_0`), the same in every literal. */
const privateProperties = new Map();
const shortName = (name) => privateProperties.get(name) ?? privateProperties.set(name, `--_${privateProperties.size.toString(36)}`).get(name);
/**
 * esbuild keeps the CSS of a css`…` literal as written. For the minified bundles it is collapsed here: comments
 * and indentation go, and so do spaces around `{ } ; , >` and after `:` (never before one, which would join a
 * descendant selector to its pseudo-class; nor around `+` and `-`, which calc() needs), the quotes of attribute
 * values that are plain words, and the zero of `0.5`. The private custom properties, named in words, get short names.
 */
const minifyCssText = (text) =>
  text
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/--_[\w-]+/g, shortName)
    .replace(/\s+/g, " ")
    .replace(/\s*([{};,>])\s*/g, "$1")
    .replace(/:\s+/g, ":")
    .replace(/;}/g, "}")
    .replace(/\[([\w-]+)="([\w-]+)"\]/g, "[$1=$2]")
    .replace(/([^\w.])0\.(\d)/g, "$1.$2")
    .trim();
/**
 * In the static text of an html`…` literal, a line break and the indentation around it render nothing: the element's
 * templates break lines only between tags and expressions that are laid out as blocks and flex items, never inside a
 * run of inline text. So they go.
 */
const minifyHtmlText = (text) => text.replace(/\s*\n\s*/g, "");

/**
 * Rewrites the static text of every html`…` literal in a TypeScript `source` with `minifyHtmlText`, leaving the
 * `${…}` expressions as written. TypeScript parses the file, so nothing in an expression is mistaken for text.
 */
function minifyHtmlLiterals(source, fileName) {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true);
  const pieces = []; // [start, end) of each piece of static text, between its delimiters
  const visit = (node) => {
    if (ts.isTaggedTemplateExpression(node) && node.tag.getText(file) === "html") {
      const { template } = node;
      const spans = ts.isNoSubstitutionTemplateLiteral(template) ? [template] : [template.head, ...template.templateSpans.map((span) => span.literal)];
      for (const literal of spans) {
        // Each piece opens with ` or } and closes with ` or ${.
        const close = ts.isNoSubstitutionTemplateLiteral(literal) || ts.isTemplateTail(literal) ? 1 : 2;
        pieces.push([literal.getStart(file) + 1, literal.getEnd() - close]);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  let out = "";
  let at = 0;
  for (const [start, end] of pieces.sort((a, b) => a[0] - b[0])) {
    out += source.slice(at, start) + minifyHtmlText(source.slice(start, end));
    at = end;
  }
  return out + source.slice(at);
}

const minifyLiterals = {
  name: "minify-literals",
  setup(build) {
    build.onLoad({ filter: /component[\\/].+\.ts$/ }, async ({ path }) => ({
      contents: minifyHtmlLiterals(await readFile(path, "utf8"), path).replace(/\bcss`([^`]*)`/g, (_, text) => `css\`${minifyCssText(text)}\``),
      loader: "ts",
    }));
  },
};

/**
 * Four of qrcode's modules are replaced in the bundles by smaller ones in scripts/qrcode-parts/. The element gives
 * qrcode one segment in byte mode (a URL needs no other), so its segmentation (an optimal split of a string, with
 * dijkstrajs and the numeric, alphanumeric and kanji encoders), its mode detection and its Kanji hooks are never
 * reached: segments.cjs builds byte segments only, mode.cjs holds the modes' numbers alone and utils.cjs the sizes.
 * mask-pattern.cjs chooses the mask as qrcode does, in less code. About 3 kB gzipped in all; test/node/qrcode-parts.test.ts holds the parts to qrcode's own, and
 * test/browser/join-url.test.ts decodes the codes the element draws.
 */
const qrcodeParts = {
  name: "qrcode-parts",
  setup(build) {
    build.onResolve({ filter: /^\.\/(segments|mode|mask-pattern|utils)(\.js)?$/ }, ({ path, importer }) =>
      /[\\/]qrcode[\\/]/.test(importer) ? { path: fileURLToPath(new URL(`qrcode-parts/${path.replace(/^\.\/|\.js$/g, "")}.cjs`, import.meta.url)) } : undefined,
    );
  },
};

/** The package's define module imports the class from the package's class module, so both share one class. */
const classImportedFromPackage = {
  name: "class-imported-from-package",
  setup(build) {
    build.onResolve({ filter: /^\.\/multiuser-chat\.js$/ }, () => ({ path: `./${NPM_CLASS.slice("dist/npm/".length)}`, external: true }));
  },
};
/** The package's modules are not minified: the consumer's bundler minifies, and shares lit with the rest of their app. */
const npm = { bundle: true, packages: "external", format: "esm", target: "es2022", logLevel: "warning" };

const bundle = {
  bundle: true,
  outdir: "dist",
  target: "es2022",
  minify: true,
  sourcemap: "linked",
  legalComments: "linked",
  charset: "utf8",
  logLevel: "warning",
  plugins: [minifyLiterals, qrcodeParts],
};
await Promise.all([
  build({ ...bundle, entryPoints: { "multiuser-chat": DEFINE }, format: "esm" }),
  // A classic script has no import.meta. While it first runs, document.currentScript is its <script>, whose URL
  // tells the element which host serves the reflector.
  build({ ...bundle, entryPoints: { "multiuser-chat.iife": DEFINE }, format: "iife", define: { "import.meta.url": "document.currentScript.src" } }),
  build({ ...npm, entryPoints: [ELEMENT], outfile: NPM_CLASS }),
  build({ ...npm, entryPoints: [DEFINE], outfile: NPM_ENTRY, plugins: [classImportedFromPackage] }),
  build({ ...npm, entryPoints: ["component/headless.ts"], outfile: NPM_SESSION }),
]);
try {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
} catch {
  console.error("build: tsc could not write the .d.ts types (its errors are above)");
  process.exit(1);
}

/** Where the package puts each module the manifest describes. */
const packaged = new Map([
  [ELEMENT, NPM_CLASS],
  [DEFINE, NPM_ENTRY],
]);
/** A module reference of the analyzer's (`/component/….js`, say) as the file the package puts it in. */
const packagedPath = (path) => packaged.get(path.replace(/^\//, "").replace(/\.js$/, ".ts")) ?? path;

/**
 * What the analyzer cannot tell from the source by itself: the tag is defined through the constant `TAG`; Lit's
 * internal state (`state: true`, never public) is no attribute; an event dispatched under a computed name has no
 * name for it (`@fires` documents those); and consumers import the package's files, not the source.
 */
const manifestFixes = {
  name: "multiuser-chat-manifest-fixes",
  packageLinkPhase({ customElementsManifest }) {
    const { modules } = customElementsManifest;
    const declarations = modules.flatMap((module) => module.declarations);
    const strings = new Map(declarations.filter((d) => d.kind === "variable" && d.default?.startsWith('"')).map((d) => [d.name, JSON.parse(d.default)]));
    for (const declaration of declarations) {
      if (declaration.tagName !== undefined) declaration.tagName = strings.get(declaration.tagName) ?? declaration.tagName;
      const isPublic = (attribute) =>
        attribute.fieldName === undefined || declaration.members.find((member) => member.name === attribute.fieldName)?.privacy === "public";
      declaration.attributes = declaration.attributes?.filter(isPublic);
      declaration.events = declaration.events?.filter((event) => event.name !== undefined);
    }
    for (const module of modules) {
      for (const entry of module.exports ?? []) {
        if (entry.kind === "custom-element-definition") entry.name = strings.get(entry.name) ?? entry.name;
        entry.declaration.module = packagedPath(entry.declaration.module);
      }
      module.path = packagedPath(module.path);
    }
  },
};
const sources = await Promise.all([ELEMENT, DEFINE].map(async (path) => ts.createSourceFile(path, await readFile(path, "utf8"), ts.ScriptTarget.ES2022, true)));
const manifest = create({ modules: sources, plugins: [...litPlugin(), manifestFixes] });
await writeFile("dist/custom-elements.json", `${JSON.stringify(manifest, null, 2)}\n`);

// codepen.html is a body to paste into CodePen once the deployment's address is in it: as it is, it loads nothing.
await cp("demo", "dist", { recursive: true, filter: (path) => !path.endsWith("codepen.html") });
console.log("built dist/: multiuser-chat.js, multiuser-chat.iife.js, npm/, custom-elements.json and the demo");
