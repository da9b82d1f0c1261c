/**
 * The reflector on its own: driven frame by frame through fake sockets, over Map-backed room storage, with a clock
 * the test moves by hand. No network and no timers: `wake()` is called where the room's alarm would call it.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  checkRoomId,
  CLOSE_BEHIND,
  CLOSE_BUSY,
  CLOSE_FLOODING,
  CLOSE_NO_HELLO,
  CLOSE_NOT_MEMBER,
  CLOSE_REPLACED,
  CLOSE_ROOM_FULL,
  CLOSE_SILENT,
  majority,
  MAX_FRAME_LENGTH,
  MAX_PROFILE_LENGTH,
  MAX_ROOM_ID_LENGTH,
  MAX_SNAPSHOT_PARTS,
  helloChallenge,
  PING,
  PONG,
  PROTOCOL_VERSION,
  type ClientFrame,
  type ErrorCode,
  type ReflectedEvent,
  type ServerFrame,
  type Welcome,
} from "../../common/protocol.js";
import { IMMEDIATE_PER_WINDOW } from "../../party/delivery.js";
import { RateLimiter, SKEW_ALLOWANCE } from "../../party/limits.js";
import { Reflector, stampTime, type ClientSocket, type SocketState } from "../../party/reflector.js";
import { countVotes } from "../../party/snapshot-round.js";
import type { RoomStorage } from "../../party/room-store.js";
import type { ReflectorSettings } from "../../party/settings.js";
import { sha256Hex, verifyMember } from "../../common/crypto.js";
import { newRoomSecret, RoomKey } from "../../component/room-key.js";
import { waitFor } from "../support/wait-for.js";

// ---------------------------------------------------------------------------------------------------------------
// Fakes

/**
 * Room storage as PartyKit's Durable Object storage behaves for the reflector: values are copied in and out (so an
 * object kept by reference cannot pass for a stored one), `list` is in key order, and `put` and `delete` refuse
 * more than 128 keys at once. That refusal throws synchronously so that it fails the test instead of being logged.
 */
class MemoryStorage implements RoomStorage {
  readonly values = new Map<string, unknown>();
  async get(key: string): Promise<unknown> {
    return structuredClone(this.values.get(key));
  }
  put(entries: Record<string, unknown>): Promise<void> {
    if (Object.keys(entries).length > 128) throw new Error(`storage.put got ${Object.keys(entries).length} keys; the limit is 128`);
    for (const [key, entry] of Object.entries(entries)) this.values.set(key, structuredClone(entry));
    return Promise.resolve();
  }
  delete(keys: string[]): Promise<number> {
    if (keys.length > 128) throw new Error(`storage.delete got ${keys.length} keys; the limit is 128`);
    let deleted = 0;
    for (const key of keys) if (this.values.delete(key)) deleted++;
    return Promise.resolve(deleted);
  }
  async list({ prefix }: { prefix: string }): Promise<Map<string, unknown>> {
    return new Map(this.keys(prefix).map((key) => [key, structuredClone(this.values.get(key))]));
  }
  deleteAll(): Promise<void> {
    this.values.clear();
    return Promise.resolve();
  }
  /** Stored keys under `prefix`, sorted. */
  keys(prefix = ""): string[] {
    return [...this.values.keys()].filter((key) => key.startsWith(prefix)).sort();
  }
  /** Every event in the stored chunks, decoded, including those a snapshot covers but a chunk still holds. */
  events(): ReflectedEvent[] {
    return this.keys("events:").flatMap((key) => (this.values.get(key) as string[]).map((text) => JSON.parse(text) as ReflectedEvent));
  }
}

/**
 * A socket that records every frame sent to it, decoded, and how it was closed. Its `state` is copied in and out,
 * as a hibernatable WebSocket's attachment is, so that nothing kept by reference passes for what it carries.
 */
class FakeSocket implements ClientSocket {
  readonly frames: ServerFrame[] = [];
  /** Every text as it was sent: a batch is one text, and one array in `frames`' place... */
  readonly texts: string[] = [];
  closed: { code: number | undefined; reason: string | undefined } | undefined;
  /** Set to make `send` throw, as a closing PartyKit connection does. */
  failing = false;
  #state: unknown = null;
  get state(): unknown {
    return structuredClone(this.#state);
  }
  setState(state: SocketState): unknown {
    this.#state = structuredClone(state);
    return state;
  }
  send(text: string): void {
    if (this.failing) throw new Error("socket is closing");
    this.texts.push(text);
    // ...while `frames` has every frame, a batch's in order: what a client handles.
    const parsed = JSON.parse(text) as ServerFrame | ServerFrame[];
    this.frames.push(...(Array.isArray(parsed) ? parsed : [parsed]));
  }
  /** Returns a function giving the texts sent after this call. */
  markTexts(): () => string[] {
    const start = this.texts.length;
    return () => this.texts.slice(start);
  }
  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
  }
  ofType<T extends ServerFrame["type"]>(type: T): Extract<ServerFrame, { type: T }>[] {
    return this.frames.filter((frame): frame is Extract<ServerFrame, { type: T }> => frame.type === type);
  }
  /** Returns a function giving the frames received after this call: "what came after X". */
  mark(): () => ServerFrame[] {
    const start = this.frames.length;
    return () => this.frames.slice(start);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

const START = 1_000_000;
/** Snapshots and limits effectively off, so that tests about something else see no snapshot frames and no throttling. */
const NO_LIMITS = {
  maxFrameLength: MAX_FRAME_LENGTH,
  rateLimit: Infinity,
  rateBurst: Infinity,
  floodRefusals: Infinity,
  maxClients: Infinity,
  helloTimeout: Infinity,
  maxWaiting: Infinity,
  maxRoomIdLength: MAX_ROOM_ID_LENGTH,
  roomRate: Infinity,
  joinRate: Infinity,
  joinBurst: Infinity,
  maxLag: Infinity,
  maxLog: Infinity,
  maxSnapshot: Infinity,
};
const TEST_SETTINGS: ReflectorSettings = {
  grace: 10_000,
  reloadGrace: 2000,
  heartbeat: 20_000,
  silenceTimeout: Infinity,
  snapshotEvents: 1_000_000,
  snapshotBytes: Infinity,
  snapshotInterval: Infinity,
  snapshotGap: 0,
  voteTimeout: 5000,
  writeInterval: 0,
  retention: Infinity,
  coalesce: 0,
  ...NO_LIMITS,
};
const GRACE = TEST_SETTINGS.grace;
const VOTE_TIMEOUT = TEST_SETTINGS.voteTimeout;

/** Unique across the whole file, so that a room reopened on the same storage never hands out a token twice. */
let tokens = 0;
const newToken = () => `token-${++tokens}`;

/**
 * Membership, checked at once: the tests' members all hold the key `MEMBER_KEY` and prove it by signing a challenge
 * as `proofOf` does. (The real check, an Ed25519 signature, has tests of its own below, and answers later.)
 */
const MEMBER_KEY = "member-key";
const proofOf = (nonce: string, key = MEMBER_KEY) => `signed ${nonce} with ${key}`;
const verifyHello = (nonce: string, key: string, proof: string) => key === MEMBER_KEY && proof === proofOf(nonce, key);
/** The tests' hash: short, and different for every text used here, as SHA-256 is for every text. */
const H = (text: string) => {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) hash = Math.imul(hash ^ text.charCodeAt(index), 0x01000193) >>> 0;
  return `fnv-${hash.toString(16)}-${text.length}`;
};

type Resume = { client: string; secret: string; seq: number };
/** A socket that has been welcomed, with the identity the welcome gave it. */
interface Member {
  socket: FakeSocket;
  welcome: Welcome;
  id: string;
  secret: string;
}

const send = (reflector: Reflector<FakeSocket>, socket: FakeSocket, frame: ClientFrame | Record<string, unknown>) =>
  reflector.receive(socket, JSON.stringify(frame));

/** The challenge a socket's hello must answer, as the socket carries it ("none" for a socket the room never saw). */
const challengeOf = (socket: FakeSocket) => (socket.state as SocketState | null)?.nonce ?? "none";
/** A member's hello to `socket`'s challenge, resuming when asked to. */
const helloFrame = (socket: FakeSocket, resume?: Resume) => ({
  type: "hello",
  version: PROTOCOL_VERSION,
  key: MEMBER_KEY,
  proof: proofOf(challengeOf(socket)),
  ...(resume === undefined ? {} : { resume }),
});

/** Connects `socket`, answers its challenge with a member's hello (resuming when asked to) and returns the welcome it got. */
function hello(reflector: Reflector<FakeSocket>, socket = new FakeSocket(), resume?: Resume): Member {
  reflector.connect(socket);
  const after = socket.mark();
  send(reflector, socket, helloFrame(socket, resume));
  const welcome = after()[0];
  assert.ok(welcome?.type === "welcome", `expected a welcome, got ${JSON.stringify(welcome)}`);
  return { socket, welcome, id: welcome.client, secret: welcome.secret };
}

/**
 * A reflector over `storage` with a clock the test moves by hand. `sockets` are sockets still open from an earlier
 * run of the room, as after it slept; `heartbeats` says when the platform last answered a socket's heartbeat.
 */
async function openRoom(
  settings: Partial<ReflectorSettings> = {},
  storage = new MemoryStorage(),
  start = START,
  makeToken = newToken,
  { sockets = [] as FakeSocket[], heartbeats = new Map<FakeSocket, number>() } = {},
) {
  const clock = { now: start };
  const reflector = await Reflector.open<FakeSocket>({
    ...TEST_SETTINGS,
    ...settings,
    storage,
    clock: () => clock.now,
    newToken: makeToken,
    sockets,
    heartbeatAt: (socket) => heartbeats.get(socket),
    verifyHello,
    digest: H,
  });
  return {
    reflector,
    storage,
    clock,
    hello: (socket?: FakeSocket, resume?: Resume) => hello(reflector, socket, resume),
    send: (member: Member, frame: ClientFrame | Record<string, unknown>) => send(reflector, member.socket, frame),
    post: (member: Member, id: number, payload = `post ${id}`) => send(reflector, member.socket, { type: "publish", id, payload }),
    hash: (member: Member, seq: number, hash: string) => send(reflector, member.socket, { type: "hash", seq, hash }),
    /** Uploads `parts` as the snapshot at `seq`, in the given order of part indexes. */
    upload: (member: Member, seq: number, parts: string[], order = parts.map((_, index) => index)) => {
      for (const part of order) send(reflector, member.socket, { type: "snapshot", seq, part, parts: parts.length, data: parts[part]! });
    },
    advance: (ms: number) => {
      clock.now += ms;
    },
  };
}

const isEvent = (frame: ServerFrame): frame is ReflectedEvent => frame.type === "message" || frame.type === "user-enter" || frame.type === "user-exit";
/** Events as [seq, type, client]: enough to compare orders at a glance. */
const brief = (events: ReflectedEvent[]) => events.map((event) => [event.seq, event.type, event.client]);
const eventsIn = (frames: ServerFrame[]) => brief(frames.filter(isEvent));
/** Frames as their types, with events shown by seq: for checking what follows what. */
const shape = (frames: ServerFrame[]) =>
  frames.map((frame) => (isEvent(frame) ? `${frame.type} ${frame.seq}` : "seq" in frame ? `${frame.type} ${frame.seq}` : frame.type));
const exitsAndEnters = (socket: FakeSocket) => eventsIn(socket.frames).filter(([, type]) => type !== "message");

/** `count` posts by `member` with ids from `firstId` on: the quick way to reach a snapshot point. */
function postMany(room: Awaited<ReturnType<typeof openRoom>>, member: Member, count: number, firstId = 1) {
  for (let id = firstId; id < firstId + count; id++) room.post(member, id);
}

// ---------------------------------------------------------------------------------------------------------------

describe("reflector: ordering and stamping", () => {
  test("stamps every message with the next sequence number and the server time, and sends it to everyone, sender included", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    room.advance(5);
    room.post(a, 1, "first");
    room.advance(7);
    room.post(b, 1, "second");
    const expected = [
      { type: "message", seq: 3, time: START + 5, client: a.id, id: 1, payload: "first" },
      { type: "message", seq: 4, time: START + 12, client: b.id, id: 1, payload: "second" },
    ];
    for (const member of [a, b]) assert.deepEqual(member.socket.ofType("message"), expected);
    // Every socket sees one and the same order, and it is the stored one.
    assert.deepEqual(eventsIn(a.socket.frames), brief(room.storage.events()));
    assert.deepEqual(eventsIn(b.socket.frames), brief(room.storage.events()));
    assert.deepEqual(room.storage.events().slice(2), expected);
  });

  test("keeps time from running backwards when the server clock does", async () => {
    const room = await openRoom();
    const a = room.hello();
    room.advance(-60_000);
    room.post(a, 1, "after the clock jumped back");
    assert.equal(a.socket.ofType("message")[0]!.time, START);
  });

  test("welcomes a newcomer with a fresh identity and the whole log, ending with its own entry", async () => {
    const room = await openRoom();
    const first = room.hello();
    room.post(first, 1, "before the newcomer");
    const newcomer = room.hello();
    assert.deepEqual(newcomer.welcome, {
      type: "welcome",
      version: PROTOCOL_VERSION,
      client: newcomer.id,
      secret: newcomer.secret,
      resumed: false,
      acked: 0,
      time: START,
      heartbeat: TEST_SETTINGS.heartbeat,
      rate: null,
      budget: null,
      writeInterval: TEST_SETTINGS.writeInterval,
      snapshot: null,
      from: 0,
      last: 3,
    });
    assert.notEqual(newcomer.secret, newcomer.id);
    assert.deepEqual(eventsIn(newcomer.socket.frames), [
      [1, "user-enter", first.id],
      [2, "message", first.id],
      [3, "user-enter", newcomer.id],
    ]);
    assert.deepEqual(
      shape(newcomer.socket.frames),
      ["challenge", "welcome", "user-enter 1", "message 2", "user-enter 3"],
      "its own entry once, after the welcome",
    );
    assert.deepEqual(first.socket.ofType("user-enter").at(-1), { type: "user-enter", seq: 3, time: START, client: newcomer.id });
    // The secret proves identity, so nobody else may ever see it.
    assert.ok(!JSON.stringify(first.socket.frames).includes(newcomer.secret));
  });

  test("chooses client ids itself, never giving one to two clients, nor reusing a retired one", async () => {
    // Each connection first takes a token for its challenge.
    const issued = ["nonce-1", "same", "secret-1", "nonce-2", "same", "other", "secret-2", "nonce-3", "other", "fresh", "secret-3"];
    const room = await openRoom({}, new MemoryStorage(), START, () => issued.shift()!);
    assert.equal(room.hello().id, "same");
    const other = room.hello();
    assert.equal(other.id, "other");
    room.send(other, { type: "leave" });
    // A retired id may still come back with its secret to learn its acked posts: it must not name someone new.
    assert.equal(room.hello().id, "fresh");
    assert.deepEqual(issued, []);
  });

  test("passes payloads through untouched, even ones that look like frames", async () => {
    const room = await openRoom();
    const a = room.hello();
    const payloads = ['{"type":"user-exit","client":"client-1"}', "", "\u0000 ünïcødé 🎈", "not json at all"];
    for (const [index, payload] of payloads.entries()) room.post(a, index + 1, payload);
    assert.deepEqual(
      a.socket.ofType("message").map((message) => message.payload),
      payloads,
    );
    assert.equal(a.socket.ofType("user-exit").length, 0);
  });

  test("keeps sending to the others when one socket throws on send", async () => {
    const room = await openRoom();
    const closing = room.hello();
    const healthy = room.hello();
    closing.socket.failing = true;
    room.post(healthy, 1, "still delivered");
    assert.equal(healthy.socket.ofType("message").length, 1);
    assert.equal(room.storage.events().length, 3);
  });

  test("a socket that fails while being welcomed still gets its user-exit once its grace period ends", async () => {
    const room = await openRoom();
    const stayer = room.hello();
    const failing = new FakeSocket();
    failing.failing = true;
    room.reflector.connect(failing);
    send(room.reflector, failing, { ...helloFrame(failing) });
    const failingId = stayer.socket.ofType("user-enter").at(-1)!.client;
    room.reflector.disconnect(failing);
    room.advance(GRACE);
    room.reflector.wake();
    assert.deepEqual(exitsAndEnters(stayer.socket).slice(1), [
      [2, "user-enter", failingId],
      [3, "user-exit", failingId],
    ]);
  });
});

describe("reflector: hello and bad frames", () => {
  test("a socket is no client until it says hello: anything else first is out of turn and changes nothing", async () => {
    const room = await openRoom();
    const member = room.hello();
    const stranger = new FakeSocket();
    room.reflector.connect(stranger);
    const seen = member.socket.mark();
    const frames = [
      { type: "publish", id: 1, payload: "too early" },
      { type: "hash", seq: 1, hash: "h" },
      { type: "snapshot", seq: 1, part: 0, parts: 1, data: "" },
      { type: "leave" },
    ];
    for (const frame of frames) send(room.reflector, stranger, frame);
    assert.deepEqual(
      stranger.frames.map((frame) => (frame.type === "error" ? frame.code : frame.type)),
      ["challenge", ...frames.map(() => "out-of-turn")],
    );
    assert.deepEqual(seen(), []);
    assert.equal(room.storage.events().length, 1);
    assert.equal(room.reflector.clientCount, 1);
    // It can still say hello afterwards.
    assert.equal(hello(room.reflector, stranger).welcome.last, 2);
  });

  test("a hello with another protocol version is refused with version-mismatch; the socket may try again", async () => {
    const room = await openRoom();
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    send(room.reflector, socket, { type: "hello", version: PROTOCOL_VERSION - 1 });
    send(room.reflector, socket, { type: "hello" });
    assert.deepEqual(
      socket.ofType("error").map((error) => error.code),
      ["version-mismatch", "version-mismatch"],
    );
    assert.equal(room.reflector.clientCount, 0);
    assert.deepEqual(room.storage.events(), []);
    assert.equal(hello(room.reflector, socket).welcome.version, PROTOCOL_VERSION);
  });

  test("a hello with a malformed resume is a bad frame", async () => {
    const room = await openRoom();
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    for (const resume of [null, { client: "", secret: "s", seq: 0 }, { client: "c", secret: "s", seq: -1 }, { client: "c", secret: "x".repeat(129), seq: 0 }]) {
      send(room.reflector, socket, { ...helloFrame(socket), resume });
    }
    assert.deepEqual(
      socket.ofType("error").map((error) => error.code),
      ["bad-frame", "bad-frame", "bad-frame", "bad-frame"],
    );
    assert.equal(room.reflector.clientCount, 0);
  });

  test("a second hello on the same connection is out of turn and makes no new client", async () => {
    const room = await openRoom();
    const a = room.hello();
    room.send(a, { ...helloFrame(a.socket) });
    assert.deepEqual(a.socket.frames.at(-1), { type: "error", code: "out-of-turn", message: "this connection has already said hello" });
    assert.equal(room.storage.events().length, 1);
  });

  test("answers each malformed frame with its error, to its sender only, and changes nothing", async () => {
    const room = await openRoom();
    const sender = room.hello();
    const other = room.hello();
    const tooLong = JSON.stringify({ type: "publish", id: 1, payload: "x".repeat(MAX_FRAME_LENGTH) });
    const cases: [string, string | Uint8Array, ErrorCode][] = [
      ["not JSON", "{not json", "bad-frame"],
      ["a JSON array", "[1,2]", "bad-frame"],
      ["publish without an id", JSON.stringify({ type: "publish", payload: "x" }), "bad-frame"],
      ["publish with a string id", JSON.stringify({ type: "publish", id: "7", payload: "x" }), "bad-frame"],
      ["publish with id 0", JSON.stringify({ type: "publish", id: 0, payload: "x" }), "bad-frame"],
      ["publish with a fractional id", JSON.stringify({ type: "publish", id: 1.5, payload: "x" }), "bad-frame"],
      ["publish with a non-string payload", JSON.stringify({ type: "publish", id: 7, payload: { text: "x" } }), "bad-frame"],
      ["hash with seq 0", JSON.stringify({ type: "hash", seq: 0, hash: "h" }), "bad-frame"],
      ["hash with a string seq", JSON.stringify({ type: "hash", seq: "2", hash: "h" }), "bad-frame"],
      ["hash with an empty hash", JSON.stringify({ type: "hash", seq: 2, hash: "" }), "bad-frame"],
      ["snapshot part not below parts", JSON.stringify({ type: "snapshot", seq: 2, part: 2, parts: 2, data: "" }), "bad-frame"],
      ["snapshot with too many parts", JSON.stringify({ type: "snapshot", seq: 2, part: 0, parts: MAX_SNAPSHOT_PARTS + 1, data: "" }), "bad-frame"],
      ["snapshot with non-string data", JSON.stringify({ type: "snapshot", seq: 2, part: 0, parts: 1, data: 5 }), "bad-frame"],
      ["unknown type", JSON.stringify({ type: "kick", client: other.id }), "bad-frame"],
      ["binary frame", new Uint8Array([1, 2, 3]), "bad-frame"],
      ["frame above MAX_FRAME_LENGTH", tooLong, "frame-too-large"],
    ];
    const stored = JSON.stringify([...room.storage.values]);
    const seenByOther = other.socket.mark();
    for (const [name, frame, code] of cases) {
      const reply = sender.socket.mark();
      room.reflector.receive(sender.socket, frame);
      const frames = reply();
      assert.equal(frames.length, 1, `${name}: exactly one frame back`);
      assert.equal(frames[0]!.type === "error" && frames[0]!.code, code, `${name}: error code`);
    }
    // A binary frame would fail JSON.parse anyway; the message shows it was recognised as binary.
    const binaryError = sender.socket.ofType("error")[cases.findIndex(([name]) => name === "binary frame")];
    assert.match(binaryError!.message, /binary/);
    assert.deepEqual(seenByOther(), [], "other clients see nothing of bad frames");
    assert.equal(JSON.stringify([...room.storage.values]), stored, "storage is untouched");
    // No malformed publish counted as a post id: post 1 is still new.
    room.post(sender, 1, "still works");
    assert.deepEqual(eventsIn(other.socket.frames).at(-1), [3, "message", sender.id]);
  });

  test("accepts a frame of exactly the limit and refuses one character more", async () => {
    const room = await openRoom();
    const a = room.hello();
    const publish = (id: number, payload: string) => JSON.stringify({ type: "publish", id, payload });
    const atLimit = publish(1, "x".repeat(MAX_FRAME_LENGTH - publish(1, "").length));
    assert.equal(atLimit.length, MAX_FRAME_LENGTH);
    room.reflector.receive(a.socket, atLimit);
    room.reflector.receive(a.socket, publish(2, "x".repeat(MAX_FRAME_LENGTH - publish(2, "").length + 1)));
    assert.equal(a.socket.ofType("message").length, 1);
    assert.deepEqual(a.socket.ofType("error"), [
      { type: "error", code: "frame-too-large", message: `frame is ${MAX_FRAME_LENGTH + 1} characters; the limit is ${MAX_FRAME_LENGTH}` },
    ]);
  });

  test("a hash or snapshot upload for a point that was never due is out of turn", async () => {
    const room = await openRoom();
    const a = room.hello();
    room.hash(a, 99, H("data"));
    room.upload(a, 99, ["data"]);
    assert.deepEqual(
      a.socket.ofType("error").map((error) => error.code),
      ["out-of-turn", "out-of-turn"],
    );
    assert.deepEqual(room.storage.keys("snapshot"), []);
  });

  test("ignores frames from a socket it does not know", async () => {
    const room = await openRoom();
    const a = room.hello();
    const unknown = new FakeSocket();
    send(room.reflector, unknown, { ...helloFrame(unknown) });
    assert.deepEqual(unknown.frames, []);
    assert.equal(room.storage.events().length, 1);
    assert.deepEqual(shape(a.socket.frames), ["challenge", "welcome", "user-enter 1"]);
  });
});

describe("reflector: membership", () => {
  /** A socket that connected and answered its challenge with `frame`, and what it got back. */
  function stranger(room: Awaited<ReturnType<typeof openRoom>>, frame: (socket: FakeSocket) => Record<string, unknown>) {
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    send(room.reflector, socket, frame(socket));
    return socket;
  }

  test("a hello that does not prove it holds the room's key gets not-member and close 4006, no seat and no frame of the room", async () => {
    const room = await openRoom();
    const member = room.hello();
    const seen = member.socket.mark();
    const strangers = [
      stranger(room, (socket) => ({ ...helloFrame(socket), proof: "a guess" })),
      stranger(room, (socket) => ({ ...helloFrame(socket), key: "another-key", proof: proofOf(challengeOf(socket), "another-key") })),
      // A member's hello, replayed: it answers the member's challenge, not this socket's.
      stranger(room, () => helloFrame(member.socket)),
      stranger(room, (socket) => ({ ...helloFrame(socket), resume: { client: member.id, secret: member.secret, seq: 1 }, proof: "stolen secret, no key" })),
    ];
    for (const socket of strangers) {
      assert.deepEqual(shape(socket.frames), ["challenge", "error"]);
      assert.deepEqual(socket.ofType("error")[0]!.code, "not-member");
      assert.deepEqual(socket.closed, { code: CLOSE_NOT_MEMBER, reason: "not a member" });
    }
    assert.deepEqual(seen(), [], "the members saw nothing");
    assert.equal(room.storage.events().length, 1);
    assert.equal(room.reflector.clientCount, 1);
    // Frames after the refusal are ignored: the socket is no longer the room's.
    send(room.reflector, strangers[0]!, { type: "publish", id: 1, payload: "x" });
    assert.equal(strangers[0]!.frames.length, 2);
  });

  test("every socket gets its own challenge", async () => {
    const room = await openRoom();
    const sockets = [new FakeSocket(), new FakeSocket(), new FakeSocket()];
    for (const socket of sockets) room.reflector.connect(socket);
    const nonces = sockets.map((socket) => socket.ofType("challenge")[0]!.nonce);
    assert.equal(new Set(nonces).size, 3);
    assert.deepEqual(nonces, sockets.map(challengeOf), "and carries it, so that a room that slept can check the hello");
  });

  test("a check that answers later holds the socket's next frames back and then handles them in order; other sockets go on meanwhile", async () => {
    const answers: ((member: boolean) => void)[] = [];
    const changes: string[] = [];
    const room = await openRoom({}, new MemoryStorage(), START, newToken);
    // Rebuilt on the same storage with a check that answers when the test says so.
    const slow = await Reflector.open<FakeSocket>({
      ...TEST_SETTINGS,
      storage: room.storage,
      clock: () => room.clock.now,
      newToken,
      verifyHello: (nonce, key, proof) => new Promise<boolean>((resolve) => answers.push(() => resolve(verifyHello(nonce, key, proof)))),
      digest: H,
      changed: () => changes.push("changed"),
    });
    const first = new FakeSocket();
    slow.connect(first);
    send(slow, first, helloFrame(first));
    send(slow, first, { type: "publish", id: 1, payload: "sent right after the hello" });
    send(slow, first, { type: "publish", id: 2, payload: "and another" });
    const second = new FakeSocket();
    slow.connect(second);
    send(slow, second, helloFrame(second));
    assert.deepEqual(shape(first.frames), ["challenge"], "nothing yet: the check has not answered");
    answers[1]!(true);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(shape(second.frames), ["challenge", "welcome", "user-enter 1"], "the second socket did not wait for the first");
    answers[0]!(true);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(shape(first.frames), ["challenge", "welcome", "user-enter 1", "user-enter 2", "message 3", "message 4"]);
    assert.deepEqual(eventsIn(second.frames), eventsIn(first.frames), "one order for both");
    assert.equal(changes.length, 2, "the platform hears of each change made outside a call, to re-arm its alarm");
  });

  test("a socket that closes while its hello is checked is forgotten when the answer comes", async () => {
    let answer: (member: boolean) => void = () => {};
    const storage = new MemoryStorage();
    const clock = { now: START };
    const reflector = await Reflector.open<FakeSocket>({
      ...TEST_SETTINGS,
      storage,
      clock: () => clock.now,
      newToken,
      verifyHello: () => new Promise<boolean>((resolve) => (answer = resolve)),
      digest: H,
    });
    const socket = new FakeSocket();
    reflector.connect(socket);
    send(reflector, socket, helloFrame(socket));
    reflector.disconnect(socket);
    answer(true);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(shape(socket.frames), ["challenge"]);
    assert.equal(reflector.clientCount, 0);
    assert.deepEqual(storage.events(), []);
  });

  test("the real check: a member's key and its signature of the challenge are let in; anyone else is not", async () => {
    const secret = newRoomSecret();
    const key = await RoomKey.derive("lobby", secret);
    const other = await RoomKey.derive("lobby", newRoomSecret());
    const storage = new MemoryStorage();
    const reflector = await Reflector.open<FakeSocket>({
      ...TEST_SETTINGS,
      storage,
      clock: () => START,
      newToken,
      verifyHello: (nonce, publicKey, proof) => verifyMember(key.address, nonce, publicKey, proof),
      digest: sha256Hex,
    });
    const join = async (signer: RoomKey, claimed = signer.publicKey) => {
      const socket = new FakeSocket();
      reflector.connect(socket);
      const nonce = socket.ofType("challenge")[0]!.nonce;
      send(reflector, socket, { type: "hello", version: PROTOCOL_VERSION, key: claimed, proof: await signer.prove(helloChallenge(key.address, nonce)) });
      await waitFor(() => socket.frames.length > 1, "an answer to the hello");
      return socket.frames[1]!.type === "welcome" ? "welcome" : (socket.frames[1] as { code: string }).code;
    };
    assert.equal(await join(key), "welcome");
    assert.equal(await join(other), "not-member", "another room's key");
    assert.equal(await join(other, key.publicKey), "not-member", "the room's public key, signed with another");
    assert.equal(reflector.clientCount, 1);
  });

  test("at most maxWaiting sockets wait for their hello: one more is refused with busy and close 4007, and may come back", async () => {
    const room = await openRoom({ maxWaiting: 2 });
    const waiting = [new FakeSocket(), new FakeSocket()];
    for (const socket of waiting) room.reflector.connect(socket);
    const turnedAway = new FakeSocket();
    room.reflector.connect(turnedAway);
    assert.deepEqual(turnedAway.frames, [
      { type: "error", code: "busy", message: "2 connections to this room are waiting to say hello; try again in a moment" },
    ]);
    assert.deepEqual(turnedAway.closed, { code: CLOSE_BUSY, reason: "too many connections waiting" });
    send(room.reflector, waiting[0]!, helloFrame(waiting[0]!));
    const later = room.hello();
    assert.equal(later.welcome.last, 2, "a place came free");
  });
});

describe("reflector: time without a metronome", () => {
  test("a quiet room sends nothing and has nothing due: no ticks, whoever is connected", async () => {
    const room = await openRoom();
    const { reflector } = room;
    assert.equal(reflector.nextWakeAt(), undefined, "nothing to do in an empty room");
    const a = room.hello();
    const b = room.hello();
    room.post(a, 1, "the last word");
    assert.equal(reflector.nextWakeAt(), undefined, "nothing due after the post either");
    const heard = [a.socket.mark(), b.socket.mark()];
    room.advance(60 * 60 * 1000);
    reflector.wake();
    assert.deepEqual(
      heard.map((after) => after()),
      [[], []],
      "an hour of silence",
    );
  });

  test("ticks at the time the replicas asked for, to every client, without storing the tick", async () => {
    const room = await openRoom();
    const { reflector } = room;
    const a = room.hello();
    const b = room.hello();
    room.send(a, { type: "tick-request", time: START + 5000 });
    room.send(b, { type: "tick-request", time: START + 5000 });
    assert.equal(reflector.nextWakeAt(), START + 5000);
    room.advance(4999);
    reflector.wake();
    assert.equal(a.socket.ofType("tick").length, 0, "not before the time asked for");
    room.advance(1);
    reflector.wake();
    for (const member of [a, b]) assert.deepEqual(member.socket.ofType("tick"), [{ type: "tick", time: START + 5000 }], "one tick for both requests");
    assert.equal(reflector.nextWakeAt(), undefined, "and nothing more");
    assert.equal(room.storage.events().length, 2, "the enters are stored; the tick is not");
    assert.equal(reflector.lastActivity, START, "a tick is no activity");
    // A tick advances replicated time: a later newcomer starts from it.
    const later = room.hello();
    assert.equal(later.welcome.time, START + 5000);
  });

  test("keeps the earliest request; one for a time already reached changes nothing", async () => {
    const room = await openRoom();
    const a = room.hello();
    room.send(a, { type: "tick-request", time: START + 9000 });
    room.send(a, { type: "tick-request", time: START + 3000 });
    room.send(a, { type: "tick-request", time: START + 6000 });
    assert.equal(room.reflector.nextWakeAt(), START + 3000);
    room.send(a, { type: "tick-request", time: START });
    assert.equal(room.reflector.nextWakeAt(), START + 3000, "replicated time is already at START");
  });

  test("an event that carries time past the requested tick makes the tick unnecessary", async () => {
    const room = await openRoom();
    const a = room.hello();
    room.send(a, { type: "tick-request", time: START + 1000 });
    room.advance(1500);
    room.post(a, 1, "moves time to START + 1500");
    assert.equal(room.reflector.nextWakeAt(), undefined);
    room.reflector.wake();
    assert.equal(a.socket.ofType("tick").length, 0);
  });

  test("a room whose only client is away sends no tick, and wakes only for the end of the grace period", async () => {
    const room = await openRoom();
    const a = room.hello();
    room.send(a, { type: "tick-request", time: START + 1000 });
    room.reflector.disconnect(a.socket);
    assert.equal(room.reflector.nextWakeAt(), START + GRACE);
    room.advance(GRACE);
    room.reflector.wake();
    assert.equal(a.socket.ofType("tick").length, 0);
    assert.equal(room.reflector.nextWakeAt(), undefined);
  });

  test("a tick-request before hello is out of turn; one with a time that is not a positive integer is a bad frame", async () => {
    const room = await openRoom();
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    send(room.reflector, socket, { type: "tick-request", time: START + 1 });
    const a = room.hello();
    for (const time of [0, -1, 1.5, "soon", null]) room.send(a, { type: "tick-request", time });
    assert.deepEqual(
      socket.ofType("error").map((error) => error.code),
      ["out-of-turn"],
    );
    assert.deepEqual(
      a.socket.ofType("error").map((error) => error.code),
      Array(5).fill("bad-frame"),
    );
    assert.equal(room.reflector.nextWakeAt(), undefined);
  });
});

describe("reflector: heartbeats and silent sockets", () => {
  test("answers a heartbeat with exactly the text the platform answers it with, before hello or after, and nothing else changes", async () => {
    const room = await openRoom();
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    room.reflector.receive(socket, PING);
    const a = room.hello();
    const after = a.socket.mark();
    room.reflector.receive(a.socket, PING);
    assert.deepEqual(socket.frames.slice(1), [JSON.parse(PONG)], "after its challenge");
    assert.deepEqual(after(), [JSON.parse(PONG)]);
    assert.equal(room.storage.events().length, 1, "only a's enter");
  });

  test("a socket silent for silenceTimeout is closed with 4005 and its client goes away; heartbeats the platform answered count", async () => {
    const heartbeats = new Map<FakeSocket, number>();
    const room = await openRoom({ silenceTimeout: 60_000 }, new MemoryStorage(), START, newToken, { heartbeats });
    const quiet = room.hello();
    const pinging = room.hello();
    const posting = room.hello();
    assert.equal(room.reflector.nextWakeAt(), START + 60_000, "the first check comes a whole silence timeout after the first client");
    room.advance(50_000);
    heartbeats.set(pinging.socket, START + 50_000);
    room.post(posting, 1);
    room.advance(10_000);
    room.reflector.wake();
    assert.deepEqual(quiet.socket.closed, { code: CLOSE_SILENT, reason: "no heartbeat" });
    assert.equal(pinging.socket.closed, undefined);
    assert.equal(posting.socket.closed, undefined);
    // Away, not gone: it may resume within the grace period, and exits after it.
    assert.equal(pinging.socket.ofType("user-exit").length, 0);
    assert.equal(room.reflector.nextWakeAt(), START + 60_000 + GRACE);
    room.advance(GRACE);
    room.reflector.wake();
    assert.deepEqual(
      pinging.socket.ofType("user-exit").map((exit) => exit.client),
      [quiet.id],
    );
    assert.equal(room.reflector.nextWakeAt(), START + 50_000 + 60_000, "next, when the quietest of the others could be silent that long");
  });
});

describe("reflector: disconnects, grace and resume", () => {
  test("a page being reloaded says so: its client is away for reloadGrace only, and comes back as itself without notices", async () => {
    const room = await openRoom();
    const stayer = room.hello();
    const reloaded = room.hello();
    const heard = stayer.socket.mark();
    room.send(reloaded, { type: "leave", reload: true });
    assert.equal(room.reflector.nextWakeAt(), room.clock.now + TEST_SETTINGS.reloadGrace, "a short grace period");
    room.advance(TEST_SETTINGS.reloadGrace - 1);
    room.reflector.wake();
    // The reloaded page resumes with nothing of the room: it gets all of it again, as the same client.
    const again = room.hello(new FakeSocket(), { client: reloaded.id, secret: reloaded.secret, seq: 0 });
    assert.deepEqual([again.welcome.resumed, again.welcome.from], [true, 0]);
    assert.deepEqual(
      eventsIn(again.socket.frames).map(([seq]) => seq),
      [1, 2],
      "the whole log",
    );
    assert.deepEqual(eventsIn(heard()), [], "the others saw nothing");

    // Not back in time: it leaves when the short grace period ends, not GRACE.
    room.send(again, { type: "leave", reload: true });
    room.advance(TEST_SETTINGS.reloadGrace);
    room.reflector.wake();
    assert.deepEqual(eventsIn(heard()), [[3, "user-exit", reloaded.id]]);
  });

  test("a newcomer's hello may carry a profile, opaque to the reflector, which its user-enter carries to everyone", async () => {
    const room = await openRoom();
    const a = room.hello();
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    send(room.reflector, socket, { ...helloFrame(socket), profile: "sealed profile" });
    const enter = a.socket.ofType("user-enter").at(-1)!;
    assert.deepEqual(enter, { type: "user-enter", seq: 2, time: START, client: (socket.ofType("welcome")[0] as Welcome).client, profile: "sealed profile" });
    assert.deepEqual(room.storage.events().at(-1), enter, "stored with it");
    const tooLong = new FakeSocket();
    room.reflector.connect(tooLong);
    send(room.reflector, tooLong, { ...helloFrame(tooLong), profile: "x".repeat(MAX_PROFILE_LENGTH + 1) });
    assert.equal(tooLong.ofType("error")[0]!.code, "bad-frame");
  });

  test("a dropped socket's client stays present for the grace period, then gets exactly one user-exit", async () => {
    const room = await openRoom();
    const stayer = room.hello();
    const leaver = room.hello();
    room.reflector.disconnect(leaver.socket);
    room.reflector.disconnect(leaver.socket);
    assert.equal(room.reflector.clientCount, 1);
    assert.deepEqual(stayer.socket.ofType("user-exit"), [], "no exit before the grace period ends");
    room.reflector.receive(leaver.socket, JSON.stringify({ type: "publish", id: 1, payload: "from a closed socket" }));
    assert.equal(stayer.socket.ofType("message").length, 0);

    room.advance(GRACE - 1);
    room.reflector.wake();
    assert.deepEqual(stayer.socket.ofType("user-exit"), []);
    room.advance(1);
    room.reflector.wake();
    room.advance(GRACE);
    room.reflector.wake();
    assert.deepEqual(stayer.socket.ofType("user-exit"), [{ type: "user-exit", seq: 3, time: START + GRACE, client: leaver.id }]);
    assert.deepEqual(brief(room.storage.events()).at(-1), [3, "user-exit", leaver.id]);
  });

  test("the room is not empty while a client is within its grace period, and is once it ends", async () => {
    const room = await openRoom();
    assert.equal(room.reflector.isEmpty, true);
    const a = room.hello();
    room.reflector.disconnect(a.socket);
    assert.equal(room.reflector.isEmpty, false);
    room.advance(GRACE);
    room.reflector.wake();
    assert.equal(room.reflector.isEmpty, true);
    assert.deepEqual(room.storage.keys("client:"), [], "a departed client's secret is forgotten");
  });

  test("resuming within the grace period keeps the identity and sends exactly the events after the resume point", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    room.post(a, 1, "before the drop"); // seq 3: the last event a holds
    room.reflector.disconnect(a.socket);
    room.advance(GRACE / 2);
    room.post(b, 1, "while a is away"); // seq 4
    room.reflector.wake();

    const again = room.hello(new FakeSocket(), { client: a.id, secret: a.secret, seq: 3 });
    assert.deepEqual(again.welcome, {
      type: "welcome",
      version: PROTOCOL_VERSION,
      client: a.id,
      secret: a.secret,
      resumed: true,
      acked: 1,
      time: START + GRACE / 2,
      heartbeat: TEST_SETTINGS.heartbeat,
      snapshot: null,
      rate: null,
      budget: null,
      writeInterval: TEST_SETTINGS.writeInterval,
      from: 3,
      last: 4,
    });
    assert.deepEqual(again.socket.frames.slice(2), [b.socket.ofType("message").at(-1)], "only the missed event follows the challenge and the welcome");

    // Long after the old grace period: no exit, no enter, anywhere.
    room.advance(GRACE);
    room.reflector.wake();
    room.post(again, 2, "back");
    assert.deepEqual(exitsAndEnters(b.socket), [
      [1, "user-enter", a.id],
      [2, "user-enter", b.id],
    ]);
    assert.deepEqual(
      room.storage.events().map((event) => event.type),
      ["user-enter", "user-enter", "message", "message", "message"],
    );
    assert.deepEqual(eventsIn(b.socket.frames).at(-1), [5, "message", a.id]);
    assert.equal(room.reflector.clientCount, 2);
  });

  test("a resume from nothing held (seq 0) gets the whole log", async () => {
    const room = await openRoom();
    const a = room.hello();
    room.post(a, 1);
    room.reflector.disconnect(a.socket);
    const again = room.hello(new FakeSocket(), { client: a.id, secret: a.secret, seq: 0 });
    assert.equal(again.welcome.resumed, true);
    assert.equal(again.welcome.from, 0);
    assert.deepEqual(eventsIn(again.socket.frames), brief(room.storage.events()));
  });

  test("a resume with a wrong secret is refused as identity, gets no welcome, and leaves the real client alone; a plain hello then makes a new client", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    const seenByB = b.socket.mark();
    send(room.reflector, socket, { ...helloFrame(socket), resume: { client: a.id, secret: "guessed", seq: 2 } });
    assert.deepEqual(socket.frames.slice(1), [{ type: "error", code: "identity", message: `client ${a.id} belongs to another connection` }]);
    assert.deepEqual(seenByB(), [], "nobody else hears of it");
    assert.equal(room.storage.events().length, 2);
    const impostor = hello(room.reflector, socket);
    assert.notEqual(impostor.id, a.id);
    assert.equal(impostor.welcome.resumed, false);
    assert.equal(impostor.welcome.acked, 0);
    assert.deepEqual(b.socket.ofType("user-enter").at(-1)?.client, impostor.id);
    assert.equal(a.socket.closed, undefined);
    room.post(b, 1);
    assert.equal(a.socket.ofType("message").length, 1, "the real client still receives");
  });

  test("a resume of an away client with a wrong secret does not save it from its user-exit", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    room.reflector.disconnect(a.socket);
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    send(room.reflector, socket, { ...helloFrame(socket), resume: { client: a.id, secret: `${a.secret}x`, seq: 2 } });
    assert.deepEqual(
      socket.ofType("error").map((error) => error.code),
      ["identity"],
    );
    const other = hello(room.reflector, socket);
    assert.notEqual(other.id, a.id);
    room.advance(GRACE);
    room.reflector.wake();
    assert.deepEqual(exitsAndEnters(b.socket).slice(2), [
      [3, "user-enter", other.id],
      [4, "user-exit", a.id],
    ]);
  });

  test("a resume naming an unknown client is a new client", async () => {
    const room = await openRoom();
    const a = room.hello();
    const stranger = room.hello(new FakeSocket(), { client: "nobody", secret: "anything", seq: 0 });
    assert.notEqual(stranger.id, "nobody");
    assert.equal(stranger.welcome.resumed, false);
    assert.equal(stranger.welcome.acked, 0);
    assert.deepEqual(eventsIn(a.socket.frames).at(-1), [2, "user-enter", stranger.id]);
  });

  test("a resume while the old socket is still attached closes the old socket, which hears nothing more", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    room.post(a, 1);
    const replacement = room.hello(new FakeSocket(), { client: a.id, secret: a.secret, seq: 3 });
    assert.equal(replacement.id, a.id);
    assert.equal(replacement.welcome.resumed, true);
    assert.equal(a.socket.closed?.code, CLOSE_REPLACED);
    const heardByOld = a.socket.mark();

    room.post(b, 1, "after the replacement");
    room.reflector.receive(a.socket, JSON.stringify({ type: "publish", id: 2, payload: "from the replaced socket" }));
    assert.deepEqual(heardByOld(), []);
    assert.deepEqual(eventsIn(replacement.socket.frames), [[4, "message", b.id]]);
    assert.equal(b.socket.ofType("message").filter((message) => message.client === a.id).length, 1, "the replaced socket cannot post");

    // The old socket's close event arrives late: it must not make the resumed client away.
    room.reflector.disconnect(a.socket);
    room.advance(GRACE);
    room.reflector.wake();
    assert.deepEqual(exitsAndEnters(b.socket), [
      [1, "user-enter", a.id],
      [2, "user-enter", b.id],
    ]);
    assert.equal(room.reflector.clientCount, 2);
  });

  test("after the grace period the old credentials make a new client, told which of its posts got through", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    room.post(a, 1);
    room.post(a, 2);
    room.reflector.disconnect(a.socket);
    room.advance(GRACE);
    room.reflector.wake();
    room.reflector.wake();
    assert.deepEqual(
      b.socket.ofType("user-exit").map((exit) => exit.client),
      [a.id],
    );

    const late = room.hello(new FakeSocket(), { client: a.id, secret: a.secret, seq: 5 });
    assert.notEqual(late.id, a.id);
    assert.equal(late.welcome.resumed, false);
    assert.equal(late.welcome.acked, 2);
    assert.deepEqual(eventsIn(b.socket.frames).at(-1), [6, "user-enter", late.id]);
  });

  test("a leave frame exits at once, with no grace period", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    const heardByA = a.socket.mark();
    room.send(a, { type: "leave" });
    assert.deepEqual(b.socket.ofType("user-exit"), [{ type: "user-exit", seq: 3, time: START, client: a.id }]);
    assert.equal(room.reflector.clientCount, 1);
    // Nothing is left waiting for a: the socket's close and the grace period add nothing.
    room.reflector.disconnect(a.socket);
    room.advance(GRACE);
    room.reflector.wake();
    room.post(b, 1);
    assert.equal(b.socket.ofType("user-exit").length, 1);
    assert.deepEqual(heardByA(), []);

    room.send(b, { type: "leave" });
    assert.equal(room.reflector.isEmpty, true);
    assert.equal(room.reflector.nextWakeAt(), undefined);
  });

  test("after every way a socket can go, each event reaches every present socket once and no other", async () => {
    const room = await openRoom();
    const [leaver, dropped, replaced, returning, staying] = [1, 2, 3, 4, 5].map(() => room.hello());
    room.send(leaver!, { type: "leave" });
    room.reflector.disconnect(dropped!.socket);
    const replacement = room.hello(new FakeSocket(), { client: replaced!.id, secret: replaced!.secret, seq: 0 });
    room.reflector.disconnect(returning!.socket);
    const returned = room.hello(new FakeSocket(), { client: returning!.id, secret: returning!.secret, seq: 0 });
    const silent = new FakeSocket();
    room.reflector.connect(silent);
    const present = [replacement, returned, staying!].map((member) => member.socket);
    const gone = [leaver!, dropped!, replaced!, returning!].map((member) => member.socket).concat(silent);
    assert.equal(room.reflector.clientCount, 3);

    const marks = [...present, ...gone].map((socket) => socket.mark());
    room.post(staying!, 1);
    room.advance(GRACE);
    room.reflector.wake();
    const heard = marks.map((after) => eventsIn(after()));
    const expected = [
      [7, "message", staying!.id],
      [8, "user-exit", dropped!.id],
    ];
    assert.deepEqual(heard, [...present.map(() => expected), ...gone.map(() => [])]);
    assert.equal(room.reflector.clientCount, 3);
  });
});

describe("reflector: exactly-once posts", () => {
  test("drops a post whose id is not above the client's last sequenced one, silently", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    for (const id of [1, 1, 2, 2, 1, 3, 3, 4]) room.post(a, id, `id ${id}`);
    assert.deepEqual(
      b.socket.ofType("message").map((message) => message.payload),
      ["id 1", "id 2", "id 3", "id 4"],
    );
    assert.deepEqual(a.socket.ofType("error"), [], "a resend is normal, not an error");
    // Ids are per client: b's first post is new even though a used id 1.
    room.post(b, 1);
    assert.equal(b.socket.ofType("message").length, 5);
  });

  test("refuses a post that skips an id, so a refused post is never overtaken and then lost as a duplicate", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    room.post(a, 1, "first");
    room.post(a, 3, "skips 2");
    assert.deepEqual(
      a.socket.ofType("error").map((error) => error.code),
      ["out-of-order"],
    );
    assert.match(a.socket.ofType("error")[0]!.message, /send posts in order from 2/);
    room.post(a, 2, "second");
    room.post(a, 3, "third");
    assert.deepEqual(
      b.socket.ofType("message").map((message) => message.payload),
      ["first", "second", "third"],
    );
  });

  test("dedupes across a resume, and the resume welcome acks the last sequenced id", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    room.post(a, 1);
    room.post(a, 2);
    room.reflector.disconnect(a.socket);
    const again = room.hello(new FakeSocket(), { client: a.id, secret: a.secret, seq: 3 });
    assert.equal(again.welcome.acked, 2);
    room.post(again, 2, "resent after the resume");
    room.post(again, 3, "new after the resume");
    assert.deepEqual(
      b.socket.ofType("message").map((message) => message.payload),
      ["post 1", "post 2", "new after the resume"],
    );
  });
});

describe("reflector: snapshots", () => {
  test("announces snapshot-due right after the event that makes it due, once", async () => {
    const room = await openRoom({ snapshotEvents: 5 });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 2);
    assert.equal(a.socket.ofType("snapshot-due").length + b.socket.ofType("snapshot-due").length, 0);
    room.post(a, 3);
    room.post(a, 4);
    for (const member of [a, b]) {
      assert.deepEqual(shape(member.socket.frames).slice(-3), ["message 5", "snapshot-due 5", "message 6"]);
      assert.deepEqual(member.socket.ofType("snapshot-due"), [{ type: "snapshot-due", seq: 5 }]);
    }
  });

  test("rounds are at least snapshotGap apart: one held back starts with the first event after the gap", async () => {
    const GAP = 1000;
    const room = await openRoom({ snapshotEvents: 3, snapshotGap: GAP });
    const a = room.hello();
    postMany(room, a, 2); // seq 2 and 3: due at 3, and the first round waits for no gap
    assert.deepEqual(
      a.socket.ofType("snapshot-due").map((due) => due.seq),
      [3],
    );
    room.hash(a, 3, H("state"));
    room.upload(a, 3, ["state"]);
    room.advance(10);
    postMany(room, a, 4, 3); // seq 4 to 7: due by count, held back by the gap
    room.advance(GAP - 11);
    room.post(a, 7); // seq 8, one millisecond early
    assert.deepEqual(
      a.socket.ofType("snapshot-due").map((due) => due.seq),
      [3],
    );
    room.advance(1);
    const after = a.socket.mark();
    room.post(a, 8); // seq 9
    assert.deepEqual(shape(after()), ["message 9", "snapshot-due 9"], "right after the event, as every round");
  });

  test("a unanimous round asks one client for the snapshot, stores it, trims the log, and welcomes from it", async () => {
    const room = await openRoom({ snapshotEvents: 5 });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 3); // seq 3..5: due at 5
    room.hash(a, 5, H("part zero|part one|part two"));
    assert.equal(a.socket.ofType("snapshot-request").length, 0, "waits for every voter");
    room.hash(b, 5, H("part zero|part one|part two"));
    const requests = [a, b].flatMap((member) => member.socket.ofType("snapshot-request").map((request) => [member.id, request.seq]));
    assert.equal(requests.length, 1);
    const uploader = requests[0]![0] === a.id ? a : b;
    assert.equal(requests[0]![1], 5);
    assert.deepEqual(a.socket.ofType("divergence"), [], "no divergence when all agree");

    room.post(b, 1, "after the snapshot point"); // seq 6
    const parts = ["part zero|", "part one|", "part two"];
    room.upload(uploader, 5, parts, [2, 0]);
    assert.equal(a.socket.ofType("snapshot-stored").length, 0, "stored only once every part is in");
    assert.equal(room.storage.values.get("snapshot"), undefined);
    room.upload(uploader, 5, parts, [1]);
    for (const member of [a, b]) assert.deepEqual(member.socket.ofType("snapshot-stored"), [{ type: "snapshot-stored", seq: 5 }]);

    const record = room.storage.values.get("snapshot") as { seq: number; parts: number; lastPosts: Record<string, number> };
    assert.equal(record.seq, 5);
    assert.equal(record.parts, 3);
    assert.equal(record.lastPosts[a.id], 3);
    assert.deepEqual(
      room.storage.keys("snapshot:").map((key) => room.storage.values.get(key)),
      parts,
    );
    assert.deepEqual(room.storage.keys("events:"), ["events:000000000006"], "the events the snapshot covers are trimmed");

    const newcomer = room.hello();
    assert.deepEqual(newcomer.welcome.snapshot, { seq: 5, parts: 3, hash: H(parts.join("")) });
    assert.equal(newcomer.welcome.from, 5);
    assert.equal(newcomer.welcome.last, 7);
    assert.deepEqual(
      newcomer.socket.frames.slice(2, 5),
      parts.map((data, part) => ({ type: "snapshot", seq: 5, part, parts: 3, data })),
    );
    assert.deepEqual(eventsIn(newcomer.socket.frames.slice(5)), [
      [6, "message", b.id],
      [7, "user-enter", newcomer.id],
    ]);
    assert.equal(newcomer.socket.frames.length, 7);
  });

  test("a resume behind the snapshot gets the snapshot; one past it gets only what it missed", async () => {
    const room = await openRoom({ snapshotEvents: 4 });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 2); // due at 4
    room.hash(a, 4, H("state"));
    room.hash(b, 4, H("state"));
    room.upload(a, 4, ["state"]);
    room.post(a, 3); // seq 5
    room.reflector.disconnect(b.socket);

    const behind = room.hello(new FakeSocket(), { client: b.id, secret: b.secret, seq: 3 });
    assert.deepEqual(behind.welcome.snapshot, { seq: 4, parts: 1, hash: H("state") });
    assert.deepEqual(shape(behind.socket.frames), ["challenge", "welcome", "snapshot 4", "message 5"]);

    room.reflector.disconnect(behind.socket);
    const past = room.hello(new FakeSocket(), { client: b.id, secret: b.secret, seq: 4 });
    assert.equal(past.welcome.snapshot, null);
    assert.deepEqual(shape(past.socket.frames), ["challenge", "welcome", "message 5"]);
  });

  test("a snapshot falls due after snapshotInterval even with fewer than snapshotEvents events", async () => {
    const room = await openRoom({ snapshotEvents: 100, snapshotInterval: 60_000 });
    const a = room.hello(); // seq 1
    room.post(a, 1); // seq 2
    room.advance(59_999);
    room.post(a, 2); // seq 3
    assert.deepEqual(a.socket.ofType("snapshot-due"), []);
    room.advance(1);
    room.post(a, 3); // seq 4
    assert.deepEqual(shape(a.socket.frames).slice(-2), ["message 4", "snapshot-due 4"]);
    room.hash(a, 4, "h");
    assert.deepEqual(a.socket.ofType("snapshot-request"), [{ type: "snapshot-request", seq: 4 }]);
  });

  test("only the clients present at the due point vote; a later newcomer is not waited for", async () => {
    const room = await openRoom({ snapshotEvents: 3 });
    const a = room.hello();
    const b = room.hello();
    room.post(a, 1); // seq 3: due
    const c = room.hello(); // seq 4
    room.hash(c, 3, "different");
    room.hash(a, 3, "h");
    room.hash(b, 3, "h");
    assert.deepEqual(a.socket.ofType("snapshot-request"), [{ type: "snapshot-request", seq: 3 }]);
    assert.deepEqual(c.socket.ofType("divergence"), [], "the newcomer's hash did not count");
    assert.deepEqual(c.socket.ofType("error"), [], "a hash for a round it missed is a harmless race");
  });

  test("a second snapshot replaces the first in storage", async () => {
    const room = await openRoom({ snapshotEvents: 3 });
    const a = room.hello();
    postMany(room, a, 2); // due at 3
    room.hash(a, 3, H("onetwo"));
    room.upload(a, 3, ["one", "two"]);
    postMany(room, a, 3, 3); // due at 6
    room.hash(a, 6, H("three"));
    room.upload(a, 6, ["three"]);
    assert.deepEqual(room.storage.keys("snapshot"), ["snapshot", "snapshot:000000000006:0000"]);
    assert.deepEqual(room.storage.keys("events:"), []);
    assert.equal((room.storage.values.get("snapshot") as { seq: number }).seq, 6);
  });

  test("trims more events than storage deletes at once, in batches", async () => {
    const room = await openRoom({ snapshotEvents: 300 });
    const a = room.hello();
    postMany(room, a, 299); // due at 300
    room.hash(a, 300, H("state"));
    room.upload(a, 300, ["state"]);
    assert.deepEqual(room.storage.keys("events:"), []);
  });

  test("an upload with a different part count than it started with is a bad frame", async () => {
    const room = await openRoom({ snapshotEvents: 2 });
    const a = room.hello();
    room.post(a, 1); // due at 2
    room.hash(a, 2, "h");
    room.send(a, { type: "snapshot", seq: 2, part: 0, parts: 2, data: "x" });
    room.send(a, { type: "snapshot", seq: 2, part: 2, parts: 3, data: "y" });
    assert.deepEqual(
      a.socket.ofType("error").map((error) => error.code),
      ["bad-frame"],
    );
    assert.equal(room.storage.values.get("snapshot"), undefined);
  });
});

describe("reflector: divergence", () => {
  test("one differing hash among three: everyone hears of it, and only a majority client is asked to upload", async () => {
    const room = await openRoom({ snapshotEvents: 5 });
    // The odd one out joins first, so that "ask the first voter" would pick the wrong state.
    const odd = room.hello();
    const b = room.hello();
    const c = room.hello();
    postMany(room, b, 2); // seq 4, 5: due
    room.hash(odd, 5, "minority");
    room.hash(b, 5, "majority");
    room.hash(c, 5, "majority");
    const divergence = {
      type: "divergence",
      seq: 5,
      voters: 3,
      votes: [
        { hash: "majority", clients: [b.id, c.id] },
        { hash: "minority", clients: [odd.id] },
      ],
    };
    for (const member of [odd, b, c]) assert.deepEqual(member.socket.ofType("divergence"), [divergence]);
    assert.deepEqual(odd.socket.ofType("snapshot-request"), []);
    assert.equal(b.socket.ofType("snapshot-request").length + c.socket.ofType("snapshot-request").length, 1);
  });

  test("two voters that disagree: divergence is reported and nobody is asked for a snapshot", async () => {
    const room = await openRoom({ snapshotEvents: 5 });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 3); // due at 5
    room.hash(a, 5, "x");
    room.hash(b, 5, "y");
    for (const member of [a, b]) {
      assert.equal(member.socket.ofType("divergence").length, 1);
      assert.deepEqual(member.socket.ofType("snapshot-request"), []);
    }
    // The round is over: the next due point opens a new one.
    postMany(room, a, 5, 4);
    assert.deepEqual(
      a.socket.ofType("snapshot-due").map((due) => due.seq),
      [5, 10],
    );
  });

  test("a voter that disconnects is not waited for, whether it goes before or after the others vote", async () => {
    for (const when of ["before", "after"] as const) {
      const room = await openRoom({ snapshotEvents: 5 });
      const a = room.hello();
      const b = room.hello();
      const c = room.hello();
      postMany(room, a, 2); // due at 5
      if (when === "before") room.reflector.disconnect(c.socket);
      room.hash(a, 5, "h");
      room.hash(b, 5, "h");
      if (when === "after") {
        assert.deepEqual(a.socket.ofType("snapshot-request"), [], "still waiting for c");
        room.reflector.disconnect(c.socket);
      }
      assert.deepEqual(a.socket.ofType("snapshot-request"), [{ type: "snapshot-request", seq: 5 }], `c disconnecting ${when}`);
    }
  });

  test("a voter that sends leave is not waited for either", async () => {
    const room = await openRoom({ snapshotEvents: 5 });
    const a = room.hello();
    const b = room.hello();
    const c = room.hello();
    postMany(room, a, 2); // due at 5
    room.hash(a, 5, "h");
    room.hash(b, 5, "h");
    room.send(c, { type: "leave" });
    assert.deepEqual(a.socket.ofType("snapshot-request"), [{ type: "snapshot-request", seq: 5 }]);
  });

  test("an uploader that sends leave makes the reflector ask the next majority client", async () => {
    const room = await openRoom({ snapshotEvents: 4 });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 2); // due at 4
    room.hash(a, 4, "h");
    room.hash(b, 4, "h");
    assert.equal(a.socket.ofType("snapshot-request").length, 1);
    room.send(a, { type: "leave" });
    assert.deepEqual(b.socket.ofType("snapshot-request"), [{ type: "snapshot-request", seq: 4 }]);
  });

  test("a round whose voters never answer is abandoned at voteTimeout", async () => {
    const room = await openRoom({ snapshotEvents: 5 });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 3); // due at 5
    room.advance(VOTE_TIMEOUT - 1);
    room.reflector.wake();
    room.advance(1);
    assert.equal(room.reflector.nextWakeAt(), room.clock.now, "the deadline is due");
    room.reflector.wake();
    // Late hashes no longer count, and are no error: the round just closed.
    room.hash(a, 5, "h");
    room.hash(b, 5, "h");
    for (const member of [a, b]) {
      assert.deepEqual(member.socket.ofType("snapshot-request"), []);
      assert.deepEqual(member.socket.ofType("error"), []);
    }
    // The abandoned round no longer blocks the next one, and is owed: the first event after another voteTimeout
    // starts it again, although SNAPSHOT_EVENTS have not passed.
    postMany(room, a, 1, 4);
    assert.deepEqual(
      a.socket.ofType("snapshot-due").map((due) => due.seq),
      [5],
      "not before another voteTimeout",
    );
    room.advance(VOTE_TIMEOUT);
    postMany(room, a, 1, 5);
    assert.deepEqual(
      a.socket.ofType("snapshot-due").map((due) => due.seq),
      [5, 7],
    );
  });

  test("a failed round is tried again in a quiet room, each time after twice as long", async () => {
    const room = await openRoom({ snapshotEvents: 5 });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 3); // due at 5
    room.hash(a, 5, "x");
    room.hash(b, 5, "y"); // no majority
    postMany(room, a, 1, 4); // seq 6, then silence
    const dues = () => a.socket.ofType("snapshot-due").map((due) => due.seq);
    const started = room.clock.now;
    assert.equal(room.reflector.nextWakeAt(), started + VOTE_TIMEOUT, "the retry is the next thing due");
    room.advance(VOTE_TIMEOUT);
    room.reflector.wake();
    assert.deepEqual(dues(), [5, 6], "retried with no event to start it");
    room.hash(a, 6, "x");
    room.hash(b, 6, "y"); // fails again
    postMany(room, a, 1, 5);
    assert.equal(room.reflector.nextWakeAt(), room.clock.now + 2 * VOTE_TIMEOUT);
    room.advance(2 * VOTE_TIMEOUT);
    room.reflector.wake();
    assert.deepEqual(dues(), [5, 6, 7]);
    room.hash(a, 7, H("state at 7"));
    room.hash(b, 7, H("state at 7"));
    room.upload(a, 7, ["state at 7"]);
    assert.deepEqual(
      a.socket.ofType("snapshot-stored").map((stored) => stored.seq),
      [7],
    );
    assert.equal(room.reflector.nextWakeAt(), undefined, "nothing is owed once every event is in a snapshot");
  });

  test("a full log starts a round at the event that filled it, and a failed one is tried again at the same point until one empties the log", async () => {
    const room = await openRoom({ maxLog: 1000 });
    const a = room.hello();
    const b = room.hello();
    let id = 0;
    while (a.socket.ofType("error").length === 0) room.post(a, ++id, "x".repeat(100));
    assert.equal(a.socket.ofType("error")[0]!.code, "log-full");
    const full = a.socket.ofType("message").at(-1)!.seq;
    const dues = () => a.socket.ofType("snapshot-due").map((due) => due.seq);
    assert.deepEqual(dues(), [full], "the post that filled the log started the round");
    room.hash(a, full, "x");
    room.hash(b, full, "y"); // no majority; and no event can come
    assert.equal(room.reflector.nextWakeAt(), room.clock.now + VOTE_TIMEOUT);
    room.advance(VOTE_TIMEOUT);
    room.reflector.wake();
    assert.deepEqual(dues(), [full, full], "the same point again");
    room.hash(a, full, H("state"));
    room.hash(b, full, H("state"));
    room.upload(a, full, ["state"]);
    assert.deepEqual(a.socket.ofType("snapshot-stored"), [{ type: "snapshot-stored", seq: full }]);
    room.post(a, id, "taken again");
    assert.equal(a.socket.ofType("message").at(-1)!.id, id, "the refused post is taken now");
  });

  test("a round that fell due while another ran starts when the gap ends, without waiting for an event", async () => {
    const room = await openRoom({ snapshotEvents: 5, snapshotGap: 1000 });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 3); // due at 5
    postMany(room, a, 5, 4); // seq 6..10: due again, but a round is running
    room.hash(a, 5, H("state at 5"));
    room.hash(b, 5, H("state at 5"));
    room.upload(a, 5, ["state at 5"]);
    assert.deepEqual(
      a.socket.ofType("snapshot-stored").map((stored) => stored.seq),
      [5],
    );
    const dues = () => a.socket.ofType("snapshot-due").map((due) => due.seq);
    assert.deepEqual(dues(), [5], "within the gap");
    assert.equal(room.reflector.nextWakeAt(), room.clock.now + 1000);
    room.advance(1000);
    room.reflector.wake();
    assert.deepEqual(dues(), [5, 10]);
  });

  test("an uploader that disconnects makes the reflector ask the next majority client", async () => {
    const room = await openRoom({ snapshotEvents: 5 });
    const a = room.hello();
    const b = room.hello();
    const c = room.hello();
    postMany(room, a, 2); // due at 5
    for (const member of [a, b, c]) room.hash(member, 5, H("from the second uploader"));
    const first = [a, b, c].find((member) => member.socket.ofType("snapshot-request").length > 0)!;
    const rest = [a, b, c].filter((member) => member !== first);
    room.upload(first, 5, ["from the first uploader", "never finished"], [0]);
    room.reflector.disconnect(first.socket);
    const second = rest.filter((member) => member.socket.ofType("snapshot-request").length > 0);
    assert.equal(second.length, 1);
    room.upload(second[0]!, 5, ["from the second ", "uploader"]);
    for (const member of rest) assert.deepEqual(member.socket.ofType("snapshot-stored"), [{ type: "snapshot-stored", seq: 5 }]);
    assert.deepEqual(
      room.storage.keys("snapshot:").map((key) => room.storage.values.get(key)),
      ["from the second ", "uploader"],
    );
  });

  test("an uploader that does not deliver within voteTimeout is passed over, and its late parts are ignored", async () => {
    const room = await openRoom({ snapshotEvents: 4 });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 2); // due at 4
    room.hash(a, 4, H("fresh"));
    room.hash(b, 4, H("fresh"));
    assert.equal(a.socket.ofType("snapshot-request").length, 1);
    room.advance(VOTE_TIMEOUT);
    room.reflector.wake();
    assert.deepEqual(b.socket.ofType("snapshot-request"), [{ type: "snapshot-request", seq: 4 }]);
    room.upload(a, 4, ["stale"]);
    assert.equal(room.storage.values.get("snapshot"), undefined);
    assert.deepEqual(a.socket.ofType("error"), []);
    room.upload(b, 4, ["fresh"]);
    assert.deepEqual(
      room.storage.keys("snapshot:").map((key) => room.storage.values.get(key)),
      ["fresh"],
    );
  });
});

describe("reflector: snapshots that cannot be forged", () => {
  test("an upload that does not hash to the majority's vote is not stored: the next member of the majority is asked, and the log stays", async () => {
    const room = await openRoom({ snapshotEvents: 5 });
    const [a, b, c] = [room.hello(), room.hello(), room.hello()];
    postMany(room, a, 2); // due at 5
    for (const member of [a, b, c]) room.hash(member, 5, H("the state everyone holds"));
    const first = [a, b, c].find((member) => member.socket.ofType("snapshot-request").length > 0)!;
    room.upload(first, 5, ["a forged state"]);
    assert.equal(room.storage.values.get("snapshot"), undefined, "not stored");
    assert.equal(room.storage.events().length, 5, "the log is whole");
    const next = [a, b, c].filter((member) => member !== first).find((member) => member.socket.ofType("snapshot-request").length > 0)!;
    assert.ok(next !== undefined, "another member is asked");
    room.upload(next, 5, ["the state everyone holds"]);
    assert.deepEqual(
      room.storage.keys("snapshot:").map((key) => room.storage.values.get(key)),
      ["the state everyone holds"],
    );
    assert.equal(room.hello().welcome.snapshot?.hash, H("the state everyone holds"));
  });

  test("a lone vote among members that do not vote wins nothing: no upload is asked for, nothing is stored", async () => {
    const room = await openRoom({ snapshotEvents: 5 });
    const [liar, quiet1, quiet2] = [room.hello(), room.hello(), room.hello()];
    postMany(room, liar, 2); // due at 5
    room.hash(liar, 5, H("made up"));
    room.advance(VOTE_TIMEOUT);
    room.reflector.wake();
    assert.deepEqual(liar.socket.ofType("snapshot-request"), []);
    room.upload(liar, 5, ["made up"]);
    assert.equal(room.storage.values.get("snapshot"), undefined);
    assert.deepEqual(
      [quiet1, quiet2].map((member) => member.socket.ofType("snapshot-stored").length),
      [0, 0],
    );
  });

  test("a hash checked later is stored when it matches; a check that answers after its round ended changes nothing", async () => {
    const checks: ((hash: string) => void)[] = [];
    const storage = new MemoryStorage();
    const clock = { now: START };
    const reflector = await Reflector.open<FakeSocket>({
      ...TEST_SETTINGS,
      snapshotEvents: 3,
      storage,
      clock: () => clock.now,
      newToken,
      verifyHello,
      digest: (text) => new Promise<string>((resolve) => checks.push(() => resolve(H(text)))),
    });
    const a = hello(reflector);
    for (const id of [1, 2]) send(reflector, a.socket, { type: "publish", id, payload: `post ${id}` }); // due at 3
    send(reflector, a.socket, { type: "hash", seq: 3, hash: H("state") });
    send(reflector, a.socket, { type: "snapshot", seq: 3, part: 0, parts: 1, data: "state" });
    assert.equal(storage.values.get("snapshot"), undefined, "not before the check answers");
    checks[0]!("");
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(a.socket.ofType("snapshot-stored"), [{ type: "snapshot-stored", seq: 3 }]);

    for (const id of [3, 4, 5]) send(reflector, a.socket, { type: "publish", id, payload: `post ${id}` }); // due at 6
    send(reflector, a.socket, { type: "hash", seq: 6, hash: H("later state") });
    send(reflector, a.socket, { type: "snapshot", seq: 6, part: 0, parts: 1, data: "later state" });
    clock.now += VOTE_TIMEOUT;
    reflector.wake(); // the upload's time is up before its check answers
    checks[1]!("");
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(a.socket.ofType("snapshot-stored"), [{ type: "snapshot-stored", seq: 3 }], "the ended round stored nothing");
  });
});

describe("reflector: restart from storage", () => {
  test("reloads the log; clients of the old run keep their place for a grace period, then exit", async () => {
    const storage = new MemoryStorage();
    const first = await openRoom({}, storage);
    const old = first.hello();
    first.post(old, 1, "before the restart");

    const second = await openRoom({}, storage, START + 5000);
    const newcomer = second.hello();
    assert.deepEqual(eventsIn(newcomer.socket.frames), [
      [1, "user-enter", old.id],
      [2, "message", old.id],
      [3, "user-enter", newcomer.id],
    ]);
    assert.equal(second.reflector.nextWakeAt(), START + 5000 + GRACE, "the room wakes when the old client's grace period ends");
    second.advance(GRACE);
    second.reflector.wake();
    assert.deepEqual(newcomer.socket.ofType("user-exit"), [{ type: "user-exit", seq: 4, time: START + 5000 + GRACE, client: old.id }]);
    assert.deepEqual(storage.keys("events:"), ["events:000000000001", "events:000000000002", "events:000000000003", "events:000000000004"]);
    assert.deepEqual(storage.keys("client:"), [`client:${newcomer.id}`]);
  });

  test("restores the snapshot and the tail; old clients resume with their secrets and their post ids stay deduped", async () => {
    const storage = new MemoryStorage();
    const first = await openRoom({ snapshotEvents: 5 }, storage);
    const a = first.hello();
    const b = first.hello();
    const gone = first.hello();
    postMany(first, a, 2); // seq 4, 5: due
    for (const member of [a, b, gone]) first.hash(member, 5, H("snapshot"));
    first.upload(a, 5, ["snap", "shot"]);
    first.post(b, 1, "in the tail"); // seq 6
    // a's last post id now lives only in the snapshot record; b's only in the tail.
    assert.deepEqual(storage.keys("events:"), ["events:000000000006"]);

    const second = await openRoom({ snapshotEvents: 5 }, storage, first.clock.now + 1000);
    const newcomer = second.hello();
    assert.deepEqual(newcomer.welcome.snapshot, { seq: 5, parts: 2, hash: H("snapshot") });
    assert.deepEqual(shape(newcomer.socket.frames), ["challenge", "welcome", "snapshot 5", "snapshot 5", "message 6", "user-enter 7"]);
    assert.deepEqual(
      newcomer.socket.ofType("snapshot").map((part) => part.data),
      ["snap", "shot"],
    );

    const a2 = second.hello(new FakeSocket(), { client: a.id, secret: a.secret, seq: 5 });
    const b2 = second.hello(new FakeSocket(), { client: b.id, secret: b.secret, seq: 6 });
    assert.deepEqual([a2.id, a2.welcome.resumed, a2.welcome.acked], [a.id, true, 2]);
    assert.deepEqual([b2.id, b2.welcome.resumed, b2.welcome.acked], [b.id, true, 1]);
    assert.deepEqual(shape(a2.socket.frames), ["challenge", "welcome", "message 6", "user-enter 7"]);
    assert.deepEqual(shape(b2.socket.frames), ["challenge", "welcome", "user-enter 7"]);

    second.post(a2, 2, "resent by a");
    second.post(b2, 1, "resent by b");
    second.post(a2, 3, "new from a");
    assert.deepEqual(
      newcomer.socket.ofType("message").map((message) => message.payload),
      ["in the tail", "new from a"],
    );

    second.advance(GRACE);
    second.reflector.wake();
    assert.deepEqual(exitsAndEnters(newcomer.socket).slice(-2), [
      [7, "user-enter", newcomer.id],
      [9, "user-exit", gone.id],
    ]);
    assert.equal(newcomer.socket.ofType("user-exit").length, 1, "only the client that did not come back exits");
  });

  test("resumes after a restart from storage alone: a new Reflector shares no memory with the old one", async () => {
    const storage = new MemoryStorage();
    const first = await openRoom({}, storage);
    const a = first.hello();
    for (let id = 1; id <= 7; id++) first.post(a, id);
    const second = await openRoom({}, storage, START + 1);
    const again = second.hello(new FakeSocket(), { client: a.id, secret: a.secret, seq: 2 });
    assert.equal(again.welcome.resumed, true);
    assert.equal(again.welcome.acked, 7);
    assert.equal(again.welcome.time, START, "replicated time continues from the log");
    assert.equal(second.reflector.isEmpty, false);
  });

  test("removes events a snapshot covers that a stopped server had not trimmed yet", async () => {
    const storage = new MemoryStorage();
    const first = await openRoom({ snapshotEvents: 3 }, storage);
    const a = first.hello();
    postMany(first, a, 2); // due at 3
    first.hash(a, 3, H("state"));
    first.upload(a, 3, ["state"]);
    first.post(a, 3); // seq 4
    // As if the server had stopped between storing the snapshot and deleting event 2.
    storage.values.set("events:000000000002", [JSON.stringify({ type: "message", seq: 2, time: START, client: a.id, id: 1, payload: "post 1" })]);

    const second = await openRoom({}, storage, START + 1);
    assert.deepEqual(storage.keys("events:"), ["events:000000000004"]);
    const newcomer = second.hello();
    assert.deepEqual(shape(newcomer.socket.frames), ["challenge", "welcome", "snapshot 3", "message 4", "user-enter 5"]);
  });
});

describe("reflector: sleeping and waking", () => {
  /** The room slept: a new Reflector on the same storage takes back the sockets that stayed open. */
  const wake = (room: Awaited<ReturnType<typeof openRoom>>, sockets: FakeSocket[], settings: Partial<ReflectorSettings> = {}) =>
    openRoom(settings, room.storage, room.clock.now, newToken, { sockets });

  test("a room rebuilt from its storage and its open sockets shows its clients nothing: no exit, no enter, the order goes on", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    room.post(a, 1, "before the sleep");
    const heard = [a.socket.mark(), b.socket.mark()];

    room.advance(60_000);
    const woken = await wake(room, [a.socket, b.socket]);
    assert.equal(woken.reflector.clientCount, 2, "both present again");
    woken.post(a, 1, "a resend of post 1, from before the sleep");
    woken.post(b, 1, "after the sleep");
    woken.advance(GRACE);
    woken.reflector.wake();
    for (const after of heard) assert.deepEqual(eventsIn(after()), [[4, "message", b.id]], "the resend was a duplicate; nothing else happened");
    assert.equal(woken.reflector.nextWakeAt(), undefined, "no grace period was started");
    // Identities carry over: a resume with the old secret on a new socket works, and replaces the old socket.
    const again = woken.hello(new FakeSocket(), { client: a.id, secret: a.secret, seq: 4 });
    assert.deepEqual([again.id, again.welcome.resumed, again.welcome.acked], [a.id, true, 1]);
    assert.deepEqual(a.socket.closed, { code: CLOSE_REPLACED, reason: "this client resumed on a newer connection" });
  });

  test("pending deadlines survive the sleep: an away client's grace period, a silent socket's hello timeout, a requested tick", async () => {
    const room = await openRoom({ helloTimeout: 30_000 });
    const a = room.hello();
    const away = room.hello();
    room.reflector.disconnect(away.socket);
    const silent = new FakeSocket();
    room.reflector.connect(silent);
    room.send(a, { type: "tick-request", time: START + 20_000 });

    room.advance(5000);
    const woken = await wake(room, [a.socket, silent], { helloTimeout: 30_000 });
    assert.equal(woken.reflector.nextWakeAt(), START + GRACE, "the grace period still ends where it did");
    woken.advance(GRACE - 5000);
    woken.reflector.wake();
    assert.deepEqual(eventsIn(a.socket.frames).at(-1), [3, "user-exit", away.id]);
    assert.equal(woken.reflector.nextWakeAt(), START + 20_000, "then the tick");
    woken.advance(10_000);
    woken.reflector.wake();
    assert.deepEqual(a.socket.ofType("tick"), [{ type: "tick", time: START + 20_000 }]);
    woken.advance(10_000);
    woken.reflector.wake();
    assert.deepEqual(silent.closed, { code: CLOSE_NO_HELLO, reason: "no hello" }, "30 s after it opened, before the sleep");
  });

  test("clients whose sockets died with the server leave one grace period after the restart, however often the room sleeps meanwhile", async () => {
    const room = await openRoom();
    const a = room.hello();
    const b = room.hello();
    room.advance(1000);
    // A restart: no socket survives. The room wakes, sleeps before the grace period ends, and wakes again.
    const restarted = await wake(room, []);
    const restartedAt = restarted.clock.now;
    assert.equal(restarted.reflector.nextWakeAt(), restartedAt + GRACE);
    restarted.advance(GRACE / 2);
    const again = await wake(restarted, []);
    assert.equal(again.reflector.nextWakeAt(), restartedAt + GRACE, "the grace period did not start over");
    const watcher = again.hello(); // a newcomer sees the exits when they come
    again.advance(GRACE / 2);
    again.reflector.wake();
    assert.deepEqual(
      exitsAndEnters(watcher.socket)
        .filter(([, type]) => type === "user-exit")
        .map(([, , client]) => client),
      [a.id, b.id],
    );
  });

  test("a quiet room is not woken for the snapshot interval alone: the next event starts the round it made due", async () => {
    const room = await openRoom({ snapshotInterval: 60_000 });
    const a = room.hello();
    room.post(a, 1);
    assert.equal(room.reflector.nextWakeAt(), undefined, "nothing to wake for");
    room.advance(10 * 60_000);
    assert.deepEqual(a.socket.ofType("snapshot-due"), []);
    room.post(a, 2);
    assert.deepEqual(
      a.socket.ofType("snapshot-due").map((due) => due.seq),
      [3],
    );
  });

  test("a room that sleeps after every event still reaches its snapshot rounds, by events and by time", async () => {
    for (const settings of [{ snapshotEvents: 5 }, { snapshotInterval: 60_000 }]) {
      let room = await openRoom(settings);
      const a = room.hello();
      for (let id = 1; id <= 8; id++) {
        room.advance(12_000);
        room = await wake(room, [a.socket], settings);
        room.post(a, id);
      }
      const due = a.socket.ofType("snapshot-due").map((frame) => frame.seq);
      assert.ok(due.length > 0 && due[0]! <= 6, `${JSON.stringify(settings)}: rounds due at ${JSON.stringify(due)}`);
    }
  });

  test("a snapshot round goes on across the sleep: the votes cast before it count", async () => {
    const room = await openRoom({ snapshotEvents: 4, writeInterval: 1000 });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 2); // due at 4
    room.hash(a, 4, H("state"));
    room.advance(1000);
    room.reflector.wake(); // the room record is written: it may sleep now

    const woken = await wake(room, [a.socket, b.socket], { snapshotEvents: 4, writeInterval: 1000 });
    woken.hash(b, 4, H("state"));
    assert.deepEqual(a.socket.ofType("snapshot-request"), [{ type: "snapshot-request", seq: 4 }]);
    woken.upload(a, 4, ["state"]);
    assert.deepEqual(b.socket.ofType("snapshot-stored"), [{ type: "snapshot-stored", seq: 4 }]);
  });

  test("whatever waits in memory is written within writeInterval, so the room has it whenever it sleeps", async () => {
    const room = await openRoom({ writeInterval: 1000 });
    const a = room.hello();
    room.post(a, 1, "acknowledged");
    room.send(a, { type: "tick-request", time: START + 60_000 });
    assert.equal(room.reflector.nextWakeAt(), START + 1000, "the flush comes first");
    room.advance(1000);
    room.reflector.wake();
    const woken = await wake(room, [a.socket], { writeInterval: 1000 });
    assert.equal(woken.reflector.nextWakeAt(), START + 60_000, "the requested tick was written too");
    const newcomer = woken.hello();
    assert.deepEqual(eventsIn(newcomer.socket.frames).slice(0, 2), [
      [1, "user-enter", a.id],
      [2, "message", a.id],
    ]);
  });

  test("a socket that says it is a client the room does not know is closed; one that had not said hello still may", async () => {
    const room = await openRoom();
    const stranger = new FakeSocket();
    stranger.setState({ opened: START, nonce: "n1", client: "nobody-we-know" });
    const waiting = new FakeSocket();
    waiting.setState({ opened: START, nonce: "n2" });
    const garbled = new FakeSocket();
    garbled.setState({ opened: "yesterday" } as unknown as SocketState);
    const woken = await wake(room, [stranger, waiting, garbled]);
    assert.equal(stranger.closed?.code, CLOSE_REPLACED);
    assert.equal(garbled.closed?.code, CLOSE_REPLACED);
    send(woken.reflector, waiting, { ...helloFrame(waiting) });
    assert.equal(waiting.ofType("welcome").length, 1);
  });

  test("an empty room is deleted when its retention ends after its last event, and not before", async () => {
    const room = await openRoom({ retention: 60_000 });
    const a = room.hello();
    room.post(a, 1);
    room.send(a, { type: "leave" });
    assert.equal(room.reflector.nextWakeAt(), START + 60_000);
    room.advance(59_999);
    room.reflector.wake();
    assert.notDeepEqual(room.storage.keys(), []);
    room.advance(1);
    room.reflector.wake();
    assert.deepEqual(room.storage.keys(), [], "storage is empty");
    assert.equal(room.reflector.nextWakeAt(), undefined, "and nothing is due");
    const newcomer = room.hello();
    assert.deepEqual(eventsIn(newcomer.socket.frames), [[1, "user-enter", newcomer.id]], "a later visitor starts a fresh room");
  });

  test("a room deleted and started again counts its snapshot rounds afresh", async () => {
    const room = await openRoom({ retention: 60_000, snapshotEvents: 5 });
    const a = room.hello();
    postMany(room, a, 6); // due at 5
    room.send(a, { type: "leave" });
    room.advance(60_000 + 10_000);
    room.reflector.wake();
    assert.deepEqual(room.storage.keys(), [], "deleted");
    const b = room.hello(); // seq 1 of the new room
    postMany(room, b, 4); // seq 2 to 5
    assert.deepEqual(
      b.socket.ofType("snapshot-due").map((due) => due.seq),
      [5],
      "due after five events of the new room",
    );
  });

  test("a room with a client is never deleted, however long it is quiet", async () => {
    const room = await openRoom({ retention: 60_000 });
    const a = room.hello();
    room.post(a, 1);
    room.advance(10 * 60_000);
    room.reflector.wake();
    assert.equal(room.reflector.nextWakeAt(), undefined);
    assert.equal(room.storage.events().length, 2);
  });
});

describe("reflector: coalesced storage writes", () => {
  /** Memory storage that also records how many events each put of events wrote. */
  class CountingStorage extends MemoryStorage {
    readonly puts: number[] = [];
    override put(entries: Record<string, unknown>): Promise<void> {
      const chunks = Object.entries(entries).filter(([key]) => key.startsWith("events:"));
      if (chunks.length > 0) this.puts.push(chunks.reduce((count, [, texts]) => count + (texts as string[]).length, 0));
      return super.put(entries);
    }
  }
  const WRITE_INTERVAL = 100;

  test("writes the events of a burst in one operation, writeInterval after the first, and wakes for it", async () => {
    const storage = new CountingStorage();
    const room = await openRoom({ writeInterval: WRITE_INTERVAL }, storage);
    const a = room.hello();
    room.advance(10);
    const putsBefore = storage.puts.length;
    postMany(room, a, 5);
    assert.deepEqual(brief(storage.events()), [[1, "user-enter", a.id]], "no post is written before the interval ends");
    assert.equal(room.reflector.nextWakeAt(), START + 10 + WRITE_INTERVAL, "due writeInterval after the first unwritten event");
    room.advance(WRITE_INTERVAL - 1);
    room.reflector.wake();
    assert.equal(storage.events().length, 1, "nor one millisecond before");
    room.advance(1);
    room.reflector.wake();
    assert.deepEqual(brief(storage.events()), eventsIn(a.socket.frames), "the enter and the five posts, in order");
    assert.deepEqual(storage.puts.slice(putsBefore), [5], "the posts in one put");
    assert.deepEqual(storage.keys("events:"), ["events:000000000001", "events:000000000002"], "as one chunk after the enter's");
    assert.equal(room.reflector.nextWakeAt(), undefined, "then nothing is due");
  });

  test("writes a chunk at once when the next event would take it past 64,000 code units, and one event always fits", async () => {
    const storage = new CountingStorage();
    const room = await openRoom({ writeInterval: WRITE_INTERVAL }, storage);
    const a = room.hello();
    for (let id = 1; id <= 4; id++) room.post(a, id, "x".repeat(20_000));
    assert.deepEqual(storage.puts.slice(1), [3], "three posts fill a chunk; the fourth starts the next one, before any wake");
    room.post(a, 5, "y".repeat(MAX_FRAME_LENGTH - 100));
    room.advance(WRITE_INTERVAL);
    room.reflector.wake();
    assert.deepEqual(storage.puts.slice(1), [3, 1, 1], "the largest post a frame can carry is a chunk of its own");
    for (const key of storage.keys("events:")) {
      const length = (storage.values.get(key) as string[]).reduce((total, text) => total + text.length, 0);
      assert.ok(length <= 64_000, `${key} holds ${length} code units`);
    }
    assert.equal(storage.events().length, 6);
  });

  test("a snapshot writes the waiting events first, so storage holds the snapshot and every event after it", async () => {
    const storage = new MemoryStorage();
    const room = await openRoom({ writeInterval: WRITE_INTERVAL, snapshotEvents: 4 }, storage);
    const a = room.hello();
    postMany(room, a, 3); // due at 4
    room.hash(a, 4, H("state"));
    postMany(room, a, 2, 4); // 5 and 6, unwritten
    room.upload(a, 4, ["state"]);
    assert.deepEqual(storage.keys("events:"), ["events:000000000002"], "the enter's chunk is trimmed; the chunk of 2 to 6 stays");
    const restarted = await openRoom({}, storage, START + 1);
    assert.deepEqual(shape(restarted.hello().socket.frames), ["challenge", "welcome", "snapshot 4", "message 5", "message 6", "user-enter 7"]);
  });

  test("membership records never run ahead of the log: an enter is written with its client's record, an exit before it goes", async () => {
    const storage = new MemoryStorage();
    const room = await openRoom({ writeInterval: WRITE_INTERVAL }, storage);
    const a = room.hello();
    postMany(room, a, 2);
    const b = room.hello();
    assert.deepEqual(brief(storage.events()), [
      [1, "user-enter", a.id],
      [2, "message", a.id],
      [3, "message", a.id],
      [4, "user-enter", b.id],
    ]);
    assert.deepEqual(storage.keys("client:"), [`client:${a.id}`, `client:${b.id}`].sort());
    room.post(b, 1);
    room.send(b, { type: "leave" });
    assert.deepEqual(brief(storage.events()).slice(4), [
      [5, "message", b.id],
      [6, "user-exit", b.id],
    ]);
    assert.deepEqual(storage.keys("client:"), [`client:${a.id}`]);
  });

  test("a crash before the write loses only the log's tail: a client that saw it gets the room's state and resends its posts", async () => {
    const storage = new MemoryStorage();
    const first = await openRoom({ writeInterval: WRITE_INTERVAL }, storage);
    const a = first.hello();
    postMany(first, a, 2);
    first.advance(WRITE_INTERVAL);
    first.reflector.wake(); // seq 1 to 3 are written
    postMany(first, a, 2, 3); // 4 and 5 are lost with the server
    const second = await openRoom({ writeInterval: WRITE_INTERVAL }, storage, START + 1);
    const again = second.hello(new FakeSocket(), { client: a.id, secret: a.secret, seq: 5 });
    assert.equal(again.welcome.resumed, true);
    assert.equal(again.welcome.acked, 2, "posts 3 and 4 are not acknowledged, so the client sends them again");
    assert.equal(again.welcome.from, 0, "its replica is ahead of the room: it starts over from the room's log");
    assert.deepEqual(eventsIn(again.socket.frames), brief(storage.events()));
    second.post(again, 3);
    assert.deepEqual(eventsIn(again.socket.frames).at(-1), [4, "message", a.id]);
  });
});

describe("reflector: a restart that lost the log's tail", () => {
  test("a client that saw lost events starts from the room's state, even once their numbers are reused", async () => {
    const storage = new MemoryStorage();
    const first = await openRoom({ writeInterval: 100 }, storage);
    const a = first.hello();
    const b = first.hello();
    first.post(a, 1); // seq 3
    first.advance(100);
    first.reflector.wake(); // 1 to 3 are written
    postMany(first, a, 2, 2); // seq 4 and 5, lost with the server

    const second = await openRoom({ writeInterval: 100 }, storage, START + 1000);
    const again = second.hello(new FakeSocket(), { client: a.id, secret: a.secret, seq: 3 });
    assert.equal(again.welcome.from, 3, "what a client saw up to the stored log is the room's too");
    second.post(again, 2, "new post 2"); // seq 4 and 5 again, other events
    second.post(again, 3, "new post 3");
    const late = second.hello(new FakeSocket(), { client: b.id, secret: b.secret, seq: 5 });
    assert.equal(late.welcome.resumed, true);
    assert.equal(late.welcome.from, 0, "its events 4 and 5 were not these: it gets the whole log");
    assert.deepEqual(
      late.socket.ofType("message").map((message) => message.payload),
      ["post 1", "new post 2", "new post 3"],
    );
  });
});

describe("reflector: a room under load", () => {
  /** Timers the test fires by hand, in the order they are due. */
  class ManualTimers {
    private readonly due: { at: number; callback: () => void }[] = [];
    constructor(private readonly clock: { now: number }) {}
    readonly set = (ms: number, callback: () => void) => void this.due.push({ at: this.clock.now + ms, callback });
    /** Fires every timer due by now. */
    fire(): void {
      for (const timer of this.due.filter((timer) => timer.at <= this.clock.now)) {
        this.due.splice(this.due.indexOf(timer), 1);
        timer.callback();
      }
    }
    get pending(): number[] {
      return this.due.map((timer) => timer.at);
    }
  }

  async function loadedRoom(settings: Partial<ReflectorSettings>) {
    const storage = new MemoryStorage();
    const clock = { now: START };
    const timers = new ManualTimers(clock);
    const reflector = await Reflector.open<FakeSocket>({
      ...TEST_SETTINGS,
      ...settings,
      storage,
      clock: () => clock.now,
      newToken,
      verifyHello,
      digest: H,
      setTimer: timers.set,
    });
    return { reflector, storage, clock, timers, hello: (socket?: FakeSocket, resume?: Resume) => hello(reflector, socket, resume) };
  }
  const codes = (socket: FakeSocket) => socket.ofType("error").map((error) => error.code);

  test("light traffic goes out at once; past IMMEDIATE_PER_WINDOW frames in a coalesce window, the rest go out as one array frame when it ends", async () => {
    const K = IMMEDIATE_PER_WINDOW;
    const room = await loadedRoom({ coalesce: 5 });
    const a = room.hello();
    const b = room.hello();
    room.clock.now += 10;
    const heard = b.socket.markTexts();
    const seqsIn = (text: string) => {
      const parsed = JSON.parse(text) as ReflectedEvent | ReflectedEvent[];
      return (Array.isArray(parsed) ? parsed : [parsed]).map((frame) => frame.seq);
    };
    const windowStart = room.clock.now;
    let id = 0;
    const post = () => send(room.reflector, a.socket, { type: "publish", id: ++id, payload: `post ${id}` });
    for (let count = 0; count < K + 2; count++, room.clock.now += 0.5) post(); // seq 3 on
    assert.deepEqual(
      heard().map(seqsIn),
      Array.from({ length: K }, (_, index) => [3 + index]),
      "the first K at once, each in a frame of its own",
    );
    assert.deepEqual(room.timers.pending, [windowStart + 5], "the rest until the window ends");
    room.clock.now = windowStart + 5;
    room.timers.fire();
    assert.deepEqual(seqsIn(heard().at(-1)!), [3 + K, 4 + K], "together, in one array frame");

    // The load goes on: the next window's events wait for its end as well, however few come.
    post();
    assert.equal(heard().length, K + 1, "held back");
    assert.deepEqual(room.timers.pending, [windowStart + 10]);
    room.clock.now = windowStart + 10;
    room.timers.fire();
    assert.deepEqual(seqsIn(heard().at(-1)!), [5 + K]);
    // After a quiet window, at once again.
    room.clock.now += 20;
    post();
    assert.deepEqual(seqsIn(heard().at(-1)!), [6 + K]);
    assert.deepEqual(room.timers.pending, []);
    assert.deepEqual(eventsIn(a.socket.frames), eventsIn(b.socket.frames), "the sender gets the same frames");
  });

  test("a welcome waits for nothing: what the batch holds goes out first, then the catch-up; the others get the newcomer's enter at once", async () => {
    const K = IMMEDIATE_PER_WINDOW;
    const room = await loadedRoom({ coalesce: 5 });
    const a = room.hello(); // seq 1, the window's first frame
    for (let id = 1; id <= K + 1; id++) send(room.reflector, a.socket, { type: "publish", id, payload: `post ${id}` });
    const seqs = (socket: FakeSocket) => eventsIn(socket.frames).map(([seq]) => seq);
    assert.deepEqual(
      seqs(a.socket),
      Array.from({ length: K }, (_, index) => index + 1),
      "the last two posts wait for the window to end",
    );
    const newcomer = room.hello();
    const all = Array.from({ length: K + 3 }, (_, index) => index + 1);
    assert.deepEqual(seqs(a.socket), all, "the held posts went out before the welcome, the enter after it");
    assert.deepEqual(seqs(newcomer.socket), all);
    room.clock.now += 5;
    room.timers.fire();
    assert.deepEqual(seqs(newcomer.socket), all, "nothing twice");
  });

  test("each client gets its share of the room's posts: roomRate divided among the clients, told in the welcome and when it changes", async () => {
    const room = await openRoom({ roomRate: 30, rateLimit: 20, rateBurst: 60 });
    const a = room.hello();
    assert.deepEqual(a.welcome.budget, { perSecond: 20, burst: 60 }, "alone, the connection's rate limit");
    const b = room.hello();
    assert.deepEqual(b.welcome.budget, { perSecond: 15, burst: 45 });
    assert.deepEqual(a.socket.ofType("budget"), [{ type: "budget", perSecond: 15, burst: 45 }], "told when the share changed");
    const c = room.hello();
    assert.deepEqual(a.socket.ofType("budget").at(-1), { type: "budget", perSecond: 10, burst: 30 });
    // A newcomer's share starts with half a second's worth, not a burst: churn through new identities gains little.
    postMany(room, c, 6);
    const refusal = c.socket.ofType("error")[0]!;
    assert.equal(refusal.code, "over-budget");
    assert.equal(refusal.retry, 100, "a post in 1/10 s");
    assert.match(refusal.message, /this room takes 10 posts a second, 30 at once from each of its 3 clients now/);
    assert.deepEqual(
      c.socket.ofType("message").map((message) => message.id),
      [1, 2, 3, 4, 5],
    );
    room.advance(100);
    room.post(c, 6);
    assert.deepEqual(
      c.socket.ofType("message").map((message) => message.id),
      [1, 2, 3, 4, 5, 6],
      "resent when the share allows, nothing is lost",
    );
    // The share is the client's, whichever connection it posts on.
    room.reflector.disconnect(c.socket);
    const again = room.hello(new FakeSocket(), { client: c.id, secret: c.secret, seq: 0 });
    room.post(again, 7);
    assert.equal(again.socket.ofType("error")[0]?.code, "over-budget", "reconnecting gives no fresh burst");
  });

  test("newcomers are admitted at joinRate: beyond the burst one is turned away with busy and close 4007, and may come back", async () => {
    const room = await openRoom({ joinRate: 1, joinBurst: 2 });
    room.hello();
    room.hello();
    const third = new FakeSocket();
    room.reflector.connect(third);
    send(room.reflector, third, helloFrame(third));
    assert.equal(third.ofType("error")[0]!.code, "busy");
    assert.deepEqual(third.closed, { code: CLOSE_BUSY, reason: "too many newcomers" });
    room.advance(1000);
    assert.equal(room.hello().welcome.last, 3, "a second later there is room for one more");
  });

  test("a connection that does not acknowledge the marks in its stream is closed with 4008 once maxLag behind; its client resumes", async () => {
    const room = await openRoom({ maxLag: 4000 });
    const reader = room.hello();
    const stalled = room.hello();
    const writer = room.hello();
    const reads = (member: Member) => {
      for (const mark of member.socket.ofType("mark")) room.send(member, { type: "ack", mark: mark.id });
    };
    for (let id = 1; id <= 40; id++) {
      room.post(writer, id, "x".repeat(200));
      reads(reader);
      reads(writer);
    }
    assert.ok(reader.socket.ofType("mark").length >= 2, "a mark every maxLag / 4");
    assert.equal(reader.socket.closed, undefined, "a reader is never behind");
    assert.deepEqual(stalled.socket.closed, { code: CLOSE_BEHIND, reason: "too far behind" });
    const received = JSON.stringify(stalled.socket.frames).length;
    assert.ok(received < 4000 + 2000, `it was sent about maxLag after its welcome (${received})`);
    assert.equal(reader.socket.ofType("user-exit").length, 0, "away, not gone");
    const back = room.hello(new FakeSocket(), { client: stalled.id, secret: stalled.secret, seq: stalled.socket.ofType("message").at(-1)?.seq ?? 0 });
    assert.equal(back.welcome.resumed, true);
  });

  test("an acknowledgement counts only for a mark the connection was sent: claiming to read without reading gains nothing", async () => {
    const room = await openRoom({ maxLag: 4000 });
    const liar = room.hello();
    const writer = room.hello();
    for (let id = 1; id <= 40; id++) {
      room.post(writer, id, "x".repeat(200));
      for (const mark of writer.socket.ofType("mark")) room.send(writer, { type: "ack", mark: mark.id });
      room.send(liar, { type: "ack", mark: `guess-${id}` });
    }
    assert.deepEqual(liar.socket.closed, { code: CLOSE_BEHIND, reason: "too far behind" });
    assert.deepEqual(codes(liar.socket), [], "an unknown mark is no error, and no credit");
  });

  test("frames count as sent when the client says (t), so a client within its rate is not refused when the server fell behind", async () => {
    const room = await openRoom({ rateLimit: 10, rateBurst: 5, floodRefusals: 8 });
    const honest = room.hello();
    // The server stalled for 10 s while the client sent one post every 200 ms (half its rate): they arrive at once.
    room.advance(10_000);
    for (let id = 1; id <= 50; id++) room.send(honest, { type: "publish", id, payload: `post ${id}`, t: id * 200 });
    assert.deepEqual(codes(honest.socket), []);
    assert.equal(honest.socket.ofType("message").length, 50);
    // Claiming times ahead of the server gains at most SKEW_ALLOWANCE of the rate.
    const cheat = room.hello();
    for (let id = 1; id <= 50; id++) room.send(cheat, { type: "publish", id, payload: "x", t: 10_000_000 + id * 100 });
    const taken = cheat.socket.ofType("message").filter((message) => message.client === cheat.id).length;
    assert.ok(taken <= 5 + (SKEW_ALLOWANCE / 1000) * 10 + 1, `${taken} taken`);
  });

  test("a snapshot falls due by the bytes of the events since the last round, too", async () => {
    const room = await openRoom({ snapshotBytes: 1000 });
    const a = room.hello();
    room.post(a, 1, "y".repeat(500));
    assert.deepEqual(a.socket.ofType("snapshot-due"), []);
    room.post(a, 2, "y".repeat(500));
    assert.deepEqual(a.socket.ofType("snapshot-due"), [{ type: "snapshot-due", seq: 3 }]);
  });

  test("a room whose log reaches maxLog takes no more posts or newcomers until a snapshot is stored, and starts the round itself", async () => {
    const room = await openRoom({ maxLog: 1500, snapshotEvents: 1000 });
    const a = room.hello();
    const b = room.hello();
    room.post(a, 1, "z".repeat(1500)); // seq 3: the log is full
    room.post(a, 2, "one more");
    const refusal = a.socket.ofType("error")[0]!;
    assert.deepEqual([refusal.code, refusal.retry], ["log-full", 5000]);
    const newcomer = new FakeSocket();
    room.reflector.connect(newcomer);
    send(room.reflector, newcomer, helloFrame(newcomer));
    assert.equal(newcomer.ofType("error")[0]!.code, "log-full");
    assert.equal(newcomer.closed?.code, CLOSE_BUSY);
    // No event can start the round that would empty the log: the next wake does.
    room.reflector.wake();
    assert.deepEqual(a.socket.ofType("snapshot-due"), [{ type: "snapshot-due", seq: 3 }]);
    for (const member of [a, b]) room.hash(member, 3, H("state"));
    room.upload(a.socket.ofType("snapshot-request").length > 0 ? a : b, 3, ["state"]);
    room.post(a, 2, "one more");
    assert.deepEqual(
      a.socket.ofType("message").map((message) => message.id),
      [1, 2],
    );
  });
});

describe("reflector: pure functions", () => {
  test("stampTime never goes below the last time", () => {
    assert.equal(stampTime(5, 3), 5);
    assert.equal(stampTime(3, 5), 5);
    assert.equal(stampTime(4, 4), 4);
  });

  test("countVotes groups clients by hash, the most common first, in the order they voted", () => {
    assert.deepEqual(countVotes(new Map()), []);
    assert.deepEqual(
      countVotes(
        new Map([
          ["a", "x"],
          ["b", "y"],
          ["c", "y"],
          ["d", "z"],
        ]),
      ),
      [
        { hash: "y", clients: ["b", "c"] },
        { hash: "x", clients: ["a"] },
        { hash: "z", clients: ["d"] },
      ],
    );
  });

  test("majority needs more than half of the members asked, not just of the votes: a member that did not vote counts for no hash", () => {
    const vote = (hash: string, ...clients: string[]) => ({ hash, clients });
    assert.equal(majority([], 0), undefined);
    assert.deepEqual(majority([vote("x", "a")], 1), vote("x", "a"));
    assert.deepEqual(majority([vote("x", "a", "b"), vote("y", "c")], 3), vote("x", "a", "b"));
    assert.equal(majority([vote("x", "a"), vote("y", "b")], 2), undefined);
    assert.equal(majority([vote("x", "a", "b"), vote("y", "c", "d")], 4), undefined);
    assert.equal(majority([vote("x", "a", "b"), vote("y", "c"), vote("z", "d")], 4), undefined, "a plurality is not a majority");
    assert.deepEqual(majority([vote("x", "a", "b", "c"), vote("y", "d"), vote("z", "e")], 5), vote("x", "a", "b", "c"));
    assert.equal(majority([vote("x", "a")], 3), undefined, "a lone vote among three members");
    assert.equal(majority([vote("x", "a", "b")], 4), undefined, "half is not more than half");
  });
});

describe("reflector: limits and identity", () => {
  /** A rate limit small enough to count by hand; the clock stands still unless a test moves it. */
  const RATE = { rateLimit: 10, rateBurst: 5, floodRefusals: 8 };
  const codes = (socket: FakeSocket) => socket.ofType("error").map((error) => error.code);

  test("a socket that does not say hello within helloTimeout is closed with 4004; one that does is kept", async () => {
    const room = await openRoom({ helloTimeout: 3000 });
    const silent = new FakeSocket();
    room.reflector.connect(silent);
    room.advance(1000);
    const late = new FakeSocket();
    room.reflector.connect(late);
    assert.equal(room.reflector.nextWakeAt(), START + 3000, "the wake-up is due when the first silent socket times out");
    room.advance(1999);
    room.reflector.wake();
    assert.equal(silent.closed, undefined, "not before its time");
    const prompt = room.hello(late);
    room.advance(1);
    room.reflector.wake();
    assert.deepEqual(silent.closed, { code: CLOSE_NO_HELLO, reason: "no hello" });
    room.advance(10_000);
    room.reflector.wake();
    assert.equal(prompt.socket.closed, undefined, "a socket that said hello in time is a client");
    // A frame from the closed socket is ignored: it is no longer the reflector's.
    room.reflector.receive(silent, JSON.stringify(helloFrame(silent)));
    assert.deepEqual(silent.ofType("welcome"), []);
  });

  test("a connection may send a burst of rateBurst frames (hello included); the next is refused as rate-limited and changes nothing", async () => {
    const room = await openRoom(RATE);
    const a = room.hello();
    const other = room.hello();
    const seen = other.socket.mark();
    postMany(room, a, RATE.rateBurst - 1); // the hello took the first token
    const before = JSON.stringify([...room.storage.values]);
    room.post(a, RATE.rateBurst);
    assert.deepEqual(a.socket.ofType("error"), [
      { type: "error", code: "rate-limited", message: `more than ${RATE.rateBurst} frames at once or ${RATE.rateLimit} per second; this frame was dropped` },
    ]);
    assert.equal(JSON.stringify([...room.storage.values]), before, "nothing stored");
    assert.deepEqual(eventsIn(seen()), brief(room.storage.events().slice(2)), "the others saw the accepted posts and nothing else");
    assert.equal(a.socket.closed, undefined);
    // A refused post was not sequenced: its id is still new once the bucket has refilled (one token per 100 ms).
    room.advance(100);
    room.post(a, RATE.rateBurst);
    assert.deepEqual(eventsIn(other.socket.frames).at(-1), [2 + RATE.rateBurst, "message", a.id]);
    room.post(a, RATE.rateBurst + 1);
    assert.deepEqual(codes(a.socket), ["rate-limited", "rate-limited"]);
  });

  test("the bucket refills at rateLimit per second, up to rateBurst: a client within its rate is never refused", async () => {
    const room = await openRoom(RATE);
    const a = room.hello();
    for (let id = 1; id <= 200; id++) {
      room.advance(1000 / RATE.rateLimit);
      room.post(a, id);
    }
    assert.deepEqual(codes(a.socket), []);
    room.advance(60_000);
    postMany(room, a, RATE.rateBurst + 1, 201);
    assert.deepEqual(codes(a.socket), ["rate-limited"], "a long pause earns rateBurst tokens, not more");
  });

  test("each connection has its own bucket", async () => {
    const room = await openRoom(RATE);
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, RATE.rateBurst + 2);
    postMany(room, b, RATE.rateBurst - 1);
    assert.deepEqual(codes(a.socket), ["rate-limited", "rate-limited", "rate-limited"]);
    assert.deepEqual(codes(b.socket), []);
  });

  test("malformed frames spend tokens too, and get rate-limited instead of their own error once the bucket is empty", async () => {
    const room = await openRoom(RATE);
    const a = room.hello();
    for (let i = 0; i < RATE.rateBurst; i++) room.reflector.receive(a.socket, "{oops");
    assert.deepEqual(codes(a.socket), [...Array(RATE.rateBurst - 1).fill("bad-frame"), "rate-limited"]);
  });

  test("more than floodRefusals refusals within one refill window close the connection with 4003; its client exits at once", async () => {
    const room = await openRoom(RATE);
    const flooder = room.hello();
    const honest = room.hello();
    const seen = honest.socket.mark();
    postMany(room, flooder, RATE.rateBurst - 1);
    postMany(room, flooder, RATE.floodRefusals, 100); // refused, but not yet a flood
    assert.equal(flooder.socket.closed, undefined);
    room.post(flooder, 1000);
    assert.deepEqual(flooder.socket.closed, { code: CLOSE_FLOODING, reason: "flooding" });
    assert.equal(codes(flooder.socket).length, RATE.floodRefusals + 1, "every refused frame got its error, the last one too");
    assert.ok(codes(flooder.socket).every((code) => code === "rate-limited"));
    // No grace period: the others see it leave right away, and its seat is free.
    assert.deepEqual(exitsAndEnters(honest.socket).at(-1), [3 + RATE.rateBurst - 1, "user-exit", flooder.id]);
    assert.deepEqual(
      eventsIn(seen()).filter(([, type]) => type !== "message"),
      [[3 + RATE.rateBurst - 1, "user-exit", flooder.id]],
    );
    assert.equal(room.reflector.clientCount, 1);
    assert.deepEqual(room.storage.keys("client:"), [`client:${honest.id}`]);
    // Whatever it still sends is ignored, and its disconnect changes nothing.
    const heard = flooder.socket.frames.length;
    room.advance(10_000);
    room.post(flooder, 2000);
    room.reflector.disconnect(flooder.socket);
    assert.equal(flooder.socket.frames.length, heard);
    room.post(honest, 1, "still here");
    assert.deepEqual(eventsIn(honest.socket.frames).at(-1), [3 + RATE.rateBurst, "message", honest.id]);
    // It may come back, as a new client: its old secret names a retired client.
    const back = room.hello(new FakeSocket(), { client: flooder.id, secret: flooder.secret, seq: 0 });
    assert.notEqual(back.id, flooder.id);
    assert.equal(back.welcome.acked, RATE.rateBurst - 1);
  });

  test("refusals spread over more than a refill window only throttle: a client at twice its rate is not closed", async () => {
    const room = await openRoom(RATE);
    const a = room.hello();
    let id = 0;
    // Two frames per token for 60 s: about one refusal per 100 ms, 30 per 3 s window... never more than 8 in 500 ms.
    for (let step = 0; step < 1200; step++) {
      room.advance(1000 / RATE.rateLimit / 2);
      room.post(a, ++id);
    }
    assert.equal(a.socket.closed, undefined);
    assert.ok(codes(a.socket).length > 500, `${codes(a.socket).length} refusals`);
  });

  test("a socket that floods before saying hello is closed too, and no client is made", async () => {
    const room = await openRoom(RATE);
    const member = room.hello();
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    for (let i = 0; i < RATE.rateBurst + RATE.floodRefusals + 1; i++) send(room.reflector, socket, { type: "publish", id: 1, payload: "x" });
    assert.deepEqual(socket.closed, { code: CLOSE_FLOODING, reason: "flooding" });
    assert.equal(socket.ofType("error").length, RATE.rateBurst + RATE.floodRefusals + 1, "one error per frame");
    assert.deepEqual(shape(member.socket.frames), ["challenge", "welcome", "user-enter 1"], "the member saw nothing");
    assert.equal(room.storage.events().length, 1);
  });

  test("the snapshot parts a client was asked for may be up to MAX_FRAME_LENGTH even with a smaller frame limit", async () => {
    const small = 2000;
    const room = await openRoom({ ...RATE, rateBurst: 20, snapshotEvents: 4, maxFrameLength: small });
    const a = room.hello();
    const b = room.hello();
    postMany(room, a, 2); // due at 4
    // Parts far above the configured frame limit, within the burst.
    const parts = Array.from({ length: 10 }, (_, index) => `${index}:`.padEnd(MAX_FRAME_LENGTH - 200, "x"));
    room.hash(a, 4, H(parts.join("")));
    room.hash(b, 4, H(parts.join("")));
    const uploader = a.socket.ofType("snapshot-request").length === 1 ? a : b;
    const onlooker = uploader === a ? b : a;
    room.upload(uploader, 4, parts);
    assert.deepEqual(codes(uploader.socket), []);
    assert.deepEqual(onlooker.socket.ofType("snapshot-stored"), [{ type: "snapshot-stored", seq: 4 }]);
    // Other frames from the same client still obey the frame limit.
    room.post(uploader, 10, "y".repeat(small));
    assert.deepEqual(codes(uploader.socket), ["frame-too-large"]);
    assert.match(uploader.socket.ofType("error")[0]!.message, new RegExp(`the limit is ${small}$`));
  });

  test("an upload is bounded: each part once, the parts it declared, at most maxSnapshot characters; parts asked for take no token, repeats do", async () => {
    const room = await openRoom({ ...RATE, rateBurst: 8, snapshotEvents: 3, maxSnapshot: 100 });
    const [a, b] = [room.hello(), room.hello()];
    room.post(a, 1); // due at 3
    const state = "s".repeat(60);
    for (const member of [a, b]) room.hash(member, 3, H(state));
    const first = a.socket.ofType("snapshot-request").length === 1 ? a : b;
    const second = first === a ? b : a;
    // The same part twice, then a part count that is not the one declared.
    room.upload(first, 3, [state.slice(0, 30), state.slice(30)], [0, 0]);
    send(room.reflector, first.socket, { type: "snapshot", seq: 3, part: 0, parts: 3, data: "x" });
    assert.deepEqual(codes(first.socket), ["bad-frame", "bad-frame"]);
    assert.match(first.socket.ofType("error")[0]!.message, /part 0 of snapshot 3 came already/);
    // More than maxSnapshot in all: refused, and the next member of the majority is asked.
    send(room.reflector, first.socket, { type: "snapshot", seq: 3, part: 1, parts: 2, data: "y".repeat(80) });
    assert.deepEqual(codes(first.socket).at(-1), "snapshot-too-large");
    assert.deepEqual(second.socket.ofType("snapshot-request"), [{ type: "snapshot-request", seq: 3 }]);
    // Parts asked for take no token, so more of them than the burst go up at once; a repeated part takes one, like
    // any frame, and beyond the burst it is throttled.
    const parts = Array.from({ length: 10 }, (_, index) => state.slice(index * 6, index * 6 + 6));
    room.upload(second, 3, parts, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(codes(second.socket), []);
    for (let repeat = 0; repeat < 10; repeat++) room.upload(second, 3, parts, [0]);
    // Its hello and its hash took two of its eight tokens: six repeats are refused as such, the rest throttled.
    assert.deepEqual(codes(second.socket), [...Array<string>(6).fill("bad-frame"), ...Array<string>(4).fill("rate-limited")]);
    room.upload(second, 3, parts, [9]);
    assert.deepEqual(second.socket.ofType("snapshot-stored"), [{ type: "snapshot-stored", seq: 3 }], "the last part completes it, with the bucket empty");
  });

  test("a snapshot part nobody asked for is throttled like any other frame", async () => {
    const room = await openRoom({ ...RATE, snapshotEvents: 4 });
    const a = room.hello();
    room.post(a, 1);
    room.post(a, 2); // due at 4? only 3 events: never due
    for (let i = 0; i < RATE.rateBurst; i++) send(room.reflector, a.socket, { type: "snapshot", seq: 99, part: 0, parts: 1, data: "" });
    assert.deepEqual(codes(a.socket), ["out-of-turn", "out-of-turn", "rate-limited", "rate-limited", "rate-limited"]);
  });

  test("a configured frame limit below MAX_FRAME_LENGTH is enforced; one above it is capped at MAX_FRAME_LENGTH", async () => {
    const publish = (id: number, payload: string) => JSON.stringify({ type: "publish", id, payload });
    const atLength = (id: number, length: number) => publish(id, "x".repeat(length - publish(id, "").length));
    const room = await openRoom({ maxFrameLength: 1000 });
    const a = room.hello();
    room.reflector.receive(a.socket, atLength(1, 1000));
    room.reflector.receive(a.socket, atLength(2, 1001));
    assert.equal(a.socket.ofType("message").length, 1);
    assert.deepEqual(a.socket.ofType("error"), [{ type: "error", code: "frame-too-large", message: "frame is 1001 characters; the limit is 1000" }]);

    const capped = await openRoom({ maxFrameLength: 10 * MAX_FRAME_LENGTH });
    const c = capped.hello();
    capped.reflector.receive(c.socket, atLength(1, MAX_FRAME_LENGTH));
    capped.reflector.receive(c.socket, atLength(2, MAX_FRAME_LENGTH + 1));
    assert.equal(c.socket.ofType("message").length, 1);
    assert.deepEqual(codes(c.socket), ["frame-too-large"]);
  });

  test("a new client beyond maxClients (present or away) is refused with room-full and closed with 4002; resumes are always allowed", async () => {
    const room = await openRoom({ maxClients: 2 });
    const a = room.hello();
    const b = room.hello();
    room.reflector.disconnect(b.socket); // away, still holds its seat
    const seenByA = a.socket.mark();
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    send(room.reflector, socket, { ...helloFrame(socket) });
    assert.deepEqual(socket.frames.slice(1), [{ type: "error", code: "room-full", message: "this room holds 2 clients, present or away; try again later" }]);
    assert.deepEqual(socket.closed, { code: CLOSE_ROOM_FULL, reason: "room full" });
    assert.equal(room.storage.events().length, 2, "no user-enter");
    assert.deepEqual(seenByA(), [], "the others saw nothing");
    // Its later frames are ignored.
    send(room.reflector, socket, { ...helloFrame(socket) });
    assert.equal(socket.frames.length, 2);
    // The away client comes back although the room is full.
    const back = room.hello(new FakeSocket(), { client: b.id, secret: b.secret, seq: 2 });
    assert.equal(back.welcome.resumed, true);
    // Once someone leaves, a newcomer fits.
    room.send(a, { type: "leave" });
    const newcomer = room.hello();
    assert.equal(newcomer.welcome.resumed, false);
    // Returning with retired credentials is a new client: refused while full.
    const late = new FakeSocket();
    room.reflector.connect(late);
    send(room.reflector, late, { ...helloFrame(late), resume: { client: a.id, secret: a.secret, seq: 0 } });
    assert.deepEqual(codes(late), ["room-full"]);
  });

  test("a publish, hash, snapshot or leave naming another client is refused as identity and changes nothing; naming oneself is fine", async () => {
    const room = await openRoom({ snapshotEvents: 4 });
    const a = room.hello();
    const b = room.hello();
    const seen = b.socket.mark();
    const stored = JSON.stringify([...room.storage.values]);
    const frames = [
      { type: "publish", id: 1, payload: "as b", client: b.id },
      { type: "hash", seq: 4, hash: "h", client: b.id },
      { type: "snapshot", seq: 4, part: 0, parts: 1, data: "", client: b.id },
      { type: "leave", client: b.id },
      { ...helloFrame(a.socket), client: b.id },
      { type: "publish", id: 1, payload: "as nobody", client: "someone-else" },
    ];
    for (const frame of frames) room.send(a, frame);
    assert.deepEqual(
      codes(a.socket),
      frames.map(() => "identity"),
    );
    assert.equal(a.socket.ofType("error")[0]!.message, `client ${b.id} belongs to another connection; the reflector knows who sent this frame`);
    assert.deepEqual(seen(), [], "b hears nothing");
    assert.equal(JSON.stringify([...room.storage.values]), stored, "nothing stored");
    assert.equal(b.socket.closed, undefined);
    assert.equal(room.reflector.clientCount, 2, "nobody left");
    // Its own id is accepted, and the event is stamped with it.
    room.send(a, { type: "publish", id: 1, payload: "as a", client: a.id });
    assert.deepEqual(eventsIn(seen()), [[3, "message", a.id]]);
    // A client field of the wrong type is a bad frame.
    room.send(a, { type: "publish", id: 2, payload: "x", client: 7 });
    room.send(a, { type: "publish", id: 2, payload: "x", client: "" });
    assert.deepEqual(codes(a.socket).slice(frames.length), ["bad-frame", "bad-frame"]);
  });

  test("a socket that has not said hello is nobody: any client field is someone else's", async () => {
    const room = await openRoom();
    const a = room.hello();
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    send(room.reflector, socket, { ...helloFrame(socket), client: a.id });
    send(room.reflector, socket, { type: "publish", id: 1, payload: "x", client: a.id });
    assert.deepEqual(codes(socket), ["identity", "identity"]);
    assert.equal(room.reflector.clientCount, 1);
    assert.equal(hello(room.reflector, socket).welcome.resumed, false);
  });

  test("a resume with a right secret after a wrong one works: the identity refusal leaves the socket usable", async () => {
    const room = await openRoom();
    const a = room.hello();
    room.reflector.disconnect(a.socket);
    const socket = new FakeSocket();
    room.reflector.connect(socket);
    send(room.reflector, socket, { ...helloFrame(socket), resume: { client: a.id, secret: "wrong", seq: 1 } });
    const back = hello(room.reflector, socket, { client: a.id, secret: a.secret, seq: 1 });
    assert.equal(back.id, a.id);
    assert.equal(back.welcome.resumed, true);
  });

  test("RateLimiter: a bucket of rateBurst tokens refilling at rateLimit per second, and a flood window of rateBurst / rateLimit seconds", () => {
    const limiter = new RateLimiter({ rateLimit: 2, rateBurst: 4, floodRefusals: 3 }, 0);
    assert.deepEqual(
      [0, 0, 0, 0, 0].map((now) => limiter.take(now)),
      [true, true, true, true, false],
    );
    assert.equal(limiter.take(499), false);
    assert.equal(limiter.take(500), true);
    assert.equal(limiter.take(10_000), true, "refilled, capped at the burst");
    assert.deepEqual(
      [10_000, 10_000, 10_000, 10_000].map((now) => limiter.take(now)),
      [true, true, true, false],
    );
    // Window: 4 / 2 = 2 s. Four refusals within it are a flood; spread wider they are not.
    const spread = new RateLimiter({ rateLimit: 2, rateBurst: 4, floodRefusals: 3 }, 0);
    assert.deepEqual(
      [0, 700, 1400, 2100, 2800].map((now) => spread.refused(now)),
      [false, false, false, false, false],
    );
    const dense = new RateLimiter({ rateLimit: 2, rateBurst: 4, floodRefusals: 3 }, 0);
    assert.deepEqual(
      [0, 600, 1200, 1999].map((now) => dense.refused(now)),
      [false, false, false, true],
    );
    const unlimited = new RateLimiter({ rateLimit: Infinity, rateBurst: Infinity, floodRefusals: Infinity }, 0);
    assert.ok(Array.from({ length: 10_000 }, () => unlimited.take(0)).every(Boolean));
  });

  test("checkRoomId accepts 1 to 64 letters, digits, _ and -, and nothing else", () => {
    for (const id of ["a", "lobby", "A-b_9", "x".repeat(64), "QtnHLQIOwGTtUTEUdhLzEQ"]) assert.equal(checkRoomId(id), undefined, id);
    assert.equal(checkRoomId(""), "the room id is empty");
    assert.equal(checkRoomId("x".repeat(65)), "the room id is 65 characters long; the limit is 64");
    for (const id of ["a.b", "a~b", "a b", "a%20b", "a/b", "ä", "..", "a\nb", "<script>", "\u0000"])
      assert.match(checkRoomId(id) ?? "", /only the letters/, id);
    assert.equal(checkRoomId("x".repeat(10), 8), "the room id is 10 characters long; the limit is 8");
  });
});
