import { expect } from "@esm-bundle/chai";
import { executeServerCommand, sendKeys } from "@web/test-runner-commands";
import { sleep } from "../support/wait-for.js";
import { addChat, logTexts, messageInput, part, reflectorHost, removeAll, sendWithButton, statusOf, uniqueRoom, userTexts, waitFor } from "./helpers.js";

describe("<multiuser-chat> in Chromium against wrangler dev", () => {
  afterEach(removeAll);

  it("two elements in one room see each other's posts, the same users and the same nicknames", async () => {
    const room = uniqueRoom("pair");
    const first = await addChat({ host: reflectorHost(), room });
    const second = await addChat({ host: reflectorHost(), room });
    await waitFor(() => userTexts(first).length === 2 && userTexts(second).length === 2, "both users in both lists");

    await sendWithButton(first, "hello from the first window");
    await sendWithButton(second, "and hello from the second");
    // Delivered posts only: a post also shows as "(sending…)" in its author's log until it is in the order.
    const posted = (element: typeof first) => logTexts(element).filter((text) => text.includes("hello") && !text.endsWith("(sending…)"));
    await waitFor(() => posted(first).length === 2 && posted(second).length === 2, "both posts in both logs");

    expect(logTexts(first)).to.deep.equal(logTexts(second));
    const nicknames = (texts: string[]) => texts.map((text) => text.replace(" (you)", "")).sort();
    expect(nicknames(userTexts(first))).to.deep.equal(nicknames(userTexts(second)));
    // Each window marks itself, and only itself.
    const own = (texts: string[]) => texts.filter((text) => text.endsWith(" (you)"));
    expect(own(userTexts(first))).to.have.length(1);
    expect(own(userTexts(second))).to.have.length(1);
    expect(own(userTexts(first))[0]).not.to.equal(own(userTexts(second))[0]);
    // The post carries its author's nickname, the one the author's own list marks "(you)".
    const firstName = own(userTexts(first))[0]!.replace(" (you)", "");
    expect(posted(second)[0]).to.contain(`${firstName}: hello from the first window`);
  });

  it("posts a notice naming whoever joins or leaves", async () => {
    const room = uniqueRoom("notices");
    const stayer = await addChat({ host: reflectorHost(), room });
    const leaver = await addChat({ host: reflectorHost(), room });
    await waitFor(() => userTexts(stayer).length === 2, "the second user");
    const leaverName = userTexts(leaver)
      .find((text) => text.endsWith(" (you)"))!
      .replace(" (you)", "");
    expect(logTexts(stayer).some((text) => text.endsWith(`${leaverName} joined`))).to.equal(true);

    leaver.remove();
    await waitFor(() => userTexts(stayer).length === 1, "the leaver to leave the list");
    expect(logTexts(stayer).at(-1)).to.match(new RegExp(`${leaverName} left$`));
  });

  it("exposes the regions under their accessible roles and names", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("roles") });
    const log = part(element, '[role="log"]');
    expect(log.getAttribute("aria-label")).to.equal("Chat messages");
    expect(log.tabIndex).to.equal(0);
    expect(part(element, "ul").getAttribute("aria-label")).to.equal("Users");
    expect(messageInput(element).getAttribute("aria-label")).to.equal("Message");
    expect(part(element, '[part="button"]').textContent!.trim()).to.equal("Send");
    expect(part(element, '[part="rename-button"]').getAttribute("aria-label")).to.equal("Change nickname");
    expect(statusOf(element)).to.equal("Connected");
    expect(part(element, '[role="img"]').getAttribute("aria-label")).to.equal("QR code to join this chat");
    expect(part(element, '[role="img"] svg path').getAttribute("d")).to.match(/^M/);
  });

  it("sends on Enter and keeps the focus in the message field", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("enter") });
    messageInput(element).focus();
    await sendKeys({ type: "typed and entered" });
    await sendKeys({ press: "Enter" });
    await waitFor(() => logTexts(element).some((text) => text.endsWith("typed and entered")), "the post");
    expect(element.shadowRoot!.activeElement).to.equal(messageInput(element));
    expect(messageInput(element).value).to.equal("");
  });

  it("ignores empty posts and refuses long ones visibly, keeping the text", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("limits") });
    const before = logTexts(element).length;
    await sendWithButton(element, "    ");
    const tooLong = "x".repeat(1001);
    await sendWithButton(element, tooLong);
    const alert = part(element, '[role="alert"]');
    expect(alert.hidden).to.equal(false);
    expect(alert.textContent).to.contain("1001 characters; the limit is 1000");
    expect(messageInput(element).value).to.equal(tooLong);

    await sendWithButton(element, "x".repeat(1000));
    await waitFor(() => logTexts(element).length === before + 1, "the 1000-character post");
    expect(alert.hidden).to.equal(true);
    expect(logTexts(element).at(-1)).to.contain("x".repeat(1000));
  });

  it("renders markup in posts as text", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("markup") });
    const markup = `<img src=x onerror="window.injected=1"><b>bold</b>`;
    await sendWithButton(element, markup);
    await waitFor(() => logTexts(element).some((text) => text.endsWith(markup)), "the post");
    expect(element.shadowRoot!.querySelector('[role="log"] img, [role="log"] b')).to.equal(null);
    expect((window as unknown as { injected?: number }).injected).to.equal(undefined);
  });

  it("auto-scrolls only while the reader is at the bottom of the log", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("scroll") });
    element.style.setProperty("--multiuser-chat-height", "16rem");
    const log = part(element, '[role="log"]');
    for (let i = 0; i < 30; i++) await sendWithButton(element, `line ${i}`);
    await waitFor(() => logTexts(element).some((text) => text.endsWith("line 29")), "30 posts");
    await element.updateComplete;
    expect(log.scrollHeight).to.be.greaterThan(log.clientHeight);
    expect(log.scrollTop + log.clientHeight).to.be.closeTo(log.scrollHeight, 2);

    log.scrollTop = 0;
    await sendWithButton(element, "while reading old lines");
    await waitFor(() => logTexts(element).some((text) => text.endsWith("while reading old lines")), "the post");
    await element.updateComplete;
    expect(log.scrollTop).to.equal(0);
  });

  it("says so when the server does not take the room's name, rather than connecting for ever", async () => {
    // The test server takes names up to 48 characters (MAX_ROOM_ID_LENGTH); the element, up to 64.
    const element = await addChat({ host: reflectorHost(), room: `long-${"n".repeat(50)}` }, { connected: false });
    await waitFor(() => !part(element, '[part="error"]').hidden, "the error");
    expect(part(element, '[part="error"]').textContent).to.equal(
      "The server does not take this room name: the room id is 55 characters long; the limit is 48.",
    );
  });

  it("keeps what was typed once the session has left: post() returns false and the field keeps the text", async () => {
    const element = await addChat({ host: reflectorHost(), room: `long-${"n".repeat(50)}` }, { connected: false });
    await waitFor(() => !part(element, '[part="error"]').hidden, "the error");
    await sleep(300); // the session leaves when the socket closes, just after the refusal
    expect(element.post("nowhere to go")).to.equal(false);
    await sendWithButton(element, "typed after the server turned the room away");
    expect(messageInput(element).value).to.equal("typed after the server turned the room away");
    expect(logTexts(element)).to.deep.equal([]);
    // Nor before it joins, or when it cannot join at all.
    const detached = document.createElement("multiuser-chat");
    expect(detached.post("not connected yet")).to.equal(false);
    const badKey = await addChat({ host: reflectorHost(), room: uniqueRoom("bad-key-post"), key: "too-short" }, { connected: false });
    expect(badKey.post("no key to seal it with")).to.equal(false);
  });

  it("says offline while the browser is offline, and connected again once it is back", async () => {
    const room = uniqueRoom("offline");
    const demo = (payload: Record<string, unknown>) => executeServerCommand<unknown, Record<string, unknown>>("demo-page", payload);
    const id = (await demo({ action: "open", room })) as string;
    try {
      await waitFor(async () => (await demo({ action: "status", id })) === "Connected", "the demo page to connect");
      await demo({ action: "offline", id, offline: true });
      await waitFor(async () => (await demo({ action: "status", id })) === "Offline", "the offline status");
      await demo({ action: "offline", id, offline: false });
      await waitFor(async () => (await demo({ action: "status", id })) === "Connected", "the connected status");
      await demo({ action: "post", id, text: "back online" });
      await waitFor(async () => ((await demo({ action: "log", id })) as string[]).some((line) => line.endsWith("back online")), "the post");
    } finally {
      await demo({ action: "close", id });
    }
  });
});
