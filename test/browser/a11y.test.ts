import { expect } from "@esm-bundle/chai";
import { emulateMedia, sendKeys } from "@web/test-runner-commands";
import type { MultiuserChat } from "../../component/multiuser-chat/multiuser-chat.js";
import { axeViolations, chatViolations, elementViolations, loadAxe } from "../support/axe.js";
import { addChat, demo, logTexts, messageInput, part, reflectorHost, removeAll, sendWithButton, uniqueRoom, waitFor } from "./helpers.js";

// Tests compare descriptions of elements, not elements: the runner cannot report a failed assertion about a DOM node.
const focused = (element: MultiuserChat) => element.shadowRoot!.activeElement as HTMLElement | null;
const describeFocus = (element: MultiuserChat) => {
  const active = focused(element);
  return active === null
    ? `outside (${document.activeElement?.id || document.activeElement?.localName})`
    : `${active.localName}[part=${active.getAttribute("part")}]`;
};
const settled = async (element: MultiuserChat) => {
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  await element.updateComplete;
};

/** Buttons around the element, so that Tab order into and out of it can be seen. */
function surround(element: MultiuserChat) {
  const before = Object.assign(document.createElement("button"), { id: "before", textContent: "before" });
  const after = Object.assign(document.createElement("button"), { id: "after", textContent: "after" });
  element.before(before);
  element.after(after);
  return { before, after };
}

describe("<multiuser-chat> accessibility", () => {
  afterEach(async () => {
    removeAll();
    for (const button of document.querySelectorAll("#before, #after")) button.remove();
    await emulateMedia({ colorScheme: "light" });
  });

  it("axe finds no violations while connecting, connected with nothing said, and with history", async () => {
    const room = uniqueRoom("axe");
    const element = await addChat({ host: reflectorHost(), room }, { connected: false });
    expect(await chatViolations(element), "connecting").to.deep.equal([]);
    await waitFor(() => element.status === "connected", "the connection");
    expect(await chatViolations(element), "empty").to.deep.equal([]);

    const other = await addChat({ host: reflectorHost(), room });
    await sendWithButton(other, "hello from the other window");
    for (let i = 0; i < 20; i++) await sendWithButton(element, `history line ${i} with a link-like text https://example.com/${i}`);
    await waitFor(
      () => logTexts(element).some((line) => line.endsWith("/19")) && logTexts(element).every((line) => !line.endsWith("(sending…)")),
      "the history",
    );
    await sendWithButton(element, "z".repeat(1001)); // the refusal alert shows too
    expect(part(element, '[part="error"]').hidden).to.equal(false);
    expect(await chatViolations(element), "with history, light").to.deep.equal([]);
    await emulateMedia({ colorScheme: "dark" });
    expect(await chatViolations(element), "with history, dark").to.deep.equal([]);
  });

  it("axe finds no violations in the narrow layout, with the QR code folded and unfolded, in both schemes", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("axe-narrow"), style: "width: 360px" });
    await sendWithButton(element, "narrow");
    await waitFor(() => logTexts(element).some((line) => line.endsWith("narrow")), "the post");
    await settled(element);
    const button = part<HTMLButtonElement>(element, '[part="qr-button"]');
    for (const colorScheme of ["light", "dark"] as const) {
      await emulateMedia({ colorScheme });
      expect(await chatViolations(element), `${colorScheme}, folded`).to.deep.equal([]);
      button.click();
      await settled(element);
      expect(button.getAttribute("aria-expanded")).to.equal("true");
      expect(await chatViolations(element), `${colorScheme}, unfolded`).to.deep.equal([]);
      button.click();
      await settled(element);
    }
  });

  it("axe finds no violations on a page that is offline, with a post waiting to be sent", async () => {
    const room = uniqueRoom("axe-offline");
    const id = (await demo({ action: "open", room })) as string;
    try {
      await waitFor(async () => (await demo({ action: "status", id })) === "Connected", "the demo page to connect");
      await demo({ action: "evaluate", id, expression: loadAxe }); // while the page can still fetch it
      await demo({ action: "offline", id, offline: true });
      await waitFor(async () => (await demo({ action: "status", id })) === "Offline", "the offline status");
      await demo({ action: "post", id, text: "waiting for the network" });
      await waitFor(async () => ((await demo({ action: "log", id })) as string[]).some((line) => line.endsWith("(sending…)")), "the pending post");
      expect(await demo({ action: "evaluate", id, expression: elementViolations })).to.deep.equal([]);
    } finally {
      await demo({ action: "close", id });
    }
  });

  it("axe finds no violations on the whole demo page as a visitor gets it, page-level rules included", async () => {
    const id = (await demo({ action: "open", room: uniqueRoom("axe-demo") })) as string;
    try {
      await waitFor(async () => (await demo({ action: "status", id })) === "Connected", "the demo page to connect");
      await demo({ action: "post", id, text: "hello from the demo page" });
      await waitFor(async () => ((await demo({ action: "log", id })) as string[]).some((line) => line.endsWith(": hello from the demo page")), "the post");
      expect(await demo({ action: "evaluate", id, expression: axeViolations("[document]") })).to.deep.equal([]);
    } finally {
      await demo({ action: "close", id });
    }
  });

  it("works with the keyboard alone: Tab order, Enter sends, focus stays in the field", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("keyboard") });
    const { before } = surround(element);
    before.focus();
    const order: string[] = [];
    for (let i = 0; i < 6; i++) {
      await sendKeys({ press: "Tab" });
      order.push(describeFocus(element));
    }
    expect(order).to.deep.equal(["div[part=log]", "button[part=rename-button]", "a[part=null]", "input[part=input]", "button[part=button]", "outside (after)"]);

    await sendKeys({ press: "Shift+Tab" });
    await sendKeys({ press: "Shift+Tab" });
    expect(describeFocus(element)).to.equal("input[part=input]");
    await sendKeys({ type: "sent with Enter" });
    await sendKeys({ press: "Enter" });
    await waitFor(() => logTexts(element).some((line) => line.endsWith("sent with Enter")), "the post");
    expect(describeFocus(element)).to.equal("input[part=input]");
    expect(messageInput(element).value).to.equal("");

    // The log scrolls with the keyboard.
    for (let i = 0; i < 30; i++) await sendWithButton(element, `line ${i}`);
    await waitFor(() => logTexts(element).some((line) => line.endsWith("line 29")), "30 posts");
    await settled(element);
    const log = part(element, '[part="log"]');
    expect(log.scrollTop).to.be.greaterThan(0);
    log.focus();
    await sendKeys({ press: "Home" });
    await waitFor(() => log.scrollTop === 0, "the log to scroll to the top");
  });

  it("in the narrow layout, the QR button opens the code with Enter or Space, and Escape closes it and returns focus", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("keyboard-narrow"), style: "width: 400px" });
    await settled(element);
    const { before } = surround(element);
    before.focus();
    // The log, the button that renames the reader, then the QR code's.
    for (let i = 0; i < 3; i++) await sendKeys({ press: "Tab" });
    const button = part<HTMLButtonElement>(element, '[part="qr-button"]');
    expect(describeFocus(element)).to.equal("button[part=qr-button]");
    const qr = part(element, '[part="qr"]');

    await sendKeys({ press: "Enter" });
    await settled(element);
    expect(button.getAttribute("aria-expanded")).to.equal("true");
    expect(qr.hidden).to.equal(false);
    await sendKeys({ press: "Tab" });
    expect(describeFocus(element), "the join link follows its button").to.equal("a[part=null]");
    await sendKeys({ press: "Escape" });
    await settled(element);
    expect(qr.hidden).to.equal(true);
    expect(button.getAttribute("aria-expanded")).to.equal("false");
    expect(describeFocus(element)).to.equal("button[part=qr-button]");

    await sendKeys({ press: "Space" });
    await settled(element);
    expect(qr.hidden).to.equal(false);
    await sendKeys({ press: "Escape" });
    await settled(element);
    expect(qr.hidden).to.equal(true);
    expect(describeFocus(element)).to.equal("button[part=qr-button]");

    // Folded, the code is out of the Tab order: next comes the field.
    await sendKeys({ press: "Tab" });
    expect(describeFocus(element)).to.equal("input[part=input]");
    // Escape elsewhere changes nothing.
    await sendKeys({ press: "Escape" });
    expect(describeFocus(element)).to.equal("input[part=input]");
  });
});
