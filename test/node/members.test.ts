/**
 * Only members touch a room: each attack of a stranger (who knows a room's address but not its key) and of a member
 * running a modified client, performed against a real `wrangler dev`. Members are real Sessions; attackers are raw
 * sockets speaking the wire protocol (test/support/raw-client.ts), with or without the room's key.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { ChatModel } from "../../component/chat-model.js";
import { newRoomSecret, RoomKey } from "../../component/room-key.js";
import { Replica } from "../../component/runtime.js";
import { Session } from "../../component/session.js";
import { stateHash } from "../../component/state-hash.js";
import { sha256Hex } from "../../common/crypto.js";
import { CLOSE_NOT_MEMBER, CLOSE_STALE_TICKET, TICKET_WINDOW } from "../../common/protocol.js";
import { DriftingChatModel } from "../support/drifting-model.js";
import { RawClient } from "../support/raw-client.js";
import { startReflector, type ReflectorServer } from "../support/reflector-server.js";
import { seedFromString } from "../support/seeded-random.js";
import { TimerChatModel } from "../support/timer-model.js";
import { assertConverged, chat, joinRoom, postTexts } from "../support/sessions.js";
import { sleep, waitFor } from "../support/wait-for.js";

/** Snapshots every 10 events, so that rounds happen within a test; a short vote, so that a stalled round ends soon. */
const VARS = { SNAPSHOT_EVENTS: "10", SNAPSHOT_GAP_MS: "0", VOTE_TIMEOUT_MS: "1500", GRACE_MS: "60000" };
const notices = (session: Session) =>
  chat(session)
    .history.filter((entry) => entry.kind === "notice")
    .map((entry) => entry.text);

/** A WebSocket class that records what its sessions send, and the addresses they open, to replay them as an attacker would. */
function recording(sent: string[], urls: string[] = []) {
  return class extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      urls.push(String(url));
    }

    override send(data: unknown, ...rest: unknown[]): void {
      sent.push(String(data));
      (super.send as (data: unknown, ...rest: unknown[]) => void)(data, ...rest);
    }
  };
}

describe("only members touch a room (against a real wrangler dev)", () => {
  let server: ReflectorServer;
  const sessions: Session[] = [];
  const raws: RawClient[] = [];
  const member = async (room: string, secret: string, options = {}) => {
    const session = await joinRoom(server.host, room, { key: secret, ...options });
    sessions.push(session);
    return session;
  };
  const raw = async (room: string, options: Parameters<typeof RawClient.open>[2] = {}, join = true) => {
    const client = join ? await RawClient.join(server.host, room, options) : await RawClient.open(server.host, room, options);
    raws.push(client);
    return client;
  };

  before(async () => {
    server = await startReflector({ vars: VARS });
  });

  after(async () => {
    for (const session of sessions) session.leave();
    for (const client of raws) client.socket.terminate();
    await server.stop();
  });

  describe("a stranger who knows the room's address but not its key", () => {
    test("is turned away at the door: without a ticket, or with one of another key, a socket gets not-member and close 4006 before the room sees it", async () => {
      const room = "door";
      const secret = newRoomSecret();
      const alice = await member(room, secret);
      const address = (await RoomKey.derive(room, secret)).address;
      const strangers = await Promise.all([
        raw(room, { address, ticket: false }, false),
        raw(room, { address, secret: newRoomSecret() }, false), // signed, with a key the address does not name
      ]);
      for (const stranger of strangers) {
        await stranger.done;
        assert.deepEqual(
          stranger.frames,
          [{ type: "error", code: "not-member", message: "this connection carries no ticket signed with the room's key" }],
          "no challenge",
        );
        assert.deepEqual(stranger.closed, { code: CLOSE_NOT_MEMBER, reason: "not a member" });
      }
      assert.equal(chat(alice).users.length, 1);
    });

    test("locks nobody out: sixty sockets held open without a ticket take no place among those waiting for their hello", async () => {
      const room = "lockout";
      const secret = newRoomSecret();
      const alice = await member(room, secret);
      const address = (await RoomKey.derive(room, secret)).address;
      // More than MAX_WAITING (50): before the door, these filled the room's waiting places and every member was busy.
      const strangers = await Promise.all(Array.from({ length: 60 }, () => raw(room, { address, ticket: false }, false)));
      const bob = await member(room, secret);
      await waitFor(() => chat(alice).users.length === 2 && chat(bob).users.length === 2, "Bob joins");
      assert.ok(strangers.every((stranger) => stranger.closed?.code === CLOSE_NOT_MEMBER));
    });

    test("a ticket made too long ago gets stale-ticket with the server's time, and a member whose clock is ten minutes slow still joins", async () => {
      const room = "clocks";
      const secret = newRoomSecret();
      const stale = await raw(room, { secret, ticket: { at: Date.now() - 2 * TICKET_WINDOW } }, false);
      await stale.done;
      const [refusal] = stale.ofType("error");
      assert.equal(refusal?.code, "stale-ticket");
      assert.ok(Math.abs(refusal!.time! - Date.now()) < 5000, "it says the server's time");
      assert.deepEqual(stale.closed, { code: CLOSE_STALE_TICKET, reason: "stale ticket" });
      const realNow = Date.now;
      Date.now = () => realNow.call(Date) - 10 * 60_000;
      try {
        const late = await member(room, secret);
        assert.equal(late.status, "connected");
      } finally {
        Date.now = realNow;
      }
    });

    test("gets no seat with a member's ticket replayed: its hello cannot answer this connection's challenge, and nobody sees it", async () => {
      const room = "seats";
      const secret = newRoomSecret();
      const sent: string[] = [];
      const urls: string[] = [];
      const alice = await member(room, secret, { WebSocket: recording(sent, urls) });
      const bob = await member(room, secret);
      const hello = sent.find((frame) => JSON.parse(frame).type === "hello")!;
      // Alice's address with her ticket, as a log might have kept it: it opens the door within TICKET_WINDOW.
      const strangers = await Promise.all([1, 2, 3].map(() => raw(room, { url: urls[0] }, false)));
      for (const stranger of strangers) {
        await stranger.challenge();
        stranger.send(hello); // the member's hello answers the member's challenge, not this one
        await stranger.done;
        assert.deepEqual(
          stranger.frames.map((frame) => frame.type),
          ["challenge", "error"],
          "no frame of the room",
        );
        assert.equal(stranger.errors()[0]!.code, "not-member");
        assert.deepEqual(stranger.closed, { code: CLOSE_NOT_MEMBER, reason: "not a member" });
      }
      // And one that signs the challenge with a key of its own: the address names the members' key, not its.
      const signer = await raw(room, { url: urls[0], secret: newRoomSecret() }, false);
      await signer.hello();
      await signer.done;
      assert.equal(signer.closed?.code, CLOSE_NOT_MEMBER);
      await sleep(300);
      for (const session of [alice, bob]) assert.equal(chat(session).users.length, 2, "only the members are listed");
      assert.deepEqual(notices(alice).filter((text) => text.endsWith("joined")).length, 2, "no notice of anyone else");
    });

    test("cannot vote, upload or post: its hash, snapshot and a replayed post or /reset are refused, and the members' snapshot is stored", async () => {
      const room = "votes";
      const secret = newRoomSecret();
      const sent: string[] = [];
      const urls: string[] = [];
      const alice = await member(room, secret, { WebSocket: recording(sent, urls) });
      const bob = await member(room, secret);
      alice.publish("chat", "post", { text: "the door code is 4711" });
      await waitFor(() => postTexts(bob).length === 1, "the post");
      const captured = sent.filter((frame) => JSON.parse(frame).type === "publish");
      // In through the door with Alice's replayed ticket, as far as a stranger gets.
      const strangers = await Promise.all([1, 2, 3, 4, 5].map(() => raw(room, { url: urls[0] }, false)));
      for (const stranger of strangers) {
        await stranger.challenge();
        stranger.send({ type: "hash", seq: 10, hash: "0".repeat(64) });
        stranger.send({ type: "snapshot", seq: 10, part: 0, parts: 1, data: "garbage" });
        for (const frame of captured) stranger.send(frame);
        stranger.send({ type: "publish", id: 2, payload: "/reset" });
      }
      // Enough posts for a snapshot round among the members.
      for (let i = 0; i < 8; i++) bob.publish("chat", "post", { text: `bob ${i}` });
      await waitFor(() => postTexts(alice).length === 9, "the members' posts");
      await waitFor(() => strangers.every((stranger) => stranger.errors().length === 3 + captured.length), "a refusal of every frame");
      for (const stranger of strangers)
        assert.ok(
          stranger.errors().every((error) => error.code === "out-of-turn"),
          JSON.stringify(stranger.errors()),
        );
      const check = await raw(room, { secret });
      assert.equal(check.welcome!.snapshot?.seq, 10, "the members' snapshot is stored");
      const newcomer = await member(room, secret);
      assert.deepEqual(postTexts(newcomer), postTexts(alice), "the post shows once, and the history is whole");
      assert.equal(postTexts(alice).filter((text) => text === "the door code is 4711").length, 1);
      await assertConverged([alice, bob, newcomer]);
    });

    test("cannot learn a state from a divergence report: it gets none, and the members' hashes are of sealed states", async () => {
      const room = "divergence";
      const secret = newRoomSecret();
      const honest = [
        await member(room, secret, { model: DriftingChatModel, modelOptions: { drift: 0 } }),
        await member(room, secret, { model: DriftingChatModel, modelOptions: { drift: 0 } }),
      ];
      const urls: string[] = [];
      const drifter = await member(room, secret, { model: DriftingChatModel, modelOptions: { drift: 1 }, WebSocket: recording([], urls) });
      const stranger = await raw(room, { url: urls[0] }, false);
      await stranger.challenge();
      for (let i = 0; i < 7; i++) honest[0]!.publish("chat", "post", { text: `post ${i}` });
      await waitFor(() => drifter.divergence !== undefined, "the divergence report");
      assert.deepEqual(
        stranger.frames.map((frame) => frame.type),
        ["challenge"],
        "the stranger heard nothing of it",
      );
      const votes = drifter.divergence!.votes.map((vote) => vote.hash);
      const plaintexts = await Promise.all([...honest, drifter].map((session) => sha256Hex(session.replica!.serialize())));
      for (const hash of plaintexts) assert.ok(!votes.includes(hash), "no vote is the hash of a plaintext state");
    });

    test("cannot compute the room's nicknames from its name: they come from the key", async () => {
      const room = "nicknames";
      const names = async (secret: string) => {
        const joined = [await member(room, secret), await member(room, secret), await member(room, secret)];
        return chat(joined[2]!).users.map((user) => user.nickname);
      };
      const [first, second] = [await names(newRoomSecret()), await names(newRoomSecret())];
      // What the name alone gives: a replica seeded from the room's name, as rooms were before they had keys.
      const guessed = Replica.create(room, seedFromString(room), ChatModel);
      for (const [index, client] of ["a", "b", "c"].entries()) guessed.apply({ type: "user-enter", seq: index + 1, time: index + 1, client });
      const guessedNames = (guessed.root as ChatModel).users.map((user) => user.nickname);
      assert.notDeepEqual(first, second, "two keys, two sets of names");
      assert.notDeepEqual(guessedNames, first, "the name alone does not give the names");
    });
  });

  describe("a member running a modified client", () => {
    /** A raw member of `room`: it holds the key and seals what it publishes as a member would, or not. */
    const insider = (room: string, secret: string) => raw(room, { secret });
    const publishSealed = async (client: RawClient, event: { scope: string; event: string; data: unknown }, id: number) =>
      client.publish(await client.sealPost(event, id), id);

    test("cannot publish into the reflector's scope: a fake user-exit mutes nobody and a fake user-enter adds nobody", async () => {
      const room = "system-scope";
      const secret = newRoomSecret();
      const [alice, bob] = [await member(room, secret), await member(room, secret)];
      const mallory = await insider(room, secret);
      await waitFor(() => chat(alice).users.length === 3, "three users");
      await publishSealed(mallory, { scope: room, event: "user-exit", data: alice.clientId }, 1);
      await publishSealed(mallory, { scope: room, event: "user-enter", data: "phantom" }, 2);
      for (let i = 3; i < 6; i++) await publishSealed(mallory, { scope: room, event: "user-enter", data: `phantom ${i}` }, i);
      alice.publish("chat", "post", { text: "alice still speaks" });
      await waitFor(() => postTexts(bob).includes("alice still speaks"), "alice's post after the fake exit");
      for (const session of [alice, bob]) {
        assert.deepEqual(
          chat(session).users.map((user) => user.id),
          [alice.clientId, bob.clientId, mallory.welcome!.client],
        );
      }
      assert.equal(alice.divergence, undefined);
      await assertConverged([alice, bob]);
    });

    test("cannot replay another member's post or /reset as its own: every replica drops it", async () => {
      const room = "replay";
      const secret = newRoomSecret();
      const alice = await member(room, secret);
      const bob = await member(room, secret);
      const mallory = await insider(room, secret);
      alice.publish("chat", "post", { text: "the door code is 4711" });
      alice.publish("chat", "post", { text: "/reset" });
      alice.publish("chat", "post", { text: "after the reset" });
      await waitFor(() => postTexts(bob).includes("after the reset"), "alice's posts");
      const alicesPayloads = mallory.ofType("message").filter((frame) => frame.client === alice.clientId);
      for (const [index, frame] of alicesPayloads.entries()) mallory.publish(frame.payload, index + 1);
      // Its own earlier post again, under a new id, as well.
      await publishSealed(mallory, { scope: "chat", event: "post", data: { text: "once" } }, alicesPayloads.length + 1);
      await waitFor(() => postTexts(bob).includes("once"), "mallory's own post");
      const ownOnce = mallory.ofType("message").find((frame) => frame.client === mallory.welcome!.client && frame.id === alicesPayloads.length + 1)!;
      mallory.publish(ownOnce.payload, alicesPayloads.length + 2);
      bob.publish("chat", "post", { text: "the end" });
      await waitFor(() => postTexts(alice).includes("the end"), "the last post");
      for (const session of [alice, bob])
        assert.deepEqual(postTexts(session), ["after the reset", "once", "the end"], "the reset happened once, and nothing was replayed");
      await assertConverged([alice, bob]);
    });

    test("cannot stop honest replicas from voting with data they could not serialize: it is skipped, and the snapshot is stored", async () => {
      const room = "unserializable";
      const secret = newRoomSecret();
      const [alice, bob] = [await member(room, secret), await member(room, secret)];
      const mallory = await insider(room, secret);
      const key = mallory.key;
      const payloads = [
        '{"scope":"chat","event":"post","data":{"text":"x","$model":"M1"}}',
        '{"scope":"chat","event":"post","data":{"text":1e400}}',
        `{"scope":"chat","event":"post","data":${"[".repeat(20_000)}${"]".repeat(20_000)}}`,
        `{"scope":"${room}","event":"user-enter","data":{"$model":"M1"}}`,
      ];
      for (const [index, payload] of payloads.entries()) mallory.publish(await key.sealPost(payload, mallory.welcome!.client, index + 1), index + 1);
      for (let i = 0; i < 6; i++) alice.publish("chat", "post", { text: `alice ${i}` });
      await waitFor(() => alice.replica!.seq >= 13 && bob.replica!.seq === alice.replica!.seq, "everything applied");
      await waitFor(() => mallory.ofType("snapshot-stored").length > 0, "a snapshot the honest members voted for");
      const newcomer = await member(room, secret);
      assert.equal(newcomer.badSnapshot, false);
      assert.deepEqual(postTexts(newcomer), postTexts(alice));
      assert.equal(chat(alice).users.length, 4);
      await assertConverged([alice, bob, newcomer]);
      assert.equal(await stateHash(alice.replica!), await stateHash(newcomer.replica!));
    });

    test("a lone vote wins nothing: no upload is asked for, nothing is stored, and a newcomer replays the log", async () => {
      const room = "lone-vote";
      const secret = newRoomSecret();
      // Three raw members: one votes a made-up state, two never vote.
      const [liar, quiet1, quiet2] = [await insider(room, secret), await insider(room, secret), await insider(room, secret)];
      for (let i = 1; i <= 7; i++) await publishSealed(liar, { scope: "chat", event: "post", data: { text: `post ${i}` } }, i);
      await waitFor(() => liar.ofType("snapshot-due").length === 1, "the round");
      const due = liar.ofType("snapshot-due")[0]!.seq;
      const forged = await liar.key.sealSnapshot(JSON.stringify({ format: 1, made: "up" }), due);
      liar.send({ type: "hash", seq: due, hash: await sha256Hex(forged) });
      await sleep(2000); // past the vote's timeout
      assert.deepEqual(liar.ofType("snapshot-request"), [], "a lone vote among three members is no majority");
      liar.send({ type: "snapshot", seq: due, part: 0, parts: 1, data: forged });
      await sleep(300);
      assert.deepEqual(
        [liar, quiet1, quiet2].map((client) => client.ofType("snapshot-stored").length),
        [0, 0, 0],
      );
      const newcomer = await member(room, secret);
      assert.equal(newcomer.badSnapshot, false);
      assert.deepEqual(
        postTexts(newcomer),
        [1, 2, 3, 4, 5, 6, 7].map((i) => `post ${i}`),
        "from the log",
      );
    });

    test("members who hold a round's majority and store a sealed state that cannot be restored make newcomers report a bad snapshot, not hang", async () => {
      const room = "unrestorable";
      const secret = newRoomSecret();
      const liars = [await insider(room, secret), await insider(room, secret)];
      for (let i = 1; i <= 9; i++) await publishSealed(liars[0]!, { scope: "chat", event: "post", data: { text: `post ${i}` } }, i);
      await waitFor(() => liars[0]!.ofType("snapshot-due").length === 1, "the round");
      const due = liars[0]!.ofType("snapshot-due")[0]!.seq;
      const forged = await liars[0]!.key.sealSnapshot(JSON.stringify({ format: 2 }), due);
      for (const liar of liars) liar.send({ type: "hash", seq: due, hash: await sha256Hex(forged) });
      await waitFor(() => liars.some((liar) => liar.ofType("snapshot-request").length === 1), "the upload request");
      const uploader = liars.find((liar) => liar.ofType("snapshot-request").length === 1)!;
      uploader.send({ type: "snapshot", seq: due, part: 0, parts: 1, data: forged });
      await waitFor(() => liars[0]!.ofType("snapshot-stored").length === 1, "the forgery to be stored");

      const newcomer = Session.join({ host: server.host, room, key: secret, model: ChatModel, WebSocket });
      sessions.push(newcomer);
      const hung = sleep(10_000).then(() => Promise.reject(new Error("the newcomer hangs: neither welcomed nor refused")));
      await assert.rejects(Promise.race([newcomer.whenReady(), hung]), /does not check out/);
      assert.equal(newcomer.badSnapshot, true);
      assert.equal(newcomer.replica, undefined, "nothing of the forgery is shown");
    });

    test("cannot hold back the replicas' work due later with an early tick-request of its own", async () => {
      const room = "early-tick";
      const secret = newRoomSecret();
      const delay = 3000;
      const alice = await member(room, secret, { model: TimerChatModel, modelOptions: { delay } });
      const model = alice.model as TimerChatModel;
      const entered = model.history.at(-1)!.time;
      const mallory = await insider(room, secret);
      // Earlier than what the replicas asked for, so the reflector keeps Mallory's request instead of theirs.
      mallory.send({ type: "tick-request", time: mallory.welcome!.time + 1 });
      await waitFor(() => mallory.ofType("tick").length === 1, "Mallory's tick");
      await waitFor(() => model.rings.length >= 1, "Alice's ring, due 3 s after she entered", delay + 5000);
      assert.equal(model.rings[0], entered + delay);
    });
  });
});
