import { expect } from "@esm-bundle/chai";
import { executeServerCommand } from "@web/test-runner-commands";
import { addChat, logTexts, reflectorHost, removeAll, sendWithButton, uniqueRoom, waitFor } from "./helpers.js";

const demo = (payload: Record<string, unknown>) => executeServerCommand<unknown, Record<string, unknown>>("demo-page", payload);

describe("screenshots of the demo", () => {
  afterEach(removeAll);

  it("writes the demo in light and dark schemes, wide and narrow (offline), to test-results/screenshots/ for a person to look at", async () => {
    const room = uniqueRoom("screenshot");
    const id = (await demo({ action: "open", room })) as string;
    try {
      await waitFor(async () => (await demo({ action: "status", id })) === "Connected", "the demo page to connect");
      const friend = await addChat({ host: reflectorHost(), room });
      await sendWithButton(friend, "Hi! Is this the chat from the blog post?");
      await demo({ action: "post", id, text: "It is. Scan the QR code to join from your phone." });
      await sendWithButton(friend, "Done, I'm on my phone now 📱");
      await waitFor(async () => ((await demo({ action: "log", id })) as string[]).some((line) => line.endsWith("📱")), "the conversation on the demo page");
      await waitFor(() => logTexts(friend).some((line) => line.endsWith("phone.")), "the conversation on the test page");
      const shoot = async (name: string, colorScheme: string, width: number) => {
        const bytes = (await demo({ action: "screenshot", id, name, colorScheme, width })) as number;
        expect(bytes, name).to.be.greaterThan(10_000);
      };
      await shoot("demo-light", "light", 1000);
      await shoot("demo-dark", "dark", 1000);
      // Narrow, offline, with a post still on its way, to show how those look.
      await demo({ action: "offline", id, offline: true });
      await waitFor(async () => (await demo({ action: "status", id })) === "Offline", "the offline status");
      await demo({ action: "post", id, text: "(typed in a tunnel)" });
      await shoot("demo-narrow-offline-light", "light", 400);
      await shoot("demo-narrow-offline-dark", "dark", 400);
      await demo({ action: "evaluate", id, expression: `document.querySelector("multiuser-chat").shadowRoot.querySelector("[part=qr-button]").click(), true` });
      await shoot("demo-narrow-offline-qr-light", "light", 400);
    } finally {
      await demo({ action: "close", id });
    }
  });
});
