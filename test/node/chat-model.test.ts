import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ReflectedEvent } from "../../common/protocol.js";
import { ChatModel, DEFAULT_MAX_HISTORY, MAX_POST_LENGTH, USER_COLOURS, type ChatProfile } from "../../component/chat-model.js";
import { NICKNAMES } from "../../component/nicknames.js";
import { encodeModelEvent, Replica } from "../../component/runtime.js";
import { stateHash } from "../../component/state-hash.js";

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** The generator seed of a room, as its key would give it. */
const SEED = [0x01234567, 0x89abcdef, 0xfedcba98, 0x76543210];

/** Feeds a ChatModel replica events as the reflector would stamp them. */
class Room {
  readonly replica: Replica;
  private seq = 0;
  time = 1_700_000_000_000;

  constructor(options?: { maxHistory?: number }, seed = SEED) {
    this.replica = Replica.create("chat-room", seed, ChatModel, options);
  }

  /** A room whose replica is restored from `room`'s serialized state: as a newcomer's, from a snapshot. */
  static restoredFrom(room: Room): Room {
    const restored = new Room();
    Object.assign(restored, { replica: Replica.restore(room.replica.serialize()), seq: room.replica.seq, time: room.time });
    return restored;
  }
  get model(): ChatModel {
    return this.replica.root as ChatModel;
  }
  private apply(event: DistributiveOmit<ReflectedEvent, "seq" | "time">): void {
    this.time += 1000;
    this.replica.apply({ ...event, seq: ++this.seq, time: this.time } as ReflectedEvent);
  }
  /** A user enters, with the profile its hello carried (opened, as the session hands it to the replica). */
  enter(client: string, profile?: ChatProfile | string): string {
    const text = profile === undefined ? undefined : typeof profile === "string" ? profile : JSON.stringify(profile);
    this.apply(text === undefined ? { type: "user-enter", client } : { type: "user-enter", client, profile: text });
    return this.model.nicknameOf(client)!;
  }
  rename(client: string, name: unknown): void {
    this.apply({ type: "message", client, payload: encodeModelEvent("chat", "rename", { name }) } as never);
  }
  exit(client: string): void {
    this.apply({ type: "user-exit", client });
  }
  post(client: string, data: unknown): void {
    this.apply({ type: "message", client, payload: encodeModelEvent("chat", "post", data) } as never);
  }
  texts(): string[] {
    return this.model.history.map((entry) => (entry.kind === "post" ? `${entry.nickname}: ${entry.text}` : `* ${entry.text}`));
  }
}

describe("ChatModel", () => {
  test("draws a nickname from a list of at least 100 names when a user enters", () => {
    assert.ok(NICKNAMES.length >= 100);
    assert.equal(new Set(NICKNAMES).size, NICKNAMES.length);
    const room = new Room();
    const name = room.enter("alice-window");
    assert.ok(NICKNAMES.includes(name));
    assert.deepEqual(room.model.users, [{ id: "alice-window", nickname: name, colour: room.model.users[0]!.colour }]);
    assert.ok(USER_COLOURS.includes(room.model.users[0]!.colour));
  });

  test("every replica draws the same nicknames, and a room with another key draws others", () => {
    const [a, b, other] = [new Room(), new Room(), new Room(undefined, [1, 2, 3, 4])];
    const clients = Array.from({ length: 20 }, (_, index) => `client-${index}`);
    const names = (room: Room) => clients.map((client) => room.enter(client));
    const fromA = names(a);
    assert.deepEqual(names(b), fromA);
    assert.notDeepEqual(names(other), fromA, "the generator is seeded from the room's key");
  });

  test("never gives two present users the same nickname, even with more users than names", () => {
    const room = new Room();
    const count = NICKNAMES.length + 30;
    for (let i = 0; i < count; i++) room.enter(`client-${i}`);
    const nicknames = room.model.users.map((user) => user.nickname);
    assert.equal(nicknames.length, count);
    assert.equal(new Set(nicknames).size, count);
    assert.ok(
      nicknames.slice(NICKNAMES.length).every((name) => / \d+$/.test(name)),
      "names beyond the list are numbered",
    );
  });

  test("a name is free again once its user left", () => {
    const room = new Room();
    for (let i = 0; i < NICKNAMES.length; i++) room.enter(`client-${i}`);
    const leaving = room.model.users[17]!;
    room.exit(leaving.id);
    assert.equal(room.enter("newcomer"), leaving.nickname, "the only free name is drawn");
  });

  test("posts a notice naming whoever joins or leaves", () => {
    const room = new Room();
    const alice = room.enter("a");
    const bob = room.enter("b");
    room.exit("a");
    assert.deepEqual(room.texts(), [`* ${alice} joined`, `* ${bob} joined`, `* ${alice} left`]);
    assert.deepEqual(
      room.model.users.map((user) => user.id),
      ["b"],
    );
  });

  test("records a post with its author id, nickname and colour, trimmed text and replicated time", () => {
    const room = new Room();
    const name = room.enter("a");
    room.post("a", { text: "  hello world \n" });
    const entry = room.model.history.at(-1)!;
    assert.deepEqual(entry, { n: 2, kind: "post", time: room.time, text: "hello world", author: "a", nickname: name, colour: room.model.users[0]!.colour });
  });

  test("a post is one line: line breaks of every kind become spaces, so it cannot pass for other people's lines", () => {
    const room = new Room();
    room.enter("a");
    const bob = room.enter("b");
    room.post("a", { text: `see below\r\n04:00 AM ${bob}: I agree \u2028\v ${bob} left\u2029\fend\u0085x` });
    assert.equal(room.model.history.at(-1)!.text, `see below 04:00 AM ${bob}: I agree ${bob} left end x`);
  });

  test("takes the author from the reflector's stamp, never from the payload", () => {
    const room = new Room();
    room.enter("a");
    const bob = room.enter("b");
    room.post("b", { text: "hi", author: "a", nickname: "Somebody else" });
    assert.equal(room.model.history.at(-1)!.author, "b");
    assert.equal(room.model.history.at(-1)!.nickname, bob);
    room.post("ghost", { text: "from a client that never entered" });
    assert.equal(room.model.history.at(-1)!.text, "hi");
  });

  test("ignores empty and whitespace-only posts and posts without text", () => {
    const room = new Room();
    room.enter("a");
    const before = room.model.history.length;
    for (const data of [{ text: "" }, { text: "   \n\t" }, {}, null, { text: 42 }]) room.post("a", data);
    assert.equal(room.model.history.length, before);
  });

  test("accepts exactly 1,000 characters and refuses more, telling only the author's view", () => {
    const room = new Room();
    room.enter("a");
    room.replica.takeViewEvents();
    room.post("a", { text: "x".repeat(MAX_POST_LENGTH) });
    assert.equal(room.model.history.at(-1)!.text.length, MAX_POST_LENGTH);
    room.post("a", { text: "y".repeat(MAX_POST_LENGTH + 1) });
    assert.equal(room.model.history.at(-1)!.text.length, MAX_POST_LENGTH, "nothing truncated was stored");
    const refused = room.replica.takeViewEvents().filter((event) => event.event === "refused");
    assert.deepEqual(refused, [
      { scope: "chat", event: "refused", data: { client: "a", message: "This message has 1001 characters; the limit is 1000. Shorten it and send again." } },
    ]);
  });

  test("keeps the last 100 entries by default, and a configured number otherwise", () => {
    const room = new Room();
    room.enter("a");
    for (let i = 0; i < 150; i++) room.post("a", { text: `post ${i}` });
    assert.equal(room.model.history.length, DEFAULT_MAX_HISTORY);
    assert.equal(room.model.history.at(-1)!.text, "post 149");
    assert.equal(room.model.history[0]!.text, "post 50");

    const small = new Room({ maxHistory: 3 });
    small.enter("a");
    for (let i = 0; i < 5; i++) small.post("a", { text: `post ${i}` });
    assert.deepEqual(
      small.model.history.map((entry) => entry.text),
      ["post 2", "post 3", "post 4"],
    );
  });

  test("/reset clears the history for everyone and leaves a notice naming who reset it", () => {
    const [room, replica2] = [new Room(), new Room()];
    for (const r of [room, replica2]) {
      r.enter("a");
      const resetter = r.enter("b");
      r.post("a", { text: "something to forget" });
      r.post("b", { text: " /reset " });
      assert.deepEqual(r.texts(), [`* ${resetter} reset the history`]);
    }
    assert.equal(room.replica.serialize(), replica2.replica.serialize());
    room.post("a", { text: "after the reset" });
    assert.deepEqual(
      room.model.history.map((entry) => entry.n),
      [4, 5],
      "entry numbers keep increasing across a reset",
    );
  });

  test("tells the views of each change, with what changed, in the order it happened", () => {
    const room = new Room({ maxHistory: 2 });
    room.replica.takeViewEvents();
    const alice = room.enter("a");
    const bob = room.enter("b");
    const [aliceColour, bobColour] = room.model.users.map((user) => user.colour);
    room.post("a", { text: "hi" });
    room.post("b", { text: "/reset" });
    room.exit("a");
    const [aliceJoined, bobJoined, hi, reset, aliceLeft] = [1, 2, 3, 4, 5].map((n) => ({ n, time: room.time - (5 - n) * 1000 }));
    assert.deepEqual(room.replica.takeViewEvents(), [
      { scope: "chat", event: "joined", data: { id: "a", nickname: alice, colour: aliceColour } },
      { scope: "chat", event: "entry", data: { ...aliceJoined, kind: "notice", text: `${alice} joined` } },
      { scope: "chat", event: "joined", data: { id: "b", nickname: bob, colour: bobColour } },
      { scope: "chat", event: "entry", data: { ...bobJoined, kind: "notice", text: `${bob} joined` } },
      { scope: "chat", event: "entry", data: { ...hi, kind: "post", text: "hi", author: "a", nickname: alice, colour: aliceColour } },
      { scope: "chat", event: "entry", data: { ...reset, kind: "notice", text: `${bob} reset the history` } },
      { scope: "chat", event: "left", data: { id: "a", nickname: alice, colour: aliceColour } },
      { scope: "chat", event: "entry", data: { ...aliceLeft, kind: "notice", text: `${alice} left` } },
    ]);
    // An entry that drops off the end of the history is no news: the next entry's notification says it all.
    assert.deepEqual(
      room.model.history.map((entry) => entry.n),
      [4, 5],
    );
  });

  test("a newcomer whose profile names it gets that name; someone here has it (in any case): the lowest free number", () => {
    const room = new Room();
    assert.equal(room.enter("a", { name: "  Ada " }), "Ada");
    assert.equal(room.enter("b", { name: "ada" }), "ada 2");
    assert.equal(room.enter("c", { name: "ADA" }), "ADA 3");
    room.exit("b");
    assert.equal(room.enter("d", { name: "Ada" }), "Ada 2", "a number is free again once its user left");
    assert.equal(room.enter("e", { name: "x".repeat(32) }), "x".repeat(32));
    assert.equal(room.enter("f", { name: "x".repeat(32) }), `${"x".repeat(30)} 2`, "the number fits within 32 characters");
    for (const [client, profile] of [
      ["g", { name: "" }],
      ["h", { name: "x".repeat(33) }],
      ["i", { name: "tab\tname" }],
      ["j", "not json"],
      ["k", { name: 42 }],
    ] as const) {
      assert.ok(NICKNAMES.includes(room.enter(client, profile as ChatProfile)), `${JSON.stringify(profile)}: a random name`);
    }
    assert.deepEqual(room.texts().slice(0, 2), ["* Ada joined", "* ada 2 joined"], "joined under the name, with no rename");
  });

  test("a user renames with a rename event or /nick: one notice for everyone, and posts keep the name they were sent under", () => {
    const room = new Room();
    const first = room.enter("a");
    const second = room.enter("b");
    room.post("a", { text: "before" });
    room.replica.takeViewEvents();
    room.rename("a", "  Ada  ");
    assert.deepEqual(
      room.replica.takeViewEvents().map(({ event, data }) => [event, data]),
      [
        ["renamed", { id: "a", from: first, to: "Ada" }],
        ["entry", { n: 4, time: room.time, kind: "notice", text: `${first} is now Ada` }],
      ],
    );
    room.post("a", { text: "after" });
    room.post("b", { text: "/nick Bob" });
    room.post("a", { text: "/nick ada" }); // her own name in another case
    assert.deepEqual(
      room.model.users.map((user) => user.nickname),
      ["ada", "Bob"],
    );
    assert.deepEqual(room.texts().slice(2), [`${first}: before`, `* ${first} is now Ada`, "Ada: after", `* ${second} is now Bob`, "* Ada is now ada"]);
    room.rename("a", "ada");
    assert.equal(room.model.history.length, 7, "the same name again changes nothing and says nothing");
  });

  test("a name that is empty, over 32 characters, holds control characters or is someone else's (in any case) is refused, to its author only", () => {
    const room = new Room();
    room.enter("a", { name: "Ada" });
    room.enter("b", { name: "Bob" });
    const before = { users: structuredClone(room.model.users), history: structuredClone(room.model.history) };
    const refusals: unknown[] = [];
    room.replica.takeViewEvents();
    for (const name of ["", "   ", "x".repeat(33), "line\nbreak", "bell\u0007", "right\u202eleft", "ADA", "ada", null, 7]) {
      room.rename("b", name);
      refusals.push(
        ...room.replica
          .takeViewEvents()
          .filter((event) => event.event === "refused")
          .map((event) => event.data),
      );
    }
    room.post("b", { text: "/nick" });
    refusals.push(
      ...room.replica
        .takeViewEvents()
        .filter((event) => event.event === "refused")
        .map((event) => event.data),
    );
    assert.deepEqual(
      refusals.map((refusal) => (refusal as { message: string }).message),
      [
        "A nickname needs at least one character.",
        "A nickname needs at least one character.",
        "This nickname has 33 characters; the limit is 32.",
        "A nickname cannot hold control characters or line breaks.",
        "A nickname cannot hold control characters or line breaks.",
        "A nickname cannot hold control characters or line breaks.",
        "Ada is already here: choose another nickname.",
        "Ada is already here: choose another nickname.",
        "A nickname needs at least one character.",
        "A nickname needs at least one character.",
        "A nickname needs at least one character.",
      ],
    );
    assert.ok(refusals.every((refusal) => (refusal as { client: string }).client === "b"));
    assert.deepEqual({ users: room.model.users, history: room.model.history }, before, "nothing changed");
  });

  test("each user gets a colour of the palette, as few users as possible sharing one, the same on every replica", () => {
    const [a, b] = [new Room(), new Room()];
    for (const room of [a, b]) for (let index = 0; index < 12; index++) room.enter(`client-${index}`);
    const colours = a.model.users.map((user) => user.colour);
    assert.deepEqual(
      b.model.users.map((user) => user.colour),
      colours,
    );
    assert.equal(new Set(colours.slice(0, USER_COLOURS.length)).size, USER_COLOURS.length, "the first eight all differ");
    assert.ok(colours.every((colour) => USER_COLOURS.includes(colour)));
  });

  test("renames and colours are deterministic and survive a snapshot: the same events give the same state hash", async () => {
    const steps: ((room: Room) => void)[] = [
      (room) => room.enter("a", { name: "Ada" }),
      (room) => room.enter("b"),
      (room) => room.rename("b", "Bob"),
      (room) => room.post("a", { text: "/nick Grace" }),
      (room) => room.enter("c", { name: "grace" }),
      (room) => room.exit("a"),
      (room) => room.rename("c", "Ada"),
    ];
    const [once, twice, halfway] = [new Room(), new Room(), new Room()];
    for (const step of steps) [once, twice].forEach(step);
    assert.equal(await stateHash(twice.replica), await stateHash(once.replica), "the same events twice");
    // Half way, the state goes into a snapshot; the other half is applied to the replica restored from it.
    for (const step of steps.slice(0, 4)) step(halfway);
    const restored = Room.restoredFrom(halfway);
    for (const step of steps.slice(4)) step(restored);
    assert.equal(await stateHash(restored.replica), await stateHash(once.replica), "through a snapshot");
    assert.deepEqual(restored.model.users, once.model.users);
  });
});
