/**
 * The reflector's limits and identity rules against a real `wrangler dev` (docs/security.md): each limit crossed
 * gets its documented error frame and close code, a flood is throttled and then disconnected while honest
 * clients chat on, and impersonation attempts fail.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { ChatModel } from "../../component/chat-model.js";
import { Session } from "../../component/session.js";
import { CLOSE_BAD_ROOM, CLOSE_BUSY, CLOSE_FLOODING, CLOSE_NO_HELLO, CLOSE_ROOM_FULL, type ServerFrame } from "../../common/protocol.js";
import { budgetFor } from "../../party/limits.js";
import { DEFAULT_SETTINGS } from "../../party/settings.js";
import { TestNetwork } from "../support/network.js";
import { RawClient, type RawClientOptions } from "../support/raw-client.js";
import { startReflector, type ReflectorServer } from "../support/reflector-server.js";
import { assertConverged, chat } from "../support/sessions.js";
import { sleep, waitFor } from "../support/wait-for.js";

const MAX_CLIENTS = 3;
const MAX_FRAME = 16_384;
/** The rate limit is left at its defaults: the flood below is ten times the documented rate. */
const VARS = {
  // Long, so that an exit seen within seconds can only be an immediate one.
  GRACE_MS: "60000",
  MAX_CLIENTS: String(MAX_CLIENTS),
  MAX_FRAME_LENGTH: String(MAX_FRAME),
  HELLO_TIMEOUT_MS: "1500",
  MAX_WAITING: "5",
};

const posts = (session: Session) => chat(session).history.filter((entry) => entry.kind === "post");

describe("limits against a real wrangler dev", () => {
  let server: ReflectorServer;
  const sessions: Session[] = [];
  const raws: RawClient[] = [];
  const join = async (room: string, network?: TestNetwork) => {
    const session = Session.join({ host: server.host, room, model: ChatModel, WebSocket: network?.WebSocket ?? WebSocket });
    sessions.push(session);
    await session.whenReady();
    return session;
  };
  const raw = async (room: string) => {
    const socket = await RawClient.join(server.host, room);
    raws.push(socket);
    return socket;
  };
  /** A raw socket that is open, and has not said hello yet. */
  const rawOpen = async (room: string, options: RawClientOptions = {}) => {
    const socket = await RawClient.open(server.host, room, options);
    raws.push(socket);
    return socket;
  };

  before(async () => {
    server = await startReflector({ vars: VARS });
  });

  after(async () => {
    for (const session of sessions) session.leave();
    for (const socket of raws) socket.socket.terminate();
    await server.stop();
  });

  test("a frame above MAX_FRAME_LENGTH gets frame-too-large; one at the limit is accepted, and the connection keeps working", { timeout: 30_000 }, async () => {
    const client = await raw("frame-size");
    const publish = (id: number, length: number) => {
      const empty = JSON.stringify({ type: "publish", id, payload: "" });
      return JSON.stringify({ type: "publish", id, payload: "x".repeat(length - empty.length) });
    };
    client.send(publish(1, MAX_FRAME + 1));
    client.send(publish(1, MAX_FRAME));
    await waitFor(() => client.frames.some((frame) => frame.type === "message"), "the frame at the limit to come back");
    assert.deepEqual(client.errors(), [{ code: "frame-too-large", message: `frame is ${MAX_FRAME + 1} characters; the limit is ${MAX_FRAME}` }]);
    const message = client.frames.find((frame) => frame.type === "message")!;
    assert.ok(message.type === "message" && message.id === 1 && message.payload.length > MAX_FRAME / 2);
    assert.equal(client.closed, undefined);
  });

  test("a room whose name is too long or has other characters than A-Za-z0-9_-, or whose address names no key, gets bad-room and close code 4001", {
    timeout: 30_000,
  }, async () => {
    const ok = await raw("x".repeat(64));
    assert.equal(ok.welcome!.resumed, false, "64 characters are fine");
    const fingerprint = ok.key.address.split("~")[1]!;
    const onlyThese = "a room id may hold only the letters A-Z and a-z, digits, _ and -";
    const noKey = "a room's address is its name, ~ and the 22-character fingerprint of its key";
    for (const [address, message] of [
      [`${"x".repeat(65)}~${fingerprint}`, "the room id is 65 characters long; the limit is 64"],
      [`a.b~${fingerprint}`, onlyThese],
      [`a%20b~${fingerprint}`, onlyThese],
      [`caf%C3%A9~${fingerprint}`, onlyThese],
      ["lobby", noKey],
      ["lobby~short", noKey],
      [`lobby~${fingerprint}~${fingerprint}`, noKey],
    ] as const) {
      const socket = await rawOpen("unused", { address });
      await socket.done;
      assert.deepEqual(socket.frames, [{ type: "error", code: "bad-room", message }], address);
      assert.deepEqual(socket.closed, { code: CLOSE_BAD_ROOM, reason: "bad room id" }, address);
    }
  });

  test("a new client beyond MAX_CLIENTS gets room-full and close code 4002; an away client may still resume, and a freed seat is taken", {
    timeout: 30_000,
  }, async () => {
    const room = "full";
    const members = [await raw(room), await raw(room), await raw(room)];
    const extra = await rawOpen(room);
    await extra.hello();
    await extra.done;
    assert.deepEqual(extra.errors(), [{ code: "room-full", message: `this room holds ${MAX_CLIENTS} clients, present or away; try again later` }]);
    assert.deepEqual(extra.closed, { code: CLOSE_ROOM_FULL, reason: "room full" });

    // Dropped without leave: away, still in its seat, and welcome to come back.
    const dropped = members[2]!;
    const { client, secret } = dropped.welcome!;
    dropped.socket.terminate();
    await sleep(300);
    const blocked = await rawOpen(room);
    await blocked.hello();
    await blocked.done;
    assert.deepEqual(
      blocked.errors().map((error) => error.code),
      ["room-full"],
    );
    const back = await rawOpen(room);
    await back.hello({ client, secret, seq: 0 });
    await waitFor(() => back.welcome !== undefined, "the resume's welcome");
    assert.equal(back.welcome!.client, client);
    assert.equal(back.welcome!.resumed, true);

    members[0]!.send({ type: "leave" });
    await waitFor(() => members[1]!.frames.some((frame) => frame.type === "user-exit"), "the leave");
    const newcomer = await raw(room);
    assert.equal(newcomer.welcome!.resumed, false);
    // Nobody saw the refused sockets: only the three entries, the exit and the newcomer's entry.
    assert.deepEqual(
      members[1]!.frames.filter((frame) => frame.type === "user-enter" || frame.type === "user-exit").map((frame) => frame.type),
      ["user-enter", "user-enter", "user-enter", "user-exit", "user-enter"],
    );
  });

  test(`a flood at 10x the rate limit (${10 * DEFAULT_SETTINGS.rateLimit} frames/s) is throttled, then closed with 4003; honest clients' posts all arrive`, {
    timeout: 30_000,
  }, async () => {
    const room = "flood";
    const alice = await join(room);
    const bob = await join(room);
    const flooder = await raw(room);
    await waitFor(() => chat(alice).users.length === 3 && chat(bob).users.length === 3, "three users");
    const flooderId = flooder.welcome!.client;

    const perHonest = 20;
    const honestDone = (async () => {
      for (let i = 0; i < perHonest; i++) {
        alice.publish("chat", "post", { text: `alice ${i}` });
        bob.publish("chat", "post", { text: `bob ${i}` });
        await sleep(100); // 10 posts per second each: well within the limit
      }
    })();

    // Ten times the rate, kept up by the clock (timers run late under load), for at most 10 s.
    const rate = 10 * DEFAULT_SETTINGS.rateLimit;
    let sent = 0;
    const started = Date.now();
    while (flooder.closed === undefined && Date.now() - started < 10_000) {
      const due = Math.floor(((Date.now() - started) * rate) / 1000);
      while (sent < due && flooder.socket.readyState === WebSocket.OPEN) flooder.send({ type: "publish", id: ++sent, payload: `flood ${sent}` });
      await sleep(10);
    }
    await flooder.done;
    const elapsed = Date.now() - started;
    console.log(`# flooder sent ${sent} frames in ${elapsed} ms before it was closed`);
    await honestDone;

    assert.deepEqual(flooder.closed, { code: CLOSE_FLOODING, reason: "flooding" });
    const errors = flooder.errors();
    const rateLimited = errors.filter((error) => error.code === "rate-limited");
    assert.ok(rateLimited.length > DEFAULT_SETTINGS.floodRefusals, `${rateLimited.length} rate-limited refusals`);
    // The flooder numbers its posts on regardless, so a post that fits the budget after a dropped one skips an id.
    const codes = new Set(errors.map((error) => error.code));
    assert.deepEqual(
      [...codes].filter((code) => !["rate-limited", "over-budget", "out-of-order"].includes(code)),
      [],
      "only refusals for rate and share, and their consequence",
    );
    // Throttled: what got through is its share of the room (a newcomer's starts with one post), far below what was sent.
    const accepted = flooder.frames.filter((frame) => frame.type === "message" && frame.client === flooderId).length;
    const share = budgetFor(DEFAULT_SETTINGS, 3).perSecond;
    assert.ok(accepted <= 1 + (share * elapsed) / 1000 + 5, `${accepted} of ${sent} accepted, at ${share} a second`);
    assert.ok(errors.length + accepted <= sent);

    // Closed as leaving: the others see it go at once, although the grace period is a minute.
    await waitFor(() => chat(alice).users.length === 2 && chat(bob).users.length === 2, "the flooder's exit");
    await waitFor(
      () => posts(alice).length === 2 * perHonest && posts(bob).length === 2 * perHonest && alice.pending.length === 0 && bob.pending.length === 0,
      "every honest post",
    );
    await assertConverged([alice, bob]);
    for (const session of [alice, bob]) {
      const texts = posts(session).map((entry) => entry.text);
      assert.equal(new Set(texts).size, texts.length, "each post once");
      for (const name of ["alice", "bob"]) {
        assert.deepEqual(
          texts.filter((text) => text.startsWith(`${name} `)),
          Array.from({ length: perHonest }, (_, i) => `${name} ${i}`),
        );
      }
    }
  });

  test("a session that posts far more than the rate limit at once paces itself: every post arrives once, none is refused", { timeout: 30_000 }, async () => {
    const room = "paced";
    const [writer, reader] = [await join(room), await join(room)];
    const refusals: string[] = [];
    writer.addEventListener("reflector-error", (event) => refusals.push((event as CustomEvent<{ code: string }>).detail.code));
    // Beyond the burst, and with the two join notices still within the model's 100 history entries.
    const count = DEFAULT_SETTINGS.rateBurst + 1.5 * DEFAULT_SETTINGS.rateLimit;
    const started = Date.now();
    for (let i = 0; i < count; i++) writer.publish("chat", "post", { text: `paced ${i}` });
    await waitFor(() => posts(reader).length === count && writer.pending.length === 0, "every paced post", 20_000);
    const elapsed = Date.now() - started;
    console.log(`# ${count} posts at once arrived in ${elapsed} ms`);
    assert.deepEqual(refusals, [], "the session kept within the limit");
    assert.deepEqual(
      posts(reader).map((entry) => entry.text),
      Array.from({ length: count }, (_, i) => `paced ${i}`),
    );
  });

  test("a socket that never says hello is closed with 4004 after HELLO_TIMEOUT_MS", { timeout: 30_000 }, async () => {
    const socket = await rawOpen("silent");
    await socket.done;
    assert.deepEqual(socket.closed, { code: CLOSE_NO_HELLO, reason: "no hello" });
    assert.deepEqual(
      socket.frames.map((frame) => frame.type),
      ["challenge"],
    );
  });

  test("sockets that do not say hello cannot pile up: beyond MAX_WAITING a room turns newcomers away with busy and close 4007", {
    timeout: 30_000,
  }, async () => {
    const room = "waiting";
    const silent = await Promise.all([1, 2, 3, 4, 5].map(() => rawOpen(room)));
    await Promise.all(silent.map((socket) => socket.challenge()));
    const turnedAway = await rawOpen(room);
    await waitFor(() => turnedAway.frames.length > 0, "the answer to the sixth socket");
    assert.deepEqual(turnedAway.frames, [
      { type: "error", code: "busy", message: "5 connections to this room are waiting to say hello; try again in a moment" },
    ]);
    // One of them says hello (before HELLO_TIMEOUT_MS): a place is free again.
    await silent[0]!.hello();
    await silent[0]!.welcomed();
    const member = await raw(room);
    assert.equal(member.welcome!.resumed, false);
    await turnedAway.done;
    assert.deepEqual(turnedAway.closed, { code: CLOSE_BUSY, reason: "too many connections waiting" });
  });

  test("impersonation fails: a resume with another's id and a wrong secret, and frames carrying another's client id, get identity errors", {
    timeout: 30_000,
  }, async () => {
    const room = "impersonation";
    const honest = await join(room);
    const errors: string[] = [];
    honest.addEventListener("reflector-error", (event) => errors.push((event as CustomEvent<{ code: string }>).detail.code));
    const victim = honest.clientId!;
    honest.publish("chat", "post", { text: "the only post I wrote" });
    await waitFor(() => posts(honest).length === 1, "the honest post");

    // 1. Claiming the honest client's id on hello.
    const attacker = await rawOpen(room);
    await attacker.hello({ client: victim, secret: "A".repeat(22), seq: 0 });
    await waitFor(() => attacker.frames.length > 1, "an answer to the false resume");
    await sleep(200);
    assert.deepEqual(attacker.frames.slice(1), [{ type: "error", code: "identity", message: `client ${victim} belongs to another connection` }], "no welcome");

    // 2. The same socket may join as itself, then tries to post, vote, upload and leave as the victim.
    await attacker.hello();
    await waitFor(() => attacker.welcome !== undefined, "the attacker's own welcome");
    assert.notEqual(attacker.welcome!.client, victim);
    const forged = [
      { type: "publish", id: 1, payload: JSON.stringify({ scope: "chat", event: "post", data: { text: "forged" } }), client: victim },
      { type: "hash", seq: 1, hash: "0".repeat(64), client: victim },
      { type: "snapshot", seq: 1, part: 0, parts: 1, data: "{}", client: victim },
      { type: "leave", client: victim },
    ];
    for (const frame of forged) attacker.send(frame);
    await waitFor(() => attacker.errors().length === 1 + forged.length, "an error for each forged frame");
    assert.deepEqual(
      attacker.errors().map((error) => error.code),
      ["identity", ...forged.map(() => "identity")],
    );

    // 3. The attacker's own posts are stamped with its own id, whatever the payload says (it is not even
    // encrypted with the room's key, so every replica skips it).
    attacker.send({
      type: "publish",
      id: 1,
      payload: JSON.stringify({ scope: "chat", event: "post", data: { text: "signed by the attacker", client: victim } }),
    });
    const own = (frame: ServerFrame) => frame.type === "message" && frame.seq > attacker.welcome!.last;
    await waitFor(() => attacker.frames.some(own), "the attacker's own post");
    const stamped = attacker.frames.find(own)!;
    assert.ok(stamped.type === "message" && stamped.client === attacker.welcome!.client);
    await waitFor(() => honest.replica!.seq === stamped.seq, "the victim to apply it");
    await sleep(200);

    assert.equal(honest.clientId, victim, "the victim kept its identity");
    assert.equal(honest.status, "connected");
    assert.deepEqual(errors, [], "the victim was told nothing");
    assert.equal(chat(honest).users.length, 2, "nobody left");
    const byVictim = posts(honest)
      .filter((entry) => entry.author === victim)
      .map((entry) => entry.text);
    assert.deepEqual(byVictim, ["the only post I wrote"], "nothing is attributed to the victim that it did not send");
    assert.equal(posts(honest).length, 1);

    // 4. While the victim's connection is down, its id still cannot be taken; the victim itself resumes.
    const network = new TestNetwork();
    const away = await join(room, network);
    const awayId = away.clientId!;
    const thief = await rawOpen(room);
    network.kill();
    await thief.hello({ client: awayId, secret: "B".repeat(22), seq: 0 });
    await waitFor(() => thief.frames.length > 1, "an answer to the thief");
    assert.deepEqual(
      thief.errors().map((error) => error.code),
      ["identity"],
    );
    await waitFor(() => away.status === "connected", "the real client to resume");
    assert.equal(away.clientId, awayId);
  });
});
