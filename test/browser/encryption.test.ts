import { expect } from "@esm-bundle/chai";
import { newRoomSecret } from "../../component/room-key.js";
import { addChat, alertTexts, demo, logTexts, part, reflectorHost, removeAll, sendWithButton, uniqueRoom, waitFor } from "./helpers.js";

/** What the demo page's element shows in its alerts, and its users. */
const demoAlerts = (id: string) =>
  demo({
    action: "evaluate",
    id,
    expression: `[...document.querySelector("multiuser-chat").shadowRoot.querySelectorAll('[role="alert"]:not([hidden])')].map((alert) => alert.textContent.trim())`,
  }) as Promise<string[]>;

describe("encryption in Chromium", () => {
  const errors: unknown[] = [];
  const onError = (event: ErrorEvent | PromiseRejectionEvent) => errors.push("reason" in event ? event.reason : event.error);
  beforeEach(() => {
    errors.length = 0;
    window.addEventListener("error", onError);
    window.addEventListener("unhandledrejection", onError);
  });
  afterEach(() => {
    window.removeEventListener("error", onError);
    window.removeEventListener("unhandledrejection", onError);
    removeAll();
  });

  it("a link with another key leads to a room of its own, which says that nobody has used the link; the others go on undisturbed", async () => {
    const room = uniqueRoom("wrong-key");
    const key = newRoomSecret();
    const [first, second] = [await addChat({ host: reflectorHost(), room, key }), await addChat({ host: reflectorHost(), room, key })];
    await sendWithButton(first, "for holders of the link");
    await waitFor(() => logTexts(second).some((line) => line.endsWith("for holders of the link")), "the post");

    // A link whose key was mistyped: base64url still, but another key, so another room. (Not in the last character,
    // whose low bits are padding: there, a change may leave the key as it was.)
    const mistyped = `${key.startsWith("A") ? "B" : "A"}${key.slice(1)}`;
    const page = (await demo({ action: "open", url: `http://${reflectorHost()}/?room=${room}#key=${mistyped}` })) as string;
    try {
      await waitFor(async () => (await demo({ action: "status", id: page })) === "Connected", "the page to connect");
      await waitFor(async () => (await demoAlerts(page)).some((text) => text.startsWith("Nobody has been in this chat with this link before.")), "the notice");
      expect(((await demo({ action: "log", id: page })) as string[]).some((line) => line.includes("for holders of the link"))).to.equal(false);
      // The same link with the right key says nothing of the kind.
      const right = (await demo({ action: "open", url: `http://${reflectorHost()}/?room=${room}#key=${key}` })) as string;
      await waitFor(
        async () => ((await demo({ action: "log", id: right })) as string[]).some((line) => line.endsWith("for holders of the link")),
        "the history at the right link",
      );
      expect(await demoAlerts(right)).to.deep.equal([]);
      await demo({ action: "close", id: right });
    } finally {
      await demo({ action: "close", id: page });
    }

    await sendWithButton(second, "still fine");
    for (const element of [first, second]) {
      await waitFor(() => logTexts(element).some((line) => line.endsWith("still fine")), "the next post");
      expect(alertTexts(element)).to.deep.equal([]);
      // The page with the right key was closed: as a page that may be reloaded, it leaves within RELOAD_GRACE_MS.
      await waitFor(() => element.users.length === 2, "the closed page to leave");
    }
    expect(errors).to.deep.equal([]);
  });

  it("a key that is not a valid secret is refused with a message instead of an exception", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("bad-key"), key: "too-short" }, { connected: false });
    await waitFor(() => alertTexts(element).length > 0, "the message");
    expect(alertTexts(element)[0]).to.match(/^This link's key is not valid: .*at least 128 bits/);
    expect(part(element, '[role="log"]')).to.exist;
    expect(errors).to.deep.equal([]);
  });
});
