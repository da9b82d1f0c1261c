import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { LogStorage } from "../../party/event-log.js";
import { MAX_FRAME_LENGTH, PROTOCOL_VERSION, type ServerFrame } from "../../party/protocol.js";
import { Reflector } from "../../party/reflector.js";

/** Room storage as PartyKit's: a key-ordered map of values. */
class MemoryStorage implements LogStorage {
  readonly values = new Map<string, unknown>();
  async put(key: string, value: string): Promise<void> {
    this.values.set(key, value);
  }
  async list({ prefix }: { prefix: string }): Promise<Map<string, unknown>> {
    return new Map([...this.values].filter(([key]) => key.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1)));
  }
}

class FakeSocket {
  readonly frames: ServerFrame[] = [];
  send(text: string): void {
    this.frames.push(JSON.parse(text));
  }
  ofType<T extends ServerFrame["type"]>(type: T) {
    return this.frames.filter((frame): frame is Extract<ServerFrame, { type: T }> => frame.type === type);
  }
}

/** A reflector over memory storage with a clock the test moves by hand. */
async function openRoom(storage = new MemoryStorage(), start = 1_000_000) {
  const clock = { now: start };
  let ids = 0;
  const reflector = await Reflector.open<FakeSocket>({
    room: "room-1",
    storage,
    tickInterval: 1000,
    clock: () => clock.now,
    newClientId: () => `client-${++ids}`,
  });
  return { reflector, clock, storage };
}

const publish = (payload: unknown) => JSON.stringify({ type: "publish", payload });

describe("reflector", () => {
  test("stamps every message with the next sequence number and the server time, and sends it to everyone, sender included", async () => {
    const { reflector, clock } = await openRoom();
    const [a, b] = [new FakeSocket(), new FakeSocket()];
    reflector.connect(a);
    reflector.connect(b);
    clock.now += 5;
    reflector.receive(a, publish("first"));
    clock.now += 7;
    reflector.receive(b, publish("second"));
    for (const socket of [a, b]) {
      const messages = socket.ofType("message");
      assert.deepEqual(messages, [
        { type: "message", seq: 3, time: 1_000_005, client: "client-1", payload: "first" },
        { type: "message", seq: 4, time: 1_000_012, client: "client-2", payload: "second" },
      ]);
    }
  });

  test("keeps time from running backwards when the server clock does", async () => {
    const { reflector, clock } = await openRoom();
    const socket = new FakeSocket();
    reflector.connect(socket);
    clock.now -= 60_000;
    reflector.receive(socket, publish("after the clock jumped back"));
    assert.equal(socket.ofType("message")[0]!.time, 1_000_000);
  });

  test("welcomes a newcomer with its reflector-chosen id, the version, the room and the whole log ending with its own entry", async () => {
    const { reflector } = await openRoom();
    const first = new FakeSocket();
    reflector.connect(first);
    reflector.receive(first, publish("before the newcomer"));
    const newcomer = new FakeSocket();
    const id = reflector.connect(newcomer);
    const [welcome] = newcomer.frames;
    assert.ok(welcome?.type === "welcome");
    assert.equal(welcome.client, id);
    assert.equal(welcome.version, PROTOCOL_VERSION);
    assert.equal(welcome.room, "room-1");
    assert.deepEqual(
      welcome.events.map((event) => [event.seq, event.type, event.client]),
      [
        [1, "user-enter", "client-1"],
        [2, "message", "client-1"],
        [3, "user-enter", id],
      ],
    );
    assert.equal(newcomer.frames.length, 1, "the newcomer gets its own entry only inside the welcome");
    assert.deepEqual(first.ofType("user-enter"), [{ type: "user-enter", seq: 3, time: 1_000_000, client: id }]);
  });

  test("chooses client ids itself and never gives one to two present clients", async () => {
    const storage = new MemoryStorage();
    const reflector = await Reflector.open<FakeSocket>({
      room: "r",
      storage,
      tickInterval: 1000,
      clock: () => 0,
      newClientId: (() => {
        const ids = ["same", "same", "other"];
        return () => ids.shift()!;
      })(),
    });
    assert.equal(reflector.connect(new FakeSocket()), "same");
    assert.equal(reflector.connect(new FakeSocket()), "other");
  });

  test("emits user-exit to the others when a socket closes, once", async () => {
    const { reflector } = await openRoom();
    const [stayer, leaver] = [new FakeSocket(), new FakeSocket()];
    reflector.connect(stayer);
    const leaverId = reflector.connect(leaver);
    reflector.disconnect(leaver);
    reflector.disconnect(leaver);
    assert.deepEqual(stayer.ofType("user-exit"), [{ type: "user-exit", seq: 3, time: 1_000_000, client: leaverId }]);
    assert.equal(reflector.clientCount, 1);
    reflector.receive(leaver, publish("from a closed socket"));
    assert.equal(stayer.ofType("message").length, 0);
  });

  test("answers a bad frame with an error to its sender only, and keeps the room working", async () => {
    const { reflector } = await openRoom();
    const [sender, other] = [new FakeSocket(), new FakeSocket()];
    reflector.connect(sender);
    reflector.connect(other);
    const before = other.frames.length;
    const bad: [string | Uint8Array, string][] = [
      ["{not json", "frame is not valid JSON"],
      [new Uint8Array([1, 2, 3]), "binary frames are not part of this protocol; send JSON text"],
      ["[1,2]", "frame must be a JSON object"],
      [JSON.stringify({ type: "kick", client: "client-2" }), 'unknown frame type "kick"'],
      [JSON.stringify({ type: "publish", payload: { text: "not a string" } }), "publish.payload must be a string"],
    ];
    for (const [frame] of bad) reflector.receive(sender, frame);
    assert.deepEqual(
      sender.ofType("error").map((error) => error.message),
      bad.map(([, message]) => message),
    );
    assert.ok(sender.ofType("error").every((error) => error.code === "bad-frame"));
    assert.equal(other.frames.length, before, "other clients see nothing of bad frames");
    reflector.receive(sender, publish("still works"));
    assert.equal(other.ofType("message")[0]?.seq, 3);
  });

  test("accepts a frame of exactly the limit and refuses one character more", async () => {
    const { reflector } = await openRoom();
    const socket = new FakeSocket();
    reflector.connect(socket);
    const atLimit = publish("x".repeat(MAX_FRAME_LENGTH - publish("").length));
    assert.equal(atLimit.length, MAX_FRAME_LENGTH);
    reflector.receive(socket, atLimit);
    reflector.receive(socket, publish("x".repeat(MAX_FRAME_LENGTH - publish("").length + 1)));
    assert.equal(socket.ofType("message").length, 1);
    assert.deepEqual(socket.ofType("error"), [
      { type: "error", code: "frame-too-large", message: `frame is ${MAX_FRAME_LENGTH + 1} characters; the limit is ${MAX_FRAME_LENGTH}` },
    ]);
  });

  test("passes payloads through untouched, even ones that look like frames", async () => {
    const { reflector } = await openRoom();
    const socket = new FakeSocket();
    reflector.connect(socket);
    const payloads = ['{"type":"user-exit","client":"client-1"}', "", "\u0000 ünïcødé 🎈", "not json at all"];
    for (const payload of payloads) reflector.receive(socket, publish(payload));
    assert.deepEqual(
      socket.ofType("message").map((message) => message.payload),
      payloads,
    );
    assert.equal(socket.ofType("user-exit").length, 0);
  });

  test("sends a tick only after a quiet tick interval, and never stores it", async () => {
    const { reflector, clock, storage } = await openRoom();
    assert.equal(reflector.nextTickIn(), undefined, "no ticks for an empty room");
    const socket = new FakeSocket();
    reflector.connect(socket);
    assert.equal(reflector.nextTickIn(), 1000);
    clock.now += 999;
    assert.equal(reflector.tick(), false);
    reflector.receive(socket, publish("activity resets the interval"));
    clock.now += 999;
    assert.equal(reflector.tick(), false);
    assert.equal(reflector.nextTickIn(), 1);
    clock.now += 1;
    assert.equal(reflector.tick(), true);
    assert.deepEqual(socket.ofType("tick"), [{ type: "tick", time: 1_001_999 }]);
    assert.equal(storage.values.size, 2, "the enter and the message are stored; the tick is not");
    const later = new FakeSocket();
    reflector.connect(later);
    const welcome = later.ofType("welcome")[0]!;
    assert.equal(welcome.time, 1_001_999);
    assert.deepEqual(
      welcome.events.map((event) => event.type),
      ["user-enter", "message", "user-enter"],
    );
  });

  test("survives a restart: the log is reloaded and clients of the old run get their user-exit first", async () => {
    const storage = new MemoryStorage();
    const first = await openRoom(storage);
    const socket = new FakeSocket();
    const oldId = first.reflector.connect(socket);
    first.reflector.receive(socket, publish("before the restart"));
    await Promise.resolve();

    const second = await openRoom(storage, 2_000_000);
    const newcomer = new FakeSocket();
    second.reflector.connect(newcomer);
    const welcome = newcomer.ofType("welcome")[0]!;
    assert.deepEqual(
      welcome.events.map((event) => [event.seq, event.type, event.client, event.time]),
      [
        [1, "user-enter", oldId, 1_000_000],
        [2, "message", oldId, 1_000_000],
        [3, "user-exit", oldId, 2_000_000],
        [4, "user-enter", welcome.client, 2_000_000],
      ],
    );
    assert.deepEqual([...storage.values.keys()], ["event:000000000001", "event:000000000002", "event:000000000003", "event:000000000004"]);
  });

  test("keeps sending to the others when one socket throws on send", async () => {
    const { reflector } = await openRoom();
    const closing = new FakeSocket();
    const healthy = new FakeSocket();
    reflector.connect(closing);
    reflector.connect(healthy);
    closing.send = () => {
      throw new Error("socket is closing");
    };
    reflector.receive(healthy, publish("still delivered"));
    assert.equal(healthy.ofType("message").length, 1);
  });

  test("a socket that fails while being welcomed still gets its user-exit when it closes", async () => {
    const { reflector } = await openRoom();
    const stayer = new FakeSocket();
    reflector.connect(stayer);
    const failing = new FakeSocket();
    failing.send = () => {
      throw new Error("socket is closing");
    };
    const failingId = reflector.connect(failing);
    reflector.disconnect(failing);
    assert.deepEqual(
      stayer.frames.slice(1).map((frame) => frame.type === "user-enter" || frame.type === "user-exit" ? [frame.type, frame.client] : frame.type),
      [
        ["user-enter", failingId],
        ["user-exit", failingId],
      ],
    );
  });
});
