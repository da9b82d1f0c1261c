import { expect } from "@esm-bundle/chai";
import { newRoomSecret } from "../../component/room-key.js";
import { addChat, logTexts, part, reflectorHost, removeAll, sendWithButton, uniqueRoom, waitFor } from "./helpers.js";

const alertTexts = (element: HTMLElement) => [...element.shadowRoot!.querySelectorAll('[role="alert"]:not([hidden])')].map((alert) => alert.textContent!.trim());

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

  it("a window with the wrong key says so, and the others go on undisturbed", async () => {
    const room = uniqueRoom("wrong-key");
    const key = newRoomSecret();
    const [first, second] = [await addChat({ host: reflectorHost(), room, key }), await addChat({ host: reflectorHost(), room, key })];
    await sendWithButton(first, "for holders of the link");
    await waitFor(() => logTexts(second).some((line) => line.endsWith("for holders of the link")), "the post");

    const intruder = await addChat({ host: reflectorHost(), room, key: newRoomSecret() }, { connected: false });
    await waitFor(() => alertTexts(intruder).some((text) => text.startsWith("This link's key does not match the room.")), "the mismatch message");
    expect(logTexts(intruder).some((line) => line.includes("for holders of the link"))).to.equal(false);

    await sendWithButton(second, "still fine");
    for (const element of [first, second]) {
      await waitFor(() => logTexts(element).some((line) => line.endsWith("still fine")), "the next post");
      expect(alertTexts(element)).to.deep.equal([]);
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
