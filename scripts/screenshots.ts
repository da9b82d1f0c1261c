/**
 * An artifact of `npm test`, not a test: the demo page in light and dark schemes, wide and narrow (offline, with a
 * post on its way, and with the QR code unfolded), written to test-results/screenshots/ for a person to look at.
 * Two browsers of one Chromium chat in one room against a real `wrangler dev`. Run: node --import tsx scripts/screenshots.ts
 */
import { mkdir } from "node:fs/promises";
import { chromium, type Page } from "playwright";
import { startReflector } from "../test/support/reflector-server.js";
import { waitFor } from "../test/support/wait-for.js";

const DIR = "test-results/screenshots";
const server = await startReflector();
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  await mkdir(DIR, { recursive: true });
  const room = `screenshot-${crypto.randomUUID().slice(0, 8)}`;
  const open = async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`http://${server.host}/?room=${room}`);
    await waitFor(async () => (await chat(page).getByRole("status").textContent())?.trim() === "Connected", "the demo page to connect");
    return page;
  };
  const chat = (page: Page) => page.locator("multiuser-chat");
  const post = async (page: Page, text: string) => {
    await chat(page).getByRole("textbox", { name: "Message" }).fill(text);
    await chat(page).getByRole("textbox", { name: "Message" }).press("Enter");
  };
  const [shown, friend] = [await open(), await open()];
  await post(friend, "/nick Ada");
  await post(friend, "Hi! Is this the chat from the blog post?");
  await post(shown, "It is. Scan the QR code to join from your phone.");
  await post(friend, "Done, I'm on my phone now 📱");
  await waitFor(async () => (await chat(shown).getByRole("log").textContent())?.includes("📱") === true, "the conversation");
  const shoot = async (name: string, colorScheme: "light" | "dark", width: number) => {
    await shown.setViewportSize({ width, height: 800 });
    await shown.emulateMedia({ colorScheme, reducedMotion: "reduce" });
    await shown.screenshot({ path: `${DIR}/${name}.png`, fullPage: true });
  };
  await shoot("demo-light", "light", 1000);
  await shoot("demo-dark", "dark", 1000);
  await shown.context().setOffline(true);
  await waitFor(async () => (await chat(shown).getByRole("status").textContent())?.trim() === "Offline", "the offline status");
  await post(shown, "(typed in a tunnel)");
  await shoot("demo-narrow-offline-light", "light", 400);
  await shoot("demo-narrow-offline-dark", "dark", 400);
  await chat(shown).getByRole("button", { name: "QR code" }).click();
  await shoot("demo-narrow-offline-qr-light", "light", 400);
  console.log(`screenshots: 5 written to ${DIR}/`);
} finally {
  await browser.close();
  await server.stop();
}
