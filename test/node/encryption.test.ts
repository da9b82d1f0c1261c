/**
 * End-to-end encryption against a real `wrangler dev`: what the reflector relays and stores is ciphertext, and a
 * client holding the wrong key is told so without disturbing anyone else.
 */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join as joinPath } from "node:path";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { ChatModel } from "../../component/chat-model.js";
import { newRoomSecret, RoomKey } from "../../component/room-key.js";
import { Session } from "../../component/session.js";
import { stateHash } from "../../component/state-hash.js";
import { PROTOCOL_VERSION } from "../../party/protocol.js";
import { startReflector, type ReflectorServer } from "../support/reflector-server.js";
import { waitFor } from "../support/wait-for.js";

// Snapshots often, so that stored snapshots are checked too.
const VARS = { SNAPSHOT_EVENTS: "5", VOTE_TIMEOUT_MS: "1000" };

const chat = (session: Session) => session.model as ChatModel;
const postTexts = (session: Session) => chat(session).history.filter((entry) => entry.kind === "post").map((entry) => entry.text);

async function join(server: ReflectorServer, room: string, key: string | undefined): Promise<Session> {
  const session = Session.join({ host: server.host, room, key, model: ChatModel, WebSocket });
  await session.whenReady();
  return session;
}

/** Every file under `dir`, as bytes. */
async function filesUnder(dir: string): Promise<Buffer[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return Promise.all(entries.filter((entry) => entry.isFile()).map((entry) => readFile(joinPath(entry.parentPath, entry.name))));
}

/** Storage keeps a string as Latin-1 or UTF-16 bytes, and the wire as UTF-8: look for all three. */
const encodings = (text: string) => [Buffer.from(text, "utf8"), Buffer.from(text, "latin1"), Buffer.from(text, "utf16le")];

describe("end-to-end encryption against a real wrangler dev", () => {
  let server: ReflectorServer;
  const sessions: Session[] = [];

  before(async () => {
    server = await startReflector({ vars: VARS });
  });

  after(async () => {
    for (const session of sessions) session.leave();
    await server.stop();
  });

  test("the reflector relays and stores no plaintext of posts or nicknames", async () => {
    const room = "sealed-room";
    const key = newRoomSecret();
    // A bare socket sees every frame as the reflector sends it.
    const observed: string[] = [];
    const raw = new WebSocket(`ws://${server.host}/parties/main/${room}`);
    raw.on("message", (data) => observed.push(String(data)));
    await new Promise((resolve) => raw.once("open", resolve));
    raw.send(JSON.stringify({ type: "hello", version: PROTOCOL_VERSION }));

    const [alice, bob] = [await join(server, room, key), await join(server, room, key)];
    sessions.push(alice, bob);
    const secrets = Array.from({ length: 12 }, (_, index) => `plaintext-marker-${index}-${crypto.randomUUID()}`);
    secrets.forEach((text, index) => (index % 2 === 0 ? alice : bob).publish("chat", "post", { text }));
    await waitFor(() => [alice, bob].every((session) => postTexts(session).length === secrets.length), "every post at both clients");
    // Wait for a snapshot of this state to be stored, so the persisted snapshot is part of what is checked.
    await waitFor(() => observed.some((frame) => frame.includes('"snapshot-stored"') && JSON.parse(frame).seq >= alice.replica!.seq - 5), "a stored snapshot");
    raw.close();

    const nicknames = chat(alice).users.map((user) => user.nickname);
    assert.equal(nicknames.length, 3);
    // Plaintext forms a nickname takes in the state: a JSON field and the join notice.
    const forbidden = [...secrets, ...nicknames.flatMap((name) => [`"nickname":"${name}"`, `${name} joined`])];
    for (const text of forbidden) assert.ok(!observed.some((frame) => frame.includes(text)), `a frame carried "${text}"`);
    assert.ok(observed.some((frame) => frame.includes('"type":"message"')), "the observer saw the messages");

    // Give the non-awaited storage writes a moment, then read every byte wrangler dev persisted.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const files = await filesUnder(server.persistDir);
    assert.ok(files.length > 0, "wrangler dev persisted the room");
    const stored = files;
    for (const text of forbidden) {
      for (const encoded of encodings(text)) assert.ok(!stored.some((bytes) => bytes.includes(encoded)), `storage holds "${text}"`);
    }
    // The same check finds what is stored in the clear: the ids the reflector sees.
    assert.ok(stored.some((bytes) => encodings(alice.clientId!).some((encoded) => bytes.includes(encoded))), "the check can see stored text at all");
    assert.equal(await stateHash(alice.replica!), await stateHash(bob.replica!));
  });

  test("a client with the wrong key is told so, raises nothing, and leaves the others undisturbed", async () => {
    const room = "wrong-key-room";
    const key = newRoomSecret();
    const escaped: unknown[] = [];
    const onError = (error: unknown) => escaped.push(error);
    process.on("uncaughtException", onError);
    process.on("unhandledRejection", onError);
    try {
      const [alice, bob] = [await join(server, room, key), await join(server, room, key)];
      sessions.push(alice, bob);
      alice.publish("chat", "post", { text: "only for the link's holders" });
      await waitFor(() => postTexts(bob).length === 1, "the first post");

      const intruder = Session.join({ host: server.host, room, key: newRoomSecret(), model: ChatModel, WebSocket });
      sessions.push(intruder);
      let told = 0;
      intruder.addEventListener("key-mismatch", () => told++);
      await assert.rejects(intruder.whenReady(), /this link's key does not match room wrong-key-room/);
      assert.equal(intruder.keyMismatch, true);
      assert.equal(told, 1);
      assert.equal(intruder.model, undefined, "the intruder never built a replica from data it cannot open");
      // Its posts would be garbage to the others; it has left and sends none.
      intruder.publish("chat", "post", { text: "garbage" });
      assert.deepEqual(intruder.pending, []);

      // Ciphertext sealed with another key, published by a bare client, reaches no model.
      const stranger = new WebSocket(`ws://${server.host}/parties/main/${room}`);
      await new Promise((resolve) => stranger.once("open", resolve));
      stranger.send(JSON.stringify({ type: "hello", version: PROTOCOL_VERSION }));
      const foreign = await (await RoomKey.derive(room, newRoomSecret())).encrypt(JSON.stringify({ scope: "chat", event: "post", data: { text: "forged" } }));
      stranger.send(JSON.stringify({ type: "publish", id: 1, payload: foreign }));
      bob.publish("chat", "post", { text: "after the forgery" });
      await waitFor(() => [alice, bob].every((session) => postTexts(session).includes("after the forgery")), "the next honest post");
      stranger.close();

      for (const session of [alice, bob]) assert.deepEqual(postTexts(session), ["only for the link's holders", "after the forgery"]);
      await waitFor(() => alice.replica!.seq === bob.replica!.seq, "both at the same event");
      assert.equal(await stateHash(alice.replica!), await stateHash(bob.replica!));
      assert.equal(alice.keyMismatch || bob.keyMismatch, false);
      assert.deepEqual(escaped, []);
    } finally {
      process.off("uncaughtException", onError);
      process.off("unhandledRejection", onError);
    }
  });
});
