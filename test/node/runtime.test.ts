import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ReflectedEvent } from "../../common/protocol.js";
import { Xoshiro128StarStar } from "../../component/prng.js";
import { encodeModelEvent, MAX_DATA_DEPTH, Model, Replica } from "../../component/runtime.js";
import { stateHash } from "../../component/state-hash.js";
import { fnv1a64, seedFromString, splitMix64 } from "../support/seeded-random.js";

/** A replica's generator seed, as a room's key would give it. */
const SEED = [0x9e3779b9, 0x7f4a7c15, 0xf39cc060, 0x5cedc834];

describe("xoshiro128**, and the seeding of the tests' generators", () => {
  test("matches the reference implementation's outputs for state [1, 2, 3, 4] (rand_xoshiro's reference test)", () => {
    const generator = new Xoshiro128StarStar([1, 2, 3, 4]);
    const outputs = Array.from({ length: 10 }, () => generator.nextUint32());
    assert.deepEqual(outputs, [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804]);
  });

  test("matches the xoshiro-6502 verification data (seeded from the C reference implementation)", () => {
    const generator = new Xoshiro128StarStar([0x964d4a0c, 0xd40ab895, 0xad7fdecb, 0x3006f0f0]);
    const steps = Array.from({ length: 4 }, () => ({ output: generator.nextUint32(), state: generator.state }));
    assert.deepEqual(
      steps.map((step) => step.output),
      [0xf1391922, 0x6fe53806, 0xa5be2840, 0xf510ee70],
    );
    assert.deepEqual(
      steps.map((step) => step.state),
      [
        [0x72410269, 0xef382c52, 0x2e43bec7, 0x62432f20],
        [0xff3a011b, 0xb33a90fc, 0x2c5a18ae, 0xd81b946b],
        [0x941b058c, 0x605a8949, 0xa641e1b5, 0x0824bb59],
        [0xfc65379c, 0x52006d70, 0x87487639, 0xf1908343],
      ],
    );
  });

  test("FNV-1a 64 matches the published test vectors", () => {
    assert.equal(fnv1a64(""), 0xcbf29ce484222325n);
    assert.equal(fnv1a64("a"), 0xaf63dc4c8601ec8cn);
    assert.equal(fnv1a64("foobar"), 0x85944171f73967e8n);
  });

  test("SplitMix64 matches its published outputs", () => {
    const fromZero = splitMix64(0n);
    assert.deepEqual([fromZero.next().value, fromZero.next().value, fromZero.next().value], [0xe220a8397b1dcdafn, 0x6e789e6aa1b965f4n, 0x06c45d188009454fn]);
    const fromSeed = splitMix64(1234567n);
    assert.deepEqual([fromSeed.next().value, fromSeed.next().value], [6457827717110365317n, 3203168211198807973n]);
  });

  test("different texts give different seeds; the same text always the same; the generator refuses an all-zero state", () => {
    assert.deepEqual(seedFromString("room-a"), seedFromString("room-a"));
    assert.notDeepEqual(seedFromString("room-a"), seedFromString("room-b"));
    assert.throws(() => new Xoshiro128StarStar([0, 0, 0, 0]), /not all zero/);
  });
});

/** A model exercising every runtime feature: subscriptions, random, now, futures, model-to-model publish. */
class Probe extends Model {
  log: (string | number)[] = [];
  child: Model | null = null;

  override init(): void {
    this.subscribe("probe", "note", "note");
    this.subscribe("probe", "schedule", "schedule");
    this.subscribe("probe", "relay", "relay");
    this.subscribe(this.sessionId, "user-enter", "entered");
    this.child = Listener.create();
  }
  note(data: string, sender?: string): void {
    this.log.push(`${data} from ${sender} at ${this.now()} random ${Math.floor(this.random() * 1000)}`);
  }
  schedule(data: { ms: number; label: string }): void {
    this.future(data.ms).fire(data.label);
  }
  fire(label: string): void {
    this.log.push(`${label} fired at ${this.now()}`);
  }
  relay(data: string): void {
    this.publish("listener", "heard", data);
    this.log.push(`relayed ${data}`);
  }
  entered(client: string): void {
    this.log.push(`enter ${client}`);
  }
}
Probe.register("Probe");

class Listener extends Model {
  heard: string[] = [];
  override init(): void {
    this.subscribe("listener", "heard", "hear");
  }
  hear(data: string): void {
    this.heard.push(data);
  }
}
Listener.register("Listener");

const message = (seq: number, time: number, scope: string, event: string, data: unknown, client = "c0"): ReflectedEvent => ({
  type: "message",
  seq,
  time,
  client,
  id: seq,
  payload: encodeModelEvent(scope, event, data),
});

const script: ReflectedEvent[] = [
  { type: "user-enter", seq: 1, time: 100, client: "c0" },
  message(2, 110, "probe", "note", "hello"),
  message(3, 120, "probe", "schedule", { ms: 50, label: "A" }),
  message(4, 125, "probe", "schedule", { ms: 45, label: "B" }),
  message(5, 130, "probe", "schedule", { ms: 10, label: "C" }),
  message(6, 200, "probe", "note", "after futures"),
  message(7, 210, "probe", "relay", "to the listener"),
];

describe("replica", () => {
  test("two replicas fed the same events end with identical serialized state and hash", async () => {
    const [a, b] = [Replica.create("session", SEED, Probe), Replica.create("session", SEED, Probe)];
    for (const event of script) {
      a.apply(event);
      b.apply(event);
    }
    assert.equal(a.serialize(), b.serialize());
    assert.equal(await stateHash(a), await stateHash(b));
    assert.match(await stateHash(a), /^[0-9a-f]{64}$/);
    const other = Replica.create("another session", SEED, Probe);
    for (const event of script) other.apply(event);
    assert.notEqual(await stateHash(other), await stateHash(a), "the seed comes from the session id");
  });

  test("runs futures in (time, scheduling order) before any later event, at their own time", () => {
    const replica = Replica.create("session", SEED, Probe);
    for (const event of script) replica.apply(event);
    const log = (replica.root as Probe).log.map(String).filter((line) => line.includes("fired") || line.startsWith("after futures"));
    assert.deepEqual(
      log.map((line) => line.replace(/ random \d+$/, "")),
      ["C fired at 140", "A fired at 170", "B fired at 170", "after futures from c0 at 200"],
    );
  });

  test("delivers model-to-model events at once and model-to-view events after the batch", () => {
    const replica = Replica.create("session", SEED, Probe);
    for (const event of script) replica.apply(event);
    const probe = replica.root as Probe;
    assert.deepEqual((probe.child as Listener).heard, ["to the listener"]);
    assert.deepEqual(replica.takeViewEvents(), [{ scope: "listener", event: "heard", data: "to the listener" }]);
    assert.deepEqual(replica.takeViewEvents(), []);
  });

  test("passes the reflector-stamped client as the sender, and the client id for user-enter", () => {
    const replica = Replica.create("session", SEED, Probe);
    replica.apply({ type: "user-enter", seq: 1, time: 1, client: "stamped" });
    replica.apply(message(2, 2, "probe", "note", "hi", "stamped"));
    assert.deepEqual((replica.root as Probe).log.slice(0, 1), ["enter stamped"]);
    assert.match(String((replica.root as Probe).log[1]), /^hi from stamped at 2 /);
  });

  test("advances time with ticks and runs futures that fall due", () => {
    const replica = Replica.create("session", SEED, Probe);
    replica.apply(message(1, 1000, "probe", "schedule", { ms: 500, label: "T" }));
    replica.advanceTo(1400);
    assert.equal(replica.pendingFutures, 1);
    replica.advanceTo(1600);
    assert.equal(replica.pendingFutures, 0);
    assert.deepEqual((replica.root as Probe).log, ["T fired at 1500"]);
    assert.equal(replica.time, 1600);
  });

  test("serializes pending futures and the generator, so a restored replica continues identically", () => {
    const original = Replica.create("session", SEED, Probe);
    for (const event of script.slice(0, 4)) original.apply(event);
    assert.equal(original.pendingFutures, 2);
    const restored = Replica.restore(original.serialize());
    assert.equal(restored.serialize(), original.serialize());
    for (const event of script.slice(4)) {
      original.apply(event);
      restored.apply(event);
    }
    assert.equal(restored.serialize(), original.serialize());
    assert.ok((restored.root as Probe).child instanceof Listener, "model references are restored as models");
  });

  test("ignores an event it already applied and refuses a gap in the order", () => {
    const replica = Replica.create("session", SEED, Probe);
    replica.apply(script[0]!);
    replica.apply(script[0]!);
    assert.deepEqual((replica.root as Probe).log, ["enter c0"]);
    assert.throws(() => replica.apply(script[2]!), /event 3 arrived after event 1: events are missing/);
  });

  test("skips payloads that are not model events alike on every replica", () => {
    const replica = Replica.create("session", SEED, Probe);
    replica.apply({ type: "message", seq: 1, time: 1, client: "c", id: 1, payload: "not json" });
    replica.apply({ type: "message", seq: 2, time: 2, client: "c", id: 2, payload: '{"scope":1}' });
    assert.equal(replica.seq, 2);
    assert.deepEqual((replica.root as Probe).log, []);
  });

  test("no payload can publish into the session's own scope: a fake user-enter or user-exit reaches no model", () => {
    const replica = Replica.create("session", SEED, Probe);
    replica.apply(script[0]!);
    replica.apply(message(2, 110, "session", "user-enter", "a phantom"));
    replica.apply(message(3, 120, "session", "user-exit", "c0"));
    assert.deepEqual((replica.root as Probe).log, ["enter c0"]);
  });

  test("event data that model state could not hold is skipped alike by every replica, which can still serialize", () => {
    const deep = (depth: number): unknown => (depth === 0 ? "bottom" : [deep(depth - 1)]);
    const payloads = [
      '{"scope":"probe","event":"note","data":{"$model":"M1"}}',
      '{"scope":"probe","event":"note","data":{"nested":[{"$model":"M2"}]}}',
      '{"scope":"probe","event":"note","data":{"__proto__":{"polluted":true}}}',
      '{"scope":"probe","event":"note","data":1e400}',
      '{"scope":"probe","event":"note","data":[-1e999]}',
      `{"scope":"probe","event":"note","data":${"[".repeat(20_000)}${"]".repeat(20_000)}}`,
      encodeModelEvent("probe", "note", deep(MAX_DATA_DEPTH + 1)),
    ];
    const [a, b] = [Replica.create("session", SEED, Probe), Replica.create("session", SEED, Probe)];
    for (const replica of [a, b]) {
      for (const [index, payload] of payloads.entries())
        replica.apply({ type: "message", seq: index + 1, time: index + 1, client: "m", id: index + 1, payload });
      replica.apply(message(payloads.length + 1, 100, "probe", "note", deep(MAX_DATA_DEPTH)));
    }
    const log = (a.root as Probe).log;
    assert.equal(log.length, 1, "only the last post, nested exactly MAX_DATA_DEPTH deep, reached the model");
    assert.match(String(log[0]), /^bottom from c0 at 100 /);
    assert.equal(a.serialize(), b.serialize());
  });

  test("refuses model code outside a replica", () => {
    const replica = Replica.create("session", SEED, Probe);
    assert.throws(() => replica.root.random(), /random is model code/);
    assert.throws(() => replica.root.now(), /now is model code/);
    assert.throws(() => Probe.create(), /Model.create is model code/);
  });

  test("refuses state that cannot be replicated", () => {
    const replica = Replica.create("session", SEED, Probe);
    (replica.root as Probe).log.push(new Date(0) as never);
    assert.throws(() => replica.serialize(), /state\.models\.M1\.state\.log\[0\] holds a Date/);
  });
});
