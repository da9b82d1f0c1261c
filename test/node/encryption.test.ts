/**
 * End-to-end encryption against a real `wrangler dev`: what the reflector relays and stores is ciphertext, and a
 * client holding another key lands in a room of its own without disturbing anyone.
 */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join as joinPath } from "node:path";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { ChatModel } from "../../component/chat-model.js";
import { newRoomSecret } from "../../component/room-key.js";
import { Session } from "../../component/session.js";
import { stateHash } from "../../component/state-hash.js";
import { RawClient } from "../support/raw-client.js";
import { startReflector, type ReflectorServer } from "../support/reflector-server.js";
import { chat, postTexts } from "../support/sessions.js";
import { waitFor } from "../support/wait-for.js";

// Snapshots often, so that stored snapshots are checked too.
const VARS = { SNAPSHOT_EVENTS: "5", VOTE_TIMEOUT_MS: "1000" };

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
    const raw = await RawClient.join(server.host, room, { secret: key });
    const observed = raw.texts;
    const [alice, bob] = [await join(server, room, key), await join(server, room, key)];
    sessions.push(alice, bob);
    const secrets = Array.from({ length: 12 }, (_, index) => `plaintext-marker-${index}-${crypto.randomUUID()}`);
    for (const [index, text] of secrets.entries()) (index % 2 === 0 ? alice : bob).publish("chat", "post", { text });
    await waitFor(() => [alice, bob].every((session) => postTexts(session).length === secrets.length), "every post at both clients");
    // Wait for a snapshot of this state to be stored, so the persisted snapshot is part of what is checked.
    await waitFor(() => raw.ofType("snapshot-stored").some((frame) => frame.seq >= alice.replica!.seq - 5), "a stored snapshot");
    raw.socket.close();

    const nicknames = chat(alice).users.map((user) => user.nickname);
    assert.equal(nicknames.length, 3);
    // Plaintext forms a nickname takes in the state: a JSON field and the join notice.
    const forbidden = [...secrets, ...nicknames.flatMap((name) => [`"nickname":"${name}"`, `${name} joined`])];
    for (const text of forbidden) assert.ok(!observed.some((frame) => frame.includes(text)), `a frame carried "${text}"`);
    assert.ok(
      observed.some((frame) => frame.includes('"type":"message"')),
      "the observer saw the messages",
    );

    // Give the non-awaited storage writes a moment, then read every byte wrangler dev persisted.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const files = await filesUnder(server.persistDir);
    assert.ok(files.length > 0, "wrangler dev persisted the room");
    const stored = files;
    for (const text of forbidden) {
      for (const encoded of encodings(text)) assert.ok(!stored.some((bytes) => bytes.includes(encoded)), `storage holds "${text}"`);
    }
    // The same check finds what is stored in the clear: the ids the reflector sees.
    assert.ok(
      stored.some((bytes) => encodings(alice.clientId!).some((encoded) => bytes.includes(encoded))),
      "the check can see stored text at all",
    );
    assert.equal(await stateHash(alice.replica!), await stateHash(bob.replica!));
  });

  test("a client with another key lands in a room of its own, raises nothing, and leaves the others undisturbed", async () => {
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
      assert.equal(alice.newRoom, true, "alice was first");
      assert.equal(bob.newRoom, false);

      // The room's address is its name and its key: another key is another room, which nobody had used.
      const other = await join(server, room, newRoomSecret());
      sessions.push(other);
      assert.equal(other.newRoom, true, "so the element can say that nobody has used this link");
      assert.deepEqual(postTexts(other), []);
      assert.deepEqual(
        chat(other).users.map((user) => user.id),
        [other.clientId],
      );
      other.publish("chat", "post", { text: "in a room of its own" });
      bob.publish("chat", "post", { text: "after the other key came" });
      await waitFor(() => [alice, bob].every((session) => postTexts(session).includes("after the other key came")), "the next honest post");
      for (const session of [alice, bob]) {
        assert.deepEqual(postTexts(session), ["only for the link's holders", "after the other key came"]);
        assert.equal(chat(session).users.length, 2, "nobody else came in");
      }
      await waitFor(() => alice.replica!.seq === bob.replica!.seq, "both at the same event");
      assert.equal(await stateHash(alice.replica!), await stateHash(bob.replica!));
      assert.deepEqual(escaped, []);
    } finally {
      process.off("uncaughtException", onError);
      process.off("unhandledRejection", onError);
    }
  });
});
