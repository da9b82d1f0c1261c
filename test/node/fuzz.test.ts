/**
 * A bounded, seeded fuzz run of the reflector under a real `wrangler dev`: after its hello, one raw socket sends
 * thousands of frames that are each guaranteed to be refused (random text, truncated JSON, every field of every
 * frame kind with a wrong type or range, unknown types, binary and oversize frames, identity claims and
 * hand-picked nasties), while two honest headless sessions chat. Afterwards the server is alive, the honest
 * clients converged with every post exactly once, the fuzzer got exactly one error frame per bad frame with the
 * code each one calls for, and the honest clients saw nothing from it but its entry.
 *
 * Replay a run with FUZZ_SEED=<seed>; FUZZ_FRAMES changes how many random frames follow the hand-picked ones.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { ChatModel } from "../../component/chat-model.js";
import { Session } from "../../component/session.js";
import { stateHash } from "../../component/state-hash.js";
import { MAX_FRAME_LENGTH, MAX_SNAPSHOT_PARTS, parseServerFrames, PROTOCOL_VERSION, type ErrorCode, type ServerFrame } from "../../common/protocol.js";
import { RawClient } from "../support/raw-client.js";
import { SeededRandom } from "../support/seeded-random.js";
import { startReflector, type ReflectorServer } from "../support/reflector-server.js";
import { chat } from "../support/sessions.js";
import { sleep, waitFor } from "../support/wait-for.js";

const SEED = process.env.FUZZ_SEED ?? "multiuser-chat-fuzz";
const RANDOM_FRAMES = Number(process.env.FUZZ_FRAMES ?? 3000);
const HONEST_POSTS = 30;
const VARS = {
  // No snapshot round ever opens, so a hash or snapshot for any seq is predictably out of turn.
  SNAPSHOT_EVENTS: "1000000",
  SNAPSHOT_INTERVAL_MS: "600000",
  // A rate limit far above what the fuzzer sends: this test is about bad frames, and every one of them must get
  // its own error rather than a rate-limited one. test/node/limits.test.ts covers the rate limit.
  RATE_LIMIT: "1000000",
  RATE_BURST: "1000000",
  // The fuzzer sends its thousands of frames at once and reads the errors later: its acknowledgements of the marks in
  // its stream wait behind them. This test is about bad frames; test/node/reflector.test.ts covers the lag limit.
  MAX_LAG: "100000000",
};

const posts = (session: Session) => chat(session).history.filter((entry) => entry.kind === "post");

/** The fuzzer's choices, and random text. */
class Rng extends SeededRandom {
  /** Random UTF-16 code units: control characters, quotes, braces, lone surrogates and all. */
  text(length: number): string {
    const alphabet = ['"', "{", "}", "[", "]", ":", ",", "\\", " ", "\n", "\u0000", "a", "1", "-", "e", "\ud800", "\udfff", "\ufeff", "é", "\u2028"];
    let text = "";
    for (let i = 0; i < length; i++) text += this.chance(0.5) ? this.pick(alphabet) : String.fromCharCode(this.int(0, 0xffff));
    return text;
  }
}

/** A number written as raw JSON text, for values JSON.stringify cannot produce (1e309, -0, 4.9e-324). */
class RawNumber {
  constructor(readonly text: string) {}
}
const MARK = "@@raw-number@@";
function encode(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => (item instanceof RawNumber ? MARK + item.text : item)).replace(
    new RegExp(`"${MARK}([^"]*)"`, "g"),
    (_match, text: string) => text,
  );
}

/** One bad frame and the error code it must get back. */
interface Bad {
  data: string | Buffer;
  code: ErrorCode;
  what: string;
}

/** A frame a client may legally send, as an object, so that a generator can break one of its fields. */
function validFrame(rng: Rng, kind: "publish" | "hash" | "snapshot" | "hello" | "leave"): Record<string, unknown> {
  switch (kind) {
    case "publish":
      return { type: "publish", id: rng.int(1, 1000), payload: rng.text(rng.int(0, 40)) };
    case "hash":
      return { type: "hash", seq: rng.int(1, 1_000_000), hash: "f".repeat(64) };
    case "snapshot": {
      const parts = rng.int(1, MAX_SNAPSHOT_PARTS);
      return { type: "snapshot", seq: rng.int(1, 1_000_000), part: rng.int(0, parts - 1), parts, data: rng.text(rng.int(0, 40)) };
    }
    case "hello":
      return { type: "hello", version: PROTOCOL_VERSION, key: "k", proof: "p" };
    case "leave":
      return { type: "leave" };
  }
}

const NOT_A_COUNT: unknown[] = [
  null,
  true,
  false,
  "1",
  "NaN",
  "Infinity",
  "",
  [],
  {},
  [1],
  { valueOf: 1 },
  1.5,
  -1,
  2 ** 53,
  -(2 ** 53),
  new RawNumber("1e309"),
  new RawNumber("-1e309"),
  0.1,
  new RawNumber("4.9e-324"),
];
const NOT_A_STRING: unknown[] = [null, true, 0, 1, -1, 1.5, [], {}, ["x"], { toString: "x" }, new RawNumber("1e309")];
const NOT_A_TOKEN: unknown[] = [...NOT_A_STRING, "", "x".repeat(129)];

/** Every way to break one field of a frame that is otherwise fine; each with the code it must get. */
function brokenField(rng: Rng): Bad {
  const kind = rng.pick(["publish", "hash", "snapshot", "hello"] as const);
  const frame = validFrame(rng, kind);
  const remove = rng.chance(0.15);
  let field: string;
  let value: unknown;
  let code: ErrorCode = "bad-frame";
  switch (kind) {
    case "publish":
      field = rng.pick(["id", "payload"]);
      value = field === "id" ? rng.pick([...NOT_A_COUNT, 0, new RawNumber("-0")]) : rng.pick(NOT_A_STRING);
      break;
    case "hash":
      field = rng.pick(["seq", "hash"]);
      value = field === "seq" ? rng.pick([...NOT_A_COUNT, 0]) : rng.pick(NOT_A_TOKEN);
      break;
    case "snapshot": {
      field = rng.pick(["seq", "part", "parts", "data"]);
      const parts = frame.parts as number;
      if (field === "seq") value = rng.pick([...NOT_A_COUNT, 0]);
      else if (field === "part") value = rng.pick([...NOT_A_COUNT, parts, parts + rng.int(1, 100)]);
      else if (field === "parts") {
        value = rng.pick([...NOT_A_COUNT, 0, MAX_SNAPSHOT_PARTS + 1, 10 ** 6]);
        // With parts removed or broken the frame fails on parts; a valid smaller parts would fail on part instead.
      } else value = rng.pick(NOT_A_STRING);
      break;
    }
    case "hello":
      field = rng.pick(["version", "resume", "key", "proof"]);
      if (field === "key" || field === "proof") {
        value = rng.pick(NOT_A_TOKEN);
      } else if (field === "version") {
        value = rng.pick([
          PROTOCOL_VERSION - 1,
          PROTOCOL_VERSION + 1,
          String(PROTOCOL_VERSION),
          null,
          [PROTOCOL_VERSION],
          PROTOCOL_VERSION + 1e-9,
          new RawNumber("1e309"),
          0,
          -PROTOCOL_VERSION,
        ]);
        code = "version-mismatch";
      } else {
        if (remove) return { data: encode(frame), code: "out-of-turn", what: "a second hello" };
        value = rng.pick([
          null,
          5,
          "resume",
          true,
          { client: rng.pick(NOT_A_TOKEN), secret: "s", seq: 0 },
          { client: "c", secret: rng.pick(NOT_A_TOKEN), seq: 0 },
          { client: "c", secret: "s", seq: rng.pick(NOT_A_COUNT) },
          { __proto__: { client: "c", secret: "s", seq: 0 } },
        ]);
        // `{client: "c", secret: "s", seq: 0.1}`-like values all fail; a resume like `[]` fails on its client.
      }
      break;
  }
  if (remove) {
    delete frame[field];
    if (field === "version") code = "version-mismatch";
  } else frame[field] = value;
  // A removed or broken `parts` makes the frame fail on parts; anything else fails on the field broken.
  return { data: encode(frame), code, what: `${kind}.${field} ${remove ? "missing" : encode(value)}` };
}

/** Hand-picked frames, each sent once, before the random ones. */
function handPicked(rng: Rng, others: string[]): Bad[] {
  const bad = (data: string | Buffer, code: ErrorCode, what: string): Bad => ({ data, code, what });
  const [alice] = others as [string];
  return [
    bad("", "bad-frame", "empty text"),
    bad("   \n\t", "bad-frame", "whitespace"),
    bad("null", "bad-frame", "null"),
    bad("[]", "bad-frame", "an array"),
    bad('"hello"', "bad-frame", "a string"),
    bad("1e309", "bad-frame", "a huge number"),
    bad("{}", "bad-frame", "an empty object"),
    bad('\ufeff{"type":"leave"}', "bad-frame", "a byte order mark before a leave"),
    bad("{'type':'leave'}", "bad-frame", "single quotes"),
    bad('{"type":"leave",}', "bad-frame", "a trailing comma"),
    bad('{"type":"leave"} {"type":"leave"}', "bad-frame", "two frames in one"),
    bad('{"type":"leave","type":"kick"}', "bad-frame", "a duplicate key, the last unknown"),
    bad('{"type":"publish","id":1,"id":"1","payload":"x"}', "bad-frame", "a duplicate id, the last a string"),
    bad('{"__proto__":{"type":"leave"}}', "bad-frame", "type only on __proto__"),
    bad('{"__proto__":{"type":"publish","id":1,"payload":"x"}}', "bad-frame", "a whole publish on __proto__"),
    bad('{"type":"publish","payload":"x","__proto__":{"id":1}}', "bad-frame", "the id only on __proto__"),
    bad('{"type":"publish","id":1,"__proto__":{"payload":"x"}}', "bad-frame", "the payload only on __proto__"),
    bad('{"constructor":{"prototype":{"type":"leave"}}}', "bad-frame", "constructor.prototype"),
    bad('{"type":"__proto__"}', "bad-frame", "type __proto__"),
    bad('{"type":"constructor"}', "bad-frame", "type constructor"),
    bad('{"type":"toString"}', "bad-frame", "type toString"),
    bad('{"type":"hasOwnProperty"}', "bad-frame", "type hasOwnProperty"),
    bad(`{"type":"hello","version":${PROTOCOL_VERSION},"resume":{"__proto__":{"client":"a","secret":"b","seq":0}}}`, "bad-frame", "resume fields on __proto__"),
    bad(`{"type":"hello","version":${PROTOCOL_VERSION}.0000000001}`, "version-mismatch", "an almost right version"),
    bad(encode({ type: "hello", version: PROTOCOL_VERSION, key: "k", proof: "p" }), "out-of-turn", "a second hello"),
    bad(
      encode({ type: "hello", version: PROTOCOL_VERSION, key: "k", proof: "p", resume: { client: alice, secret: "A".repeat(22), seq: 0 } }),
      "out-of-turn",
      "a second hello claiming alice",
    ),
    bad(encode({ type: "hello", version: PROTOCOL_VERSION, key: "k", proof: "p", client: alice }), "identity", "a hello naming alice"),
    bad(encode({ type: "hello", version: PROTOCOL_VERSION, proof: "p" }), "bad-frame", "a hello without a key"),
    bad(encode({ type: "publish", id: 1, payload: "as alice", client: alice }), "identity", "a publish as alice"),
    bad(encode({ type: "publish", id: 1, payload: "as nobody", client: "nobody" }), "identity", "a publish as nobody"),
    bad(encode({ type: "leave", client: alice }), "identity", "alice leaving"),
    bad(encode({ type: "leave", client: 5 }), "bad-frame", "a leave with a numeric client"),
    bad(encode({ type: "leave", client: null }), "bad-frame", "a leave with a null client"),
    bad(encode({ type: "kick", client: alice }), "bad-frame", "kick alice"),
    bad(encode({ type: "hash", seq: 1, hash: "0".repeat(64) }), "out-of-turn", "a hash nobody asked for"),
    bad(encode({ type: "hash", seq: 1, hash: "0".repeat(64), client: alice }), "identity", "a hash as alice"),
    bad(encode({ type: "snapshot", seq: 1, part: 0, parts: 1, data: "{}" }), "out-of-turn", "a snapshot nobody asked for"),
    bad(encode({ type: "snapshot", seq: 2 ** 53 - 1, part: 255, parts: 256, data: "" }), "out-of-turn", "the largest snapshot part nobody asked for"),
    bad(encode({ type: "publish", id: 2 ** 53, payload: "x" }), "bad-frame", "an unsafe id"),
    bad(encode({ type: "publish", id: new RawNumber("-0"), payload: "x" }), "bad-frame", "id -0"),
    bad(encode({ type: "publish", id: new RawNumber("1e309"), payload: "x" }), "bad-frame", "id Infinity"),
    bad(encode({ type: "publish", id: "NaN", payload: "x" }), "bad-frame", "id NaN"),
    bad(encode({ type: "publish", id: 1, payload: null }), "bad-frame", "a null payload"),
    bad(`{"type":"publish","id":1,"payload":${"[".repeat(20_000)}${"]".repeat(20_000)}}`, "bad-frame", "a deeply nested payload"),
    bad("[".repeat(30_000) + "]".repeat(30_000), "bad-frame", "deep nesting"),
    bad(`${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}`, "bad-frame", "a deep object"),
    bad("[".repeat(MAX_FRAME_LENGTH), "bad-frame", "deep, unclosed, at the limit"),
    bad(encode({ type: "publish", id: 1, payload: "x".repeat(MAX_FRAME_LENGTH) }), "frame-too-large", "an oversize publish"),
    bad("x".repeat(MAX_FRAME_LENGTH + 1), "frame-too-large", "one character over"),
    bad(Buffer.from(encode({ type: "leave" })), "bad-frame", "a leave as a binary frame"),
    bad(Buffer.from([0]), "bad-frame", "one zero byte"),
    bad(Buffer.from(rng.text(100)), "bad-frame", "random binary"),
  ];
}

/** One random bad frame. */
function randomBad(rng: Rng, others: string[]): Bad {
  const roll = rng.int(0, 99);
  if (roll < 20) {
    // Random text that is not a JSON object (one that parses to an object is drawn again).
    for (;;) {
      const text = rng.text(rng.int(0, 200));
      try {
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) continue;
      } catch {
        // not JSON: fine
      }
      return { data: text, code: "bad-frame", what: "random text" };
    }
  }
  if (roll < 35) {
    // Any proper prefix of a JSON object is not JSON.
    const text = encode(validFrame(rng, rng.pick(["publish", "hash", "snapshot", "hello", "leave"] as const)));
    return { data: text.slice(0, rng.int(0, text.length - 1)), code: "bad-frame", what: "truncated JSON" };
  }
  if (roll < 65) return brokenField(rng);
  if (roll < 75) {
    const type = rng.pick([
      "kick",
      "HELLO",
      "Publish",
      "",
      " leave",
      "welcome",
      "message",
      "tick",
      "error",
      "user-enter",
      "user-exit",
      "divergence",
      "snapshot-due",
      42,
      null,
      true,
      [],
      {},
      ["leave"],
    ]);
    const frame: Record<string, unknown> = rng.chance(0.2) ? {} : { type };
    if (rng.chance(0.5)) frame.client = rng.pick([...others, "x", 5]);
    if (rng.chance(0.5)) frame.id = rng.int(1, 10);
    if (rng.chance(0.5)) frame.payload = rng.text(10);
    return { data: encode(frame), code: "bad-frame", what: `unknown type ${encode(type)}` };
  }
  if (roll < 83) {
    // Frames that are fine but for naming someone else, or for naming a client id of the wrong shape.
    const frame = validFrame(rng, rng.pick(["publish", "hash", "snapshot", "leave", "hello"] as const));
    if (rng.chance(0.7)) {
      frame.client = rng.pick([...others, "nobody", "A".repeat(22), "x".repeat(128)]);
      return { data: encode(frame), code: "identity", what: `${String(frame.type)} claiming ${String(frame.client).slice(0, 24)}` };
    }
    frame.client = rng.pick(NOT_A_TOKEN);
    return { data: encode(frame), code: "bad-frame", what: `${String(frame.type)} with client ${encode(frame.client).slice(0, 24)}` };
  }
  if (roll < 90) {
    const frame = validFrame(rng, rng.pick(["hash", "snapshot"] as const));
    return { data: encode(frame), code: "out-of-turn", what: `a ${String(frame.type)} for a point never due` };
  }
  if (roll < 98) return { data: Buffer.from(rng.text(rng.int(1, 300))), code: "bad-frame", what: "binary" };
  const filler = rng.chance(0.5) ? encode({ type: "publish", id: 1, payload: "y".repeat(MAX_FRAME_LENGTH) }) : rng.text(MAX_FRAME_LENGTH + 1);
  return { data: filler + "z".repeat(rng.int(0, 20_000)), code: "frame-too-large", what: "oversize" };
}

let server: ReflectorServer;
const sessions: Session[] = [];

before(async () => {
  server = await startReflector({ vars: VARS });
});

after(async () => {
  for (const session of sessions) session.leave();
  await server.stop();
});

test(`fuzz: thousands of bad frames from one socket while two honest clients chat (seed ${SEED})`, { timeout: 60_000 }, async () => {
  console.log(`fuzz seed: ${SEED}  (replay with FUZZ_SEED=${SEED})`);
  const started = Date.now();
  const rng = new Rng(SEED);
  const room = "fuzz";

  /** Every frame each honest client's socket received, decoded: to see what the fuzzer managed to put there. */
  const heard: ServerFrame[][] = [];
  const recording = (index: number) =>
    class extends WebSocket {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        heard[index] ??= [];
        this.on("message", (data) => heard[index]!.push(...parseServerFrames(String(data))));
      }
    };
  const join = async (index: number) => {
    const session = Session.join({ host: server.host, room, model: ChatModel, WebSocket: recording(index) });
    sessions.push(session);
    await session.whenReady();
    return session;
  };
  const alice = await join(0);
  const bob = await join(1);

  // A member: it holds the room's key, and fuzzes from inside the room.
  const fuzzer = await RawClient.join(server.host, room, { pk: "fuzzer" });
  const received = fuzzer.frames;
  const fuzzerId = fuzzer.welcome!.client;
  await waitFor(() => chat(alice).users.length === 3 && chat(bob).users.length === 3, "three users");

  const others = [alice.clientId!, bob.clientId!];
  const frames = [...handPicked(rng, others), ...Array.from({ length: RANDOM_FRAMES }, () => randomBad(rng, others))];

  // The honest clients chat all through the fuzzing.
  const chatting = (async () => {
    for (let i = 0; i < HONEST_POSTS; i++) {
      alice.publish("chat", "post", { text: `alice ${i}` });
      bob.publish("chat", "post", { text: `bob ${i}` });
      await sleep(40);
    }
  })();
  for (let index = 0; index < frames.length; index++) {
    fuzzer.socket.send(frames[index]!.data);
    if (index % 100 === 99) await sleep(5);
  }
  await chatting;

  const errors = () => received.filter((frame): frame is Extract<ServerFrame, { type: "error" }> => frame.type === "error");
  await waitFor(() => errors().length >= frames.length || fuzzer.closed !== undefined, `an error for each of ${frames.length} bad frames`, 30_000);
  await sleep(300); // nothing more may come
  assert.equal(fuzzer.closed, undefined, "the fuzzer's connection stays open");
  assert.equal(errors().length, frames.length, "exactly one error frame per bad frame");
  const mismatches = frames.flatMap((frame, index) =>
    errors()[index]!.code === frame.code ? [] : [`#${index} ${frame.what}: expected ${frame.code}, got ${errors()[index]!.code} (${errors()[index]!.message})`],
  );
  assert.deepEqual(mismatches.slice(0, 20), [], `${mismatches.length} frames got another error than expected`);
  const byCode = new Map<string, number>();
  for (const frame of frames) byCode.set(frame.code, (byCode.get(frame.code) ?? 0) + 1);
  console.log(`# ${frames.length} bad frames: ${[...byCode].map(([code, count]) => `${count} ${code}`).join(", ")}`);

  // The honest clients converged with every post exactly once.
  await waitFor(() => posts(alice).length === 2 * HONEST_POSTS && posts(bob).length === 2 * HONEST_POSTS, "every honest post at both");
  await waitFor(() => alice.replica!.seq === bob.replica!.seq, "both replicas at the same event");
  assert.equal(await stateHash(alice.replica!), await stateHash(bob.replica!));
  for (const session of [alice, bob]) {
    const texts = posts(session).map((entry) => entry.text);
    for (const name of ["alice", "bob"]) {
      assert.deepEqual(
        texts.filter((text) => text.startsWith(`${name} `)),
        Array.from({ length: HONEST_POSTS }, (_, i) => `${name} ${i}`),
      );
    }
    assert.ok(posts(session).every((entry) => entry.author !== fuzzerId));
  }
  // All they heard of the fuzzer is its entry.
  for (const frames of heard) {
    const fromFuzzer = frames.filter((frame) => "client" in frame && frame.client === fuzzerId && frame.type !== "welcome");
    assert.deepEqual(
      fromFuzzer.map((frame) => frame.type),
      ["user-enter"],
    );
    assert.ok(frames.every((frame) => frame.type !== "error" && frame.type !== "divergence"));
  }

  // The server is alive: a newcomer joins and reaches the same state, and the fuzzer's socket still works.
  const carol = await join(2);
  await waitFor(() => new Set([alice, bob, carol].map((session) => session.replica!.seq)).size === 1, "the newcomer's entry everywhere");
  const hashes = await Promise.all([alice, bob, carol].map((session) => stateHash(session.replica!)));
  assert.equal(new Set(hashes).size, 1);
  fuzzer.publish("finally a good frame", 1);
  await waitFor(() => received.some((frame) => frame.type === "message" && frame.client === fuzzerId), "the fuzzer's one good frame");
  fuzzer.socket.close();
  console.log(`# fuzz run took ${Date.now() - started} ms`);
});
