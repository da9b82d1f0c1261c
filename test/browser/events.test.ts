import { expect } from "@esm-bundle/chai";
import { executeServerCommand } from "@web/test-runner-commands";
import { CHAT_SCOPE, ChatModel } from "../../component/chat-model.js";
import type { MultiuserChat } from "../../component/multiuser-chat/multiuser-chat.js";
import { Session } from "../../component/session.js";
import { addChat, logTexts, reflectorHost, removeAll, uniqueRoom, waitFor } from "./helpers.js";

const EVENTS = ["multiuser-chat-message", "multiuser-chat-user-enter", "multiuser-chat-user-exit", "multiuser-chat-status"];
const demo = (payload: Record<string, unknown>) => executeServerCommand<unknown, Record<string, unknown>>("demo-page", payload);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every element event that reaches the document, in order: they bubble out of wherever the element is. */
function recordEvents() {
  const seen: { type: string; detail: Record<string, unknown>; event: CustomEvent }[] = [];
  const record = (event: Event) =>
    seen.push({ type: event.type.replace("multiuser-chat-", ""), detail: (event as CustomEvent).detail, event: event as CustomEvent });
  for (const type of EVENTS) document.addEventListener(type, record);
  return {
    seen,
    of: (type: string) => seen.filter((entry) => entry.type === type).map((entry) => entry.detail),
    stop: () => {
      for (const type of EVENTS) document.removeEventListener(type, record);
    },
  };
}

async function joinSession(room: string) {
  const session = Session.join({ host: reflectorHost(), room, model: ChatModel });
  await session.whenReady();
  return session;
}

describe("<multiuser-chat> events and API", () => {
  let events: ReturnType<typeof recordEvents>;
  const sessions: Session[] = [];
  beforeEach(() => (events = recordEvents()));
  afterEach(() => {
    events.stop();
    removeAll();
    for (const session of sessions.splice(0)) session.leave();
  });

  it("fires a bubbling, composed message event for each live post, not for the history there at join", async () => {
    const room = uniqueRoom("events-posts");
    const sender = await joinSession(room);
    sessions.push(sender);
    for (let i = 0; i < 3; i++) sender.publish(CHAT_SCOPE, "post", { text: `before join ${i}` });
    await waitFor(() => (sender.model as ChatModel).history.some((entry) => entry.text === "before join 2"), "the early posts");

    const element = await addChat({ host: reflectorHost(), room });
    await waitFor(() => logTexts(element).some((line) => line.endsWith("before join 2")), "the history in the log");
    await pause(300);
    expect(events.of("message"), "history replayed at join").to.deep.equal([]);

    sender.publish(CHAT_SCOPE, "post", { text: "live from the sender" });
    await waitFor(() => events.of("message").length === 1, "the live post's event");
    const [{ event, detail }] = events.seen.filter((entry) => entry.type === "message");
    expect(event.bubbles).to.equal(true);
    expect(event.composed).to.equal(true);
    expect(event.target === element, "the element is the event's target").to.equal(true);
    const senderName = (sender.model as ChatModel).nicknameOf(sender.clientId!);
    expect(detail).to.include({ kind: "post", text: "live from the sender", nickname: senderName, author: sender.clientId, own: false });
    expect(detail.n).to.be.a("number");
    expect(detail.time).to.be.closeTo(Date.now(), 60_000);
    expect(Object.isFrozen(detail)).to.equal(true);

    expect(element.post("  and from the element  ")).to.equal(true);
    await waitFor(() => events.of("message").length === 2, "the element's own post's event");
    expect(events.of("message")[1]).to.include({ text: "and from the element", own: true, nickname: element.users.find((user) => user.own)!.nickname });

    // Renders and other updates (a join, a leave, ticks) fire nothing more: each post fires once.
    const other = await joinSession(room);
    other.leave();
    for (let i = 0; i < 5; i++) sender.publish(CHAT_SCOPE, "post", { text: `burst ${i}` });
    await waitFor(() => events.of("message").length >= 7, "the burst's events");
    await pause(500);
    expect(events.of("message").map((detail) => detail.text)).to.deep.equal([
      "live from the sender",
      "and from the element",
      ...[0, 1, 2, 3, 4].map((i) => `burst ${i}`),
    ]);
    const numbers = events.of("message").map((detail) => detail.n as number);
    expect([...numbers].sort((a, b) => a - b)).to.deep.equal(numbers);
  });

  it("fires user-enter and user-exit for users who come and go after the join, with the nickname the list shows", async () => {
    const room = uniqueRoom("events-users");
    const early = await joinSession(room);
    sessions.push(early);
    const element = await addChat({ host: reflectorHost(), room });
    await waitFor(() => element.users.length === 2, "both users");
    await pause(300);
    expect(events.of("user-enter"), "users there at join").to.deep.equal([]);

    const late = await joinSession(room);
    await waitFor(() => events.of("user-enter").length === 1, "the user-enter event");
    const lateUser = (late.model as ChatModel).users.find((user) => user.id === late.clientId)!;
    const lateName = lateUser.nickname;
    expect(events.of("user-enter")[0]).to.deep.equal({ id: late.clientId, nickname: lateName, colour: lateUser.colour, own: false });
    expect(element.users.map((user) => user.nickname)).to.include(lateName);

    const earlyName = (early.model as ChatModel).nicknameOf(early.clientId!);
    late.leave();
    early.leave();
    await waitFor(() => events.of("user-exit").length === 2, "two user-exit events");
    expect(events.of("user-exit").map((detail) => detail.nickname)).to.have.members([lateName, earlyName]);
    expect(events.of("user-enter")).to.have.length(1);
    expect(element.users.map((user) => user.own)).to.deep.equal([true]);
  });

  it("fires status events as the connection comes, goes and comes back, and what was missed meanwhile once", async () => {
    const room = uniqueRoom("events-status");
    const element = document.createElement("multiuser-chat");
    element.setAttribute("host", reflectorHost());
    element.setAttribute("room", room);
    document.body.append(element);
    await waitFor(() => events.of("status").length > 0, "a status event");
    expect(events.of("status")[0]).to.deep.equal({ status: "connected" });
    expect(element.status).to.equal("connected");

    // A real disconnection, in a page of its own: it records its element's events.
    const id = (await demo({ action: "open", room })) as string;
    try {
      await waitFor(async () => (await demo({ action: "status", id })) === "Connected", "the demo page to connect");
      await demo({
        action: "evaluate",
        id,
        expression: `(window.heard = [], ${JSON.stringify(EVENTS)}.forEach((type) => document.addEventListener(type, (event) => window.heard.push([type.slice(15), event.detail.status ?? event.detail.text]))), true)`,
      });
      const heard = async () => (await demo({ action: "evaluate", id, expression: "window.heard" })) as [string, string][];
      await demo({ action: "offline", id, offline: true });
      await waitFor(async () => (await demo({ action: "status", id })) === "Offline", "the offline status");
      // Chromium's offline mode holds an open WebSocket and delivers what it buffered once back online; a real drop
      // closes it. Close it, so that the page gets what it missed as a reconnection does: in the welcome's catch-up.
      await demo({ action: "drop", id });
      await (element as MultiuserChat).updateComplete;
      (element as MultiuserChat).post("said while the other page was offline");
      await pause(500);
      expect((await heard()).filter(([type]) => type === "message")).to.deep.equal([]);
      await demo({ action: "offline", id, offline: false });
      await waitFor(
        async () => (await heard()).some(([type, value]) => type === "message" && value === "said while the other page was offline"),
        "the missed post's event",
      );
      await pause(500);
      const after = await heard();
      expect(after.filter(([type]) => type === "message")).to.deep.equal([["message", "said while the other page was offline"]]);
      const statuses = after.filter(([type]) => type === "status").map(([, status]) => status);
      expect(statuses[0]).to.equal("offline");
      expect(statuses.at(-1)).to.equal("connected");
      expect(
        after.filter(([type]) => type.startsWith("user")),
        "a short disconnection is no leave and join",
      ).to.deep.equal([]);
    } finally {
      await demo({ action: "close", id });
    }
  });

  it("post() validates as the form does, and users and history are read-only copies", async () => {
    const room = uniqueRoom("api");
    const element = await addChat({ host: reflectorHost(), room });
    expect(element.post("   ")).to.equal(false);
    expect(() => element.post("y".repeat(1001))).to.throw(RangeError, "This message has 1001 characters; the limit is 1000");
    expect(element.post("/reset")).to.equal(true);
    await waitFor(() => element.history.some((entry) => entry.text.endsWith(" reset the history")), "the reset notice");
    expect(element.post("first")).to.equal(true);
    await waitFor(() => element.history.at(-1)?.text === "first", "the post in history");
    expect(element.history.map((entry) => entry.kind)).to.deep.equal(["notice", "post"]);
    expect(element.history.at(-1)).to.include({ own: true, kind: "post" });
    expect(logTexts(element).some((line) => line.includes("y".repeat(1001)))).to.equal(false);

    const { history, users } = element;
    expect(Object.isFrozen(history) && Object.isFrozen(users) && Object.isFrozen(history[0]) && Object.isFrozen(users[0])).to.equal(true);
    expect(() => (history as unknown as unknown[]).push({})).to.throw(TypeError);
    expect(() => ((users[0] as { nickname: string }).nickname = "Mallory")).to.throw(TypeError);
    expect(() => ((history[1] as { text: string }).text = "forged")).to.throw(TypeError);
    // Copies: the model behind them is untouched, and a new read is a new copy.
    expect(element.model!.users[0]!.nickname).not.to.equal("Mallory");
    expect(element.model!.history.at(-1)!.text).to.equal("first");
    expect(element.history).not.to.equal(history);
    const { id, nickname, colour } = element.model!.users[0]!;
    expect(users).to.deep.equal([{ id, nickname, colour, own: true }]);
  });
});
