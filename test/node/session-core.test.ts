/**
 * The session core frame by frame, without a server or a socket: frames are handed in as the reflector would send
 * them, the frames it sends are read back, and a clock and timers are moved by hand. The room key is the real one
 * (WebCrypto), so what goes out is sealed exactly as a reflector relays it.
 */
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { sha256Hex, verifyMember } from "../../common/crypto.js";
import { PROTOCOL_VERSION, type ClientFrame, type ReflectedEvent, type ServerFrame, type Welcome } from "../../common/protocol.js";
import { CHAT_SCOPE, ChatModel } from "../../component/chat-model.js";
import { newRoomSecret, RoomKey } from "../../component/room-key.js";
import { encodeModelEvent, Replica, type ModelClass } from "../../component/runtime.js";
import { SessionCore, type CoreNotice } from "../../component/session-core.js";
import { TimerChatModel } from "../support/timer-model.js";
import { waitFor } from "../support/wait-for.js";

const ROOM = "core";
const START = 1_000_000;
let key: RoomKey;
let otherKey: RoomKey;

before(async () => {
  const secret = newRoomSecret();
  [key, otherKey] = await Promise.all([RoomKey.derive(ROOM, secret), RoomKey.derive(ROOM, newRoomSecret())]);
});

/** A core with a hand-moved clock and timers, recording what it sends and tells. */
class Harness {
  readonly sent: ClientFrame[] = [];
  readonly notices: CoreNotice[] = [];
  now = START;
  readonly #timers: { at: number; callback: () => void }[] = [];
  readonly core: SessionCore;

  constructor(roomKey = key, model: ModelClass = ChatModel, modelOptions?: unknown) {
    this.core = new SessionCore({
      room: ROOM,
      key: Promise.resolve(roomKey),
      model,
      modelOptions,
      clock: () => this.now,
      setTimer: (ms, callback) => this.#timers.push({ at: this.now + ms, callback }),
      send: (text) => this.sent.push(JSON.parse(text) as ClientFrame),
      notify: (notice) => this.notices.push(notice),
    });
  }

  /** Hands in `frames` as one message (a batch when more than one) and waits until they are handled. */
  async receive(...frames: ServerFrame[]): Promise<void> {
    await this.core.receive(JSON.stringify(frames.length === 1 ? frames[0] : frames));
  }

  /** Moves the clock and runs the timers that fall due, then waits for what they queued. */
  async advance(ms: number): Promise<void> {
    this.now += ms;
    for (const timer of this.#timers.filter(({ at }) => at <= this.now)) {
      this.#timers.splice(this.#timers.indexOf(timer), 1);
      timer.callback();
    }
    await this.core.receive("[]");
  }

  ofType<T extends ClientFrame["type"]>(type: T): Extract<ClientFrame, { type: T }>[] {
    return this.sent.filter((frame): frame is Extract<ClientFrame, { type: T }> => frame.type === type);
  }

  /** What the client sent since the last call, as types. */
  drain(): ClientFrame[] {
    return this.sent.splice(0);
  }

  get chat(): ChatModel {
    return this.core.replica!.root as ChatModel;
  }
}

function welcome(fields: Partial<Welcome> = {}): Welcome {
  return {
    type: "welcome",
    version: PROTOCOL_VERSION,
    client: "me",
    secret: "my-secret",
    resumed: false,
    acked: 0,
    time: START,
    heartbeat: 20_000,
    rate: null,
    budget: null,
    writeInterval: 1000,
    snapshot: null,
    from: 0,
    last: 0,
    ...fields,
  };
}

const enter = (seq: number, client: string): ReflectedEvent => ({ type: "user-enter", seq, time: START + seq, client });
/** A post as the reflector relays it: sealed by `client` for its post `id`. */
async function post(seq: number, client: string, id: number, text: string, sealer = key): Promise<ReflectedEvent> {
  return { type: "message", seq, time: START + seq, client, id, payload: await sealer.sealPost(encodeModelEvent(CHAT_SCOPE, "post", { text }), client, id) };
}
/** The text of a post frame the client sent, opened as the reflector's other clients would. */
async function opened(frame: Extract<ClientFrame, { type: "publish" }>, client = "me"): Promise<string> {
  return (JSON.parse(await key.openPost(frame.payload, client, frame.id)) as { data: { text: string } }).data.text;
}
const postTexts = (harness: Harness) => harness.chat.history.filter((entry) => entry.kind === "post").map((entry) => entry.text);

/** A core welcomed as client `me` into a room where only it has entered (seq 1). */
async function joined(fields: Partial<Welcome> = {}): Promise<Harness> {
  const harness = new Harness();
  await harness.receive({ type: "challenge", nonce: "n1" });
  await harness.receive(welcome({ last: 1, ...fields }), enter(1, "me"));
  harness.drain();
  return harness;
}

describe("session core", () => {
  test("answers each connection's challenge with a hello signed by the room's key, and resumes with its id and secret", async () => {
    const harness = new Harness();
    await harness.receive({ type: "challenge", nonce: "nonce-1" });
    const [hello] = harness.drain() as Extract<ClientFrame, { type: "hello" }>[];
    assert.equal(hello!.type, "hello");
    assert.equal(hello!.key, key.publicKey);
    assert.equal(await verifyMember(key.address, "nonce-1", hello!.key, hello!.proof), true);
    assert.equal(hello!.resume, undefined, "a first connection does not resume");

    await harness.receive(welcome({ last: 1 }), enter(1, "me"));
    assert.deepEqual(
      harness.notices.map((notice) => notice.type),
      ["pending", "welcome"],
    );
    await harness.core.disconnected();
    await harness.receive({ type: "challenge", nonce: "nonce-2" });
    const again = harness.ofType("hello").at(-1)!;
    assert.deepEqual(again.resume, { client: "me", secret: "my-secret", seq: 1 });
    assert.equal(await verifyMember(key.address, "nonce-2", again.key, again.proof), true);
  });

  test("acknowledges every mark at once, during catch-up too", async () => {
    const harness = new Harness();
    await harness.receive({ type: "challenge", nonce: "n" });
    await harness.receive(welcome({ last: 2 }), { type: "mark", id: "m1" }, enter(1, "a"));
    assert.deepEqual(harness.ofType("ack"), [{ type: "ack", mark: "m1", t: 0 }]);
    assert.equal(harness.core.welcome, undefined, "still catching up");
  });

  test("catches up from nothing, then sends what was published before the welcome, numbered from 1", async () => {
    const harness = new Harness();
    harness.core.publish(CHAT_SCOPE, "post", { text: "typed early" });
    harness.core.publish(CHAT_SCOPE, "post", { text: "and again" });
    assert.equal(harness.sent.length, 0, "nothing goes out before a welcome");
    assert.deepEqual(
      harness.core.pending.map((pending) => pending.id),
      [1, 2],
    );
    await harness.receive({ type: "challenge", nonce: "n" });
    await harness.receive(welcome({ last: 2 }), enter(1, "a"), enter(2, "me"));
    assert.equal(harness.core.replica!.seq, 2);
    assert.equal(harness.chat.users.length, 2);
    const publishes = harness.ofType("publish");
    assert.deepEqual(
      publishes.map((frame) => frame.id),
      [1, 2],
    );
    assert.deepEqual(await Promise.all(publishes.map((frame) => opened(frame))), ["typed early", "and again"]);
  });

  test("a post reaches the order exactly once across reconnections: what the room has is not sent again", async () => {
    const harness = await joined();
    for (const text of ["one", "two", "three"]) harness.core.publish(CHAT_SCOPE, "post", { text });
    await harness.advance(0);
    assert.deepEqual(
      harness.ofType("publish").map((frame) => frame.id),
      [1, 2, 3],
    );
    await harness.receive(await post(2, "me", 1, "one"));
    assert.deepEqual(
      harness.core.pending.map((pending) => pending.id),
      [2, 3],
      "the echo acknowledges post 1",
    );

    // The connection drops; the room ordered post 2 meanwhile, which the welcome's `acked` says.
    await harness.core.disconnected();
    harness.drain();
    await harness.receive({ type: "challenge", nonce: "n2" });
    await harness.receive(welcome({ resumed: true, acked: 2, from: 2, last: 3 }), await post(3, "me", 2, "two"));
    assert.deepEqual(
      harness.ofType("publish").map((frame) => frame.id),
      [3],
      "only post 3 goes out again",
    );
    assert.deepEqual(postTexts(harness), ["one", "two"]);
  });

  test("the views hear of what a resumed replica missed, after the welcome; what a new replica caught up on is no news", async () => {
    const harness = await joined();
    assert.deepEqual(
      harness.notices.map((notice) => notice.type),
      ["pending", "welcome"],
      "the room as it was at join is no news",
    );
    await harness.core.disconnected();
    await harness.receive({ type: "challenge", nonce: "n2" });
    harness.notices.length = 0;
    await harness.receive(welcome({ resumed: true, from: 1, last: 3 }), enter(2, "a"), await post(3, "a", 1, "said while you were away"));
    assert.deepEqual(
      harness.notices.map((notice) => notice.type),
      ["pending", "welcome", "update"],
    );
    // The notifications a replica gives that sees the same events live.
    const live = Replica.create(ROOM, key.seed, ChatModel);
    live.apply(enter(1, "me"));
    live.takeViewEvents();
    live.apply(enter(2, "a"));
    live.apply({
      type: "message",
      seq: 3,
      time: START + 3,
      client: "a",
      id: 1,
      payload: encodeModelEvent(CHAT_SCOPE, "post", { text: "said while you were away" }),
    });
    assert.deepEqual((harness.notices.at(-1) as Extract<CoreNotice, { type: "update" }>).events, live.takeViewEvents());

    const fresh = new Harness();
    await fresh.receive({ type: "challenge", nonce: "n" });
    await fresh.receive(welcome({ last: 3 }), enter(1, "a"), await post(2, "a", 1, "before you came"), enter(3, "me"));
    assert.deepEqual(
      fresh.notices.map((notice) => notice.type),
      ["pending", "welcome"],
      "a new replica's past is no news",
    );
  });

  test("posts the room ordered but lost in a crash go out again, ahead of the newer ones", async () => {
    const harness = await joined();
    harness.core.publish(CHAT_SCOPE, "post", { text: "ordered, then lost" });
    await harness.advance(0);
    await harness.receive(await post(2, "me", 1, "ordered, then lost"));
    harness.core.publish(CHAT_SCOPE, "post", { text: "newer" });
    await harness.core.disconnected();
    harness.drain();
    // The room came back from storage without event 2: its welcome acknowledges nothing of this client's.
    await harness.receive({ type: "challenge", nonce: "n2" });
    await harness.receive(welcome({ resumed: true, acked: 0, from: 1, last: 1 }));
    assert.deepEqual(await Promise.all(harness.ofType("publish").map((frame) => opened(frame))), ["ordered, then lost", "newer"]);
  });

  test("a new client id numbers the pending posts afresh and seals them for itself", async () => {
    const harness = await joined();
    harness.core.publish(CHAT_SCOPE, "post", { text: "a" });
    harness.core.publish(CHAT_SCOPE, "post", { text: "b" });
    await harness.core.disconnected();
    await harness.receive({ type: "challenge", nonce: "n2" });
    harness.drain();
    await harness.receive(
      welcome({ client: "me-again", secret: "s2", last: 3 }),
      enter(1, "me"),
      { type: "user-exit", seq: 2, time: START + 2, client: "me" },
      enter(3, "me-again"),
    );
    const publishes = harness.ofType("publish");
    assert.deepEqual(
      publishes.map((frame) => frame.id),
      [1, 2],
    );
    assert.deepEqual(await Promise.all(publishes.map((frame) => opened(frame, "me-again"))), ["a", "b"]);
    assert.equal(harness.core.clientId, "me-again");
  });

  test("a refused post goes out again when the reflector says it would be taken, unchanged", async () => {
    const harness = await joined();
    harness.core.publish(CHAT_SCOPE, "post", { text: "refused once" });
    await harness.advance(0);
    const [first] = harness.drain() as Extract<ClientFrame, { type: "publish" }>[];
    await harness.receive({ type: "error", code: "over-budget", message: "not now", retry: 300 });
    assert.deepEqual(harness.notices.at(-1), { type: "reflector-error", code: "over-budget", message: "not now", time: undefined });
    await harness.advance(299);
    assert.equal(harness.ofType("publish").length, 0, "not before `retry`");
    await harness.advance(1);
    const [again] = harness.ofType("publish");
    assert.deepEqual({ ...again, t: undefined }, { ...first, t: undefined }, "the same id and the same sealed payload");
  });

  test("after a refusal nothing goes out before retry, however many posts are published meanwhile", async () => {
    const harness = await joined();
    harness.core.publish(CHAT_SCOPE, "post", { text: "refused" });
    await harness.advance(0);
    harness.drain();
    await harness.receive({ type: "error", code: "over-budget", message: "not now", retry: 500 });
    await harness.advance(100);
    harness.core.publish(CHAT_SCOPE, "post", { text: "typed meanwhile" });
    await harness.advance(0);
    await harness.receive({ type: "error", code: "out-of-order", message: "post 2 came before post 1" });
    await harness.advance(300);
    assert.deepEqual(harness.ofType("publish"), [], "held until retry, and an out-of-order refusal adds no wait of its own");
    await harness.advance(100);
    assert.deepEqual(
      harness.ofType("publish").map((frame) => frame.id),
      [1, 2],
    );
  });

  test("posts are paced below the client's share of the room: a new client starts with half a second's worth", async () => {
    const harness = await joined({ rate: { perSecond: 20, burst: 60 }, budget: { perSecond: 10, burst: 30 } });
    for (let index = 0; index < 10; index++) harness.core.publish(CHAT_SCOPE, "post", { text: `post ${index}` });
    await harness.advance(0);
    assert.equal(harness.ofType("publish").length, 4, "floor(9 / 2) at once: 90% of the share, half a second's worth");
    await harness.advance(1000);
    assert.equal(harness.ofType("publish").length, 10, "the rest within the next second");
  });

  test("a snapshot point: the vote is the hash of the state sealed at that point; asked, it uploads exactly that", async () => {
    const harness = await joined();
    await harness.receive(enter(2, "a"), { type: "snapshot-due", seq: 2 });
    // The vote goes out once the state is sealed, without holding up the frames after it.
    await waitFor(() => harness.ofType("hash").length === 1, "the vote");
    const [vote] = harness.ofType("hash");
    const sealed = await key.sealSnapshot(harness.core.replica!.serialize(), 2);
    assert.deepEqual({ ...vote, t: undefined }, { type: "hash", seq: 2, hash: await sha256Hex(sealed), t: undefined });
    await harness.receive({ type: "snapshot-request", seq: 2 });
    const parts = harness.ofType("snapshot");
    assert.equal(parts.map((part) => part.data).join(""), sealed);
    await harness.receive({ type: "snapshot-stored", seq: 2 }, { type: "snapshot-request", seq: 2 });
    assert.equal(harness.ofType("snapshot").length, parts.length, "a stored snapshot is not kept");
  });

  test("a divergence report says whether this replica is among the majority", async () => {
    const harness = await joined();
    await harness.receive({ type: "snapshot-due", seq: 1 });
    await waitFor(() => harness.ofType("hash").length === 1, "the vote");
    const own = harness.ofType("hash")[0]!.hash;
    await harness.receive({
      type: "divergence",
      seq: 1,
      voters: 3,
      votes: [
        { hash: "other", clients: ["a", "b"] },
        { hash: own, clients: ["me"] },
      ],
    });
    assert.deepEqual(harness.core.divergence, {
      seq: 1,
      votes: [
        { hash: "other", clients: ["a", "b"] },
        { hash: own, clients: ["me"] },
      ],
      ownHash: own,
      outvoted: true,
    });
    assert.equal(harness.notices.at(-1)!.type, "divergence");
  });

  test("a post sealed with another key reaches no model, and the order goes on", async () => {
    const harness = await joined();
    await harness.receive(enter(2, "a"), await post(3, "a", 1, "from another room", otherKey), await post(4, "a", 2, "from this room"));
    assert.equal(harness.core.replica!.seq, 4);
    assert.deepEqual(postTexts(harness), ["from this room"]);
  });

  test("a snapshot that does not hash to the vote, or does not restore, is a bad snapshot: nothing is shown and the core leaves", async () => {
    const replica = Replica.create(ROOM, key.seed, ChatModel);
    const good = await key.sealSnapshot(replica.serialize(), 5);
    const unrestorable = await key.sealSnapshot(JSON.stringify({ format: 2 }), 5);
    for (const [data, hash] of [
      [good, "0".repeat(64)],
      [unrestorable, await sha256Hex(unrestorable)],
    ] as const) {
      const harness = new Harness();
      await harness.receive({ type: "challenge", nonce: "n" });
      await harness.receive(welcome({ snapshot: { seq: 5, parts: 1, hash }, from: 5, last: 5 }), { type: "snapshot", seq: 5, part: 0, parts: 1, data });
      assert.equal(harness.core.badSnapshot, true);
      assert.equal(harness.core.replica, undefined);
      assert.equal(harness.core.left, true);
      assert.deepEqual(
        harness.notices.map((notice) => notice.type),
        ["bad-snapshot"],
      );
    }
  });

  test("catches up from a snapshot that checks out, then the events after it", async () => {
    const source = Replica.create(ROOM, key.seed, ChatModel);
    source.apply(enter(1, "a"));
    const sealed = await key.sealSnapshot(source.serialize(), 1);
    const harness = new Harness();
    await harness.receive({ type: "challenge", nonce: "n" });
    await harness.receive(
      welcome({ snapshot: { seq: 1, parts: 1, hash: await sha256Hex(sealed) }, from: 1, last: 2 }),
      { type: "snapshot", seq: 1, part: 0, parts: 1, data: sealed },
      enter(2, "me"),
    );
    assert.equal(harness.core.replica!.seq, 2);
    assert.deepEqual(
      harness.chat.users.map((user) => user.id),
      ["a", "me"],
    );
  });

  test("work due later asks for a tick; a tick someone else asked for moves time, and the replica asks again for its own", async () => {
    const harness = new Harness(key, TimerChatModel, { delay: 3000 });
    await harness.receive({ type: "challenge", nonce: "n" });
    await harness.receive(welcome({ last: 1 }), enter(1, "me"));
    const due = START + 1 + 3000;
    assert.deepEqual(
      harness.ofType("tick-request").map((frame) => frame.time),
      [due],
    );
    await harness.receive({ type: "tick", time: START + 2 });
    assert.equal(harness.core.replica!.time, START + 2);
    assert.deepEqual(
      harness.ofType("tick-request").map((frame) => frame.time),
      [due, due],
      "asked again",
    );
    await harness.receive({ type: "tick", time: due });
    assert.deepEqual((harness.core.replica!.root as TimerChatModel).rings, [due]);
    assert.equal(harness.ofType("tick-request").length, 2, "nothing more is due");
  });
});
