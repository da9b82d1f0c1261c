// Chromium tests: the Debian browser through Playwright, against a real `wrangler dev` (the Worker that deploys) that
// this config starts on a free loopback port and stops when the run ends. Run through scripts/test.mjs (it loads tsx
// for the TypeScript helper).
import { defaultReporter, summaryReporter } from "@web/test-runner";
import { esbuildPlugin } from "@web/dev-server-esbuild";
import { playwrightLauncher } from "@web/test-runner-playwright";
import { startReflector } from "./test/support/reflector-server.ts";
import { countReporter } from "./test/support/wtr-count-reporter.mjs";

let reflector;

/** Starts the reflector with the test server and stops it (by the PID it started) with it. */
const reflectorPlugin = {
  name: "wrangler-dev",
  async serverStart() {
    // Snapshots fall due often here (every 20 events, with no gap between rounds), so the browser tests run
    // through snapshot rounds too. The rate limit is raised so that a burst of posts arrives at once;
    // test/node/limits.test.ts covers the limit itself. Room names shorter than the element's 64 characters, so
    // that a name only the server refuses can be tried.
    reflector = await startReflector({
      vars: { SNAPSHOT_EVENTS: "20", SNAPSHOT_GAP_MS: "0", RATE_LIMIT: "100000", RATE_BURST: "100000", ROOM_RATE: "100000", MAX_ROOM_ID_LENGTH: "48" },
    });
  },
  async serverStop() {
    await reflector?.stop();
  },
};

/**
 * `executeServerCommand("demo-page", { action, ... })` drives a second page showing the served demo, in a browser
 * context of its own: offline mode cuts a whole context, and the test page's own channel must stay up.
 * Actions: open (room, or the whole url; `sameBrowserAs` an open page's id for a new tab of that page's browser, which
 * shares its localStorage, else a browser of its own) → id; offline (id, offline); drop (id): closes every WebSocket
 * the page has open, as a dropped connection would (Chromium's offline mode keeps them open); status (id) → text;
 * log (id) → texts; users (id) → texts; post (id, text); rename (id, text): with the "Change nickname" button, the
 * "Nickname" field and Enter; reload (id); close (id): the tab, and its browser with its last tab;
 * evaluate (id, expression) → the JSON-serializable value of a JavaScript expression evaluated in the demo page.
 * screenshot (id, name, colorScheme, width) → bytes: the page in that colour scheme and width (motion reduced), as
 * test-results/screenshots/<name>.png, which git ignores, for a person to look at.
 */
const demoPages = new Map();
let demoPagesOpened = 0;
const demoPagePlugin = {
  name: "demo-page",
  async executeCommand({ command, payload, session }) {
    if (command !== "demo-page") return undefined;
    const { action, id, room, url, offline, text, expression, sameBrowserAs } = payload;
    if (action === "open") {
      const context = sameBrowserAs !== undefined ? demoPages.get(sameBrowserAs).context() : await newDemoContext(session);
      const page = await context.newPage();
      await page.goto(url ?? `http://${reflector.host}/?room=${encodeURIComponent(room)}`);
      const pageId = String(++demoPagesOpened);
      demoPages.set(pageId, page);
      return pageId;
    }
    const page = demoPages.get(id);
    const chat = page.locator("multiuser-chat");
    if (action === "offline") {
      await page.context().setOffline(Boolean(offline));
      return true;
    }
    if (action === "drop") {
      await page.evaluate(() => window.__dropConnections());
      return true;
    }
    if (action === "status") return (await chat.getByRole("status").textContent()).trim();
    if (action === "log") return (await chat.getByRole("log").getByRole("listitem").allTextContents()).map((line) => line.replace(/\s+/g, " ").trim());
    if (action === "users")
      return (await chat.getByRole("list", { name: "Users" }).getByRole("listitem").allTextContents()).map((line) => line.replace(/\s+/g, " ").trim());
    if (action === "post") {
      await chat.getByRole("textbox", { name: "Message" }).fill(text);
      await chat.getByRole("textbox", { name: "Message" }).press("Enter");
      return true;
    }
    if (action === "rename") {
      await chat.getByRole("button", { name: "Change nickname" }).click();
      await chat.getByRole("textbox", { name: "Nickname" }).fill(text);
      await chat.getByRole("textbox", { name: "Nickname" }).press("Enter");
      return true;
    }
    if (action === "reload") {
      await page.reload();
      return true;
    }
    if (action === "evaluate") return await page.evaluate(String(expression));
    if (action === "screenshot") {
      const { name, colorScheme, width } = payload;
      await page.setViewportSize({ width, height: 800 });
      await page.emulateMedia({ colorScheme, reducedMotion: "reduce" });
      return (await page.screenshot({ path: `test-results/screenshots/${name}.png`, fullPage: true })).length;
    }
    if (action === "close") {
      demoPages.delete(id);
      const context = page.context();
      await page.close();
      if (context.pages().length === 0) await context.close();
      return true;
    }
    throw new Error(`demo-page: unknown action ${action}`);
  },
};

/** A browser context of its own for a demo page: another browser, as far as storage and the network go. */
async function newDemoContext(session) {
  const context = await session.browser.getPage(session.id).context().browser().newContext();
  // Every WebSocket the page opens is kept in a list the page cannot reach from its own code, for `drop`.
  await context.addInitScript(() => {
    const sockets = new Set();
    const Native = WebSocket;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        sockets.add(this);
        this.addEventListener("close", () => sockets.delete(this));
      }
    };
    Object.defineProperty(window, "__dropConnections", {
      value: () => {
        for (const socket of sockets) socket.close();
      },
    });
  });
  return context;
}

/** `/embed-page?html=…` answers with that page: a page on another origin than the reflector's, as a CodePen is. */
const embedPagePlugin = {
  name: "embed-page",
  serve: (context) => (context.path === "/embed-page" ? { body: String(context.query.html), type: "html" } : undefined),
};

export default {
  files: "test/browser/**/*.test.ts",
  nodeResolve: { exportConditions: ["production", "default"] },
  plugins: [reflectorPlugin, demoPagePlugin, embedPagePlugin, esbuildPlugin({ ts: true, target: "es2022" })],
  browsers: [
    playwrightLauncher({
      product: "chromium",
      launchOptions: {
        executablePath: "/usr/bin/chromium",
        headless: true,
        args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
      },
    }),
  ],
  concurrency: 1,
  testFramework: { config: { timeout: 30000 } },
  testsFinishTimeout: 300000,
  // The page learns the reflector's address before any test module runs.
  testRunnerHtml: (testFramework) => `<!doctype html>
<html><head><meta charset="utf-8"></head><body>
<script>window.REFLECTOR_HOST = ${JSON.stringify(reflector.host)};</script>
<script type="module" src="${testFramework}"></script>
</body></html>`,
  reporters: [defaultReporter(), summaryReporter(), countReporter(process.env.WTR_COUNTS_FILE ?? "test-results/browser-counts.json")],
};
