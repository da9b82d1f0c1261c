// `npm start`: runs the Worker that deploys (the reflector and the demo in dist/) under `wrangler dev`, then prints
// where to open it. Stop with Ctrl-C. The port is 1999 unless PORT says otherwise; rooms persist in .wrangler/state.
import { spawn } from "node:child_process";
import { networkInterfaces } from "node:os";

const port = Number(process.env.PORT ?? 1999);
const child = spawn(
  process.execPath,
  // All interfaces, so that a phone on the same network can open the demo and its rooms.
  [
    "node_modules/wrangler/bin/wrangler.js",
    "dev",
    "--ip",
    "0.0.0.0",
    "--port",
    String(port),
    "--persist-to",
    ".wrangler/state",
    "--show-interactive-dev-session=false",
  ],
  {
    stdio: ["ignore", "pipe", "inherit"],
    // NODE_ENV=test keeps miniflare from fetching the `Request.cf` object, which fails without internet and which
    // nothing here reads; metrics stay off.
    env: { ...process.env, NODE_ENV: "test", WRANGLER_SEND_METRICS: "false" },
  },
);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code) => process.exit(code ?? 0));

let announced = false;
child.stdout.on("data", (chunk) => {
  process.stdout.write(chunk);
  if (announced || !String(chunk).includes("Ready on")) return;
  announced = true;
  const lan = Object.values(networkInterfaces())
    .flat()
    .filter((address) => address && address.family === "IPv4" && !address.internal)
    .map((address) => `http://${address.address}:${port}/`);
  console.log(`\nmultiuser-chat is running. Open the demo at:\n\n    http://127.0.0.1:${port}/\n`);
  if (lan.length > 0) {
    console.log(`To join from a phone on the same network, open the demo on this computer through its network address,`);
    console.log(`so the QR code carries an address the phone can reach: ${lan.join(" or ")}\n`);
  }
});
