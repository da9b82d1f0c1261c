// Builds the single-file ESM bundle of <multiuser-chat> (lit, partysocket and qrcode inside) and the demo into dist/,
// the folder partykit.json serves.
import { build } from "esbuild";
import { cp, mkdir } from "node:fs/promises";

await mkdir("dist", { recursive: true });
await build({
  entryPoints: { "multiuser-chat": "component/multiuser-chat.ts" },
  outdir: "dist",
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: "linked",
  legalComments: "eof",
  logLevel: "warning",
});
await cp("demo", "dist", { recursive: true });
console.log("built dist/multiuser-chat.js and the demo");
