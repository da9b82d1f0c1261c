/**
 * Headless clients against a real local server on a loopback port, under both platforms: `wrangler dev` running the
 * PartyServer Worker (what deploys) and `partykit dev` running the PartyKit adapter. Real sockets, the real
 * reflector, real storage.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { newRoomSecret } from "../../component/room-key.js";
import type { Session } from "../../component/session.js";
import { stateHash } from "../../component/state-hash.js";
import { CLOSE_NOT_MEMBER, MAX_FRAME_LENGTH, PING } from "../../common/protocol.js";
import { RawClient } from "../support/raw-client.js";
import { PLATFORMS, startReflector, type ReflectorServer } from "../support/reflector-server.js";
import { assertConverged, chat, joinRoom, postTexts } from "../support/sessions.js";
import { TimerChatModel } from "../support/timer-model.js";
import { sleep, waitFor } from "../support/wait-for.js";

/** The longest payload of `unit` repeated whose publish frame is still within the limit. */
function largestPayload(unit: string): string {
  const frameLength = (payload: string) => JSON.stringify({ type: "publish", id: 1, payload }).length;
  const perUnit = frameLength(unit.repeat(2)) - frameLength(unit);
  return unit.repeat(Math.floor((MAX_FRAME_LENGTH - frameLength("")) / perUnit));
}

/** Heartbeats every 2 s, so that a test of 20 s sees ten of them; every entry into a room's code is logged. */
/**
 * A grace period longer than a session's longest wait between reconnection attempts (4 s): after a restart, the
 * room may wake (by its alarm) and start the grace period before the client's next attempt.
 */
const SETTINGS = { GRACE_MS: "5000", HEARTBEAT_MS: "2000", LOG_ENTRIES: "1" };

for (const platform of PLATFORMS)
  describe(`against a real ${platform} dev`, () => {
    let server: ReflectorServer;
    const sessions: Session[] = [];
    const joinTracked = async (room: string, options = {}) => {
      const session = await joinRoom(server.host, room, options);
      sessions.push(session);
      return session;
    };

    before(async () => {
      server = await startReflector({ platform, vars: SETTINGS });
    });

    /** How often the room named `room` started, by its log lines (LOG_ENTRIES): its address is its name and its key's fingerprint. */
    const startsOf = (room: string) => server.output().match(new RegExp(`room ${room}~[A-Za-z0-9_-]{22}: start`, "g"))?.length ?? 0;

    after(async () => {
      for (const session of sessions) session.leave();
      await server.stop({ keep: false });
    });

    test("three clients posting concurrently end with identical state, and a late joiner reaches it too", async () => {
      const room = "concurrent";
      const clients = await Promise.all([0, 1, 2].map(() => joinTracked(room)));
      await waitFor(() => clients.every((client) => chat(client).users.length === 3), "three users everywhere");
      clients.forEach((client, index) => {
        for (let i = 0; i < 20; i++) client.publish("chat", "post", { text: `client ${index} post ${i}` });
      });
      await waitFor(() => clients.every((client) => postTexts(client).length === 60), "60 posts everywhere");
      const hash = await assertConverged(clients);
      // Each client's own posts stay in the order it sent them, inside the one total order.
      for (let index = 0; index < 3; index++) {
        const own = postTexts(clients[0]!).filter((text) => text.startsWith(`client ${index} `));
        assert.deepEqual(
          own,
          Array.from({ length: 20 }, (_, i) => `client ${index} post ${i}`),
        );
      }

      const late = await joinTracked(room);
      await assertConverged([...clients, late]);
      assert.notEqual(await stateHash(late.replica!), hash, "the late joiner's own entry changed everyone's state alike");
      assert.deepEqual(postTexts(late), postTexts(clients[0]!));
      assert.deepEqual(
        chat(late).users.map((user) => user.nickname),
        chat(clients[0]!).users.map((user) => user.nickname),
      );
    });

    test("closing a client gives the others its user-exit", async () => {
      const room = "leaving";
      const stayer = await joinTracked(room);
      const leaver = await joinRoom(server.host, room);
      await waitFor(() => chat(stayer).users.length === 2, "the second user");
      const leaverName = chat(leaver).nicknameOf(leaver.clientId!)!;
      leaver.leave();
      await waitFor(() => chat(stayer).users.length === 1, "the leaver to leave");
      assert.equal(chat(stayer).history.at(-1)!.text, `${leaverName} left`);
    });

    test("two sockets with the same _pk are two clients, and closing one leaves the other working", async () => {
      const room = "same-pk";
      const first = await RawClient.join(server.host, room, { pk: "shared-pk" });
      const second = await RawClient.join(server.host, room, { pk: "shared-pk" });
      const ids = [first, second].map((raw) => raw.welcome!);
      assert.notEqual(ids[0]!.client, ids[1]!.client, "the reflector, not _pk, decides identity");

      // Closed without a leave frame, as a dropped connection: the exit comes when the grace period ends.
      first.socket.close();
      await waitFor(() => second.frames.some((frame) => frame.type === "user-exit"), "the first socket's exit");
      const exit = second.frames.find((frame) => frame.type === "user-exit")!;
      assert.ok(exit.type === "user-exit" && exit.client === ids[0]!.client);
      second.publish("still here");
      await waitFor(() => second.frames.some((frame) => frame.type === "message"), "the echo of its own message");
      second.socket.close();
    });

    test("a bad frame gets an error frame and the connection keeps working", async () => {
      const client = await RawClient.join(server.host, "bad-frames");
      client.socket.send("{oops");
      client.publish("fine");
      await waitFor(() => client.frames.some((frame) => frame.type === "message"), "the good message");
      const error = client.frames.find((frame) => frame.type === "error");
      assert.deepEqual(error, { type: "error", code: "bad-frame", message: "frame is not valid JSON" });
      client.socket.close();
    });

    test(`after ${platform} dev stops and starts again on the same storage and port, the history is whole and a client resumes as itself`, async () => {
      const room = "restart";
      const writer = await joinTracked(room);
      for (let i = 0; i < 30; i++) writer.publish("chat", "post", { text: `before restart ${i}` });
      await waitFor(() => postTexts(writer).length === 30, "30 posts");
      // The worst cases for storage size: characters that escape to two or six, or take two bytes each.
      const largest = ['"', "\u4e2d", "\u{1f388}", "\u0001"].map(largestPayload);
      const raw = await RawClient.join(server.host, room);
      for (const payload of largest) raw.publish(payload);
      const ownEchoes = () => raw.ofType("message").filter((frame) => frame.client === raw.welcome!.client);
      await waitFor(() => ownEchoes().length === largest.length, "the large payloads' echoes");
      assert.ok(raw.frames.every((frame) => frame.type !== "error"));
      raw.socket.close();
      await waitFor(() => chat(writer).users.length === 1, "the raw socket's exit");
      const before = chat(writer).history.map((entry) => entry.text);
      const writerId = writer.clientId;

      for (const session of sessions.splice(0)) if (session !== writer) session.leave();
      sessions.push(writer);
      assert.equal(writer.status, "connected");
      await server.stop({ keep: true });
      await waitFor(() => writer.status === "reconnecting", "the writer to notice the server is gone");
      server = await startReflector({ platform, persistDir: server.persistDir, port: server.port, vars: SETTINGS });
      await waitFor(() => writer.status === "connected", "the writer to resume");
      assert.equal(writer.clientId, writerId, "the restarted reflector knows the writer by its secret");

      const reader = await joinTracked(room);
      const readerName = chat(reader).nicknameOf(reader.clientId!)!;
      assert.deepEqual(
        chat(reader).history.map((entry) => entry.text),
        [...before, `${readerName} joined`],
        "the whole history, and no leave or join for the writer",
      );
      await assertConverged([writer, reader]);

      const check = await RawClient.join(server.host, room);
      const { welcome, events } = await check.welcomed();
      assert.deepEqual(
        events.map((event) => event.seq),
        Array.from({ length: welcome.last }, (_, index) => index + 1),
        "no event is missing from the stored log",
      );
      const stored = events.flatMap((event) => (event.type === "message" && event.payload.length > 1000 ? [event.payload] : []));
      assert.deepEqual(stored, largest);
      check.socket.close();
    });

    test("a model's work due later runs in a quiet room: the replicas ask for a tick at its time, and only then does one come", async () => {
      const delay = 1500;
      const session = await joinTracked("timer", { model: TimerChatModel, modelOptions: { delay } });
      const model = session.model as TimerChatModel;
      const entered = model.history.at(-1)!.time;
      await waitFor(() => model.rings.length === 1, "the ring, which needs a tick");
      assert.deepEqual(model.rings, [entered + delay], "at the time it was due, in replicated time");
      const time = session.replica!.time;
      await sleep(3000);
      assert.equal(session.replica!.time, time, "no tick after it: nothing is due");
    });

    test("a connected client of an idle room receives nothing but the answers to its heartbeats for 20 s", async () => {
      const room = "idle";
      const client = await RawClient.join(server.host, room);
      const others = await Promise.all([joinTracked(room), joinTracked(room)]);
      await waitFor(() => client.frames.filter((frame) => frame.type === "user-enter").length === 3, "everyone's enter");
      const seen = client.frames.length;
      const pinger = setInterval(() => client.socket.send(PING), 2000);
      await sleep(20_000);
      clearInterval(pinger);
      const types = client.frames.slice(seen).map((frame) => frame.type);
      assert.ok(types.length >= 9, `answers to about ten heartbeats, got ${types.length}`);
      assert.deepEqual(new Set(types), new Set(["pong"]), "and nothing else");
      await assertConverged(others);
      client.socket.close();
      if (platform !== "wrangler") return;
      // 20 s without an event is twice what workerd waits before it evicts a hibernatable room: the close wakes it.
      const starts = () => startsOf(room);
      await waitFor(() => starts() === 2, "the room to start again: it slept through the heartbeats");
    });

    test("strangers at the door wake no room: sockets without a ticket and plain HTTP requests start no room's code", {
      skip: platform !== "wrangler",
    }, async () => {
      const room = "door-closed";
      const secret = newRoomSecret();
      const strangers = await Promise.all([1, 2, 3].map(() => RawClient.open(server.host, room, { secret, ticket: false })));
      const address = strangers[0]!.key.address;
      await Promise.all(strangers.map((stranger) => stranger.done));
      assert.ok(strangers.every((stranger) => stranger.closed?.code === CLOSE_NOT_MEMBER));
      const response = await fetch(`http://${server.host}/parties/main/${address}`);
      assert.equal(response.status, 426);
      await response.body?.cancel();
      await sleep(500);
      assert.equal(startsOf(room), 0, "the room never started");
      // The count works: a member starts it.
      await joinTracked(room, { key: secret });
      await waitFor(() => startsOf(room) === 1, "the member's visit to start the room");
    });

    test("a room evicted between two posts shows its clients nothing: no leave or join, and the order goes on", { skip: platform !== "wrangler" }, async () => {
      const room = "evicted";
      const [a, b] = [await joinTracked(room), await joinTracked(room)];
      a.publish("chat", "post", { text: "before the room sleeps" });
      await waitFor(() => postTexts(b).length === 1, "the first post");
      const seqBefore = b.replica!.seq;
      const startsBefore = startsOf(room);
      await sleep(12_000);
      b.publish("chat", "post", { text: "after it woke" });
      await waitFor(() => postTexts(a).length === 2, "the second post");
      assert.equal(startsOf(room), startsBefore + 1, "the post woke an evicted room");
      assert.equal(a.replica!.seq, seqBefore + 1, "the next sequence number, and no event but the post");
      assert.deepEqual(postTexts(a), ["before the room sleeps", "after it woke"]);
      assert.deepEqual(
        chat(a).users.map((user) => user.id),
        [a.clientId, b.clientId],
      );
      assert.equal(a.status, "connected");
      await assertConverged([a, b]);
    });
  });
