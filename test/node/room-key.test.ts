import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isRoomSecret, newRoomSecret, RoomKey, SealError } from "../../component/room-key.js";
import { sha256Hex, verifyMember } from "../../common/crypto.js";
import { FINGERPRINT_LENGTH, helloChallenge, parseRoomAddress } from "../../common/protocol.js";

const isSealError = (error: unknown) => error instanceof SealError;

describe("room keys", () => {
  test("a new secret is 128 random bits of base64url, different every time", () => {
    const secrets = new Set(Array.from({ length: 50 }, newRoomSecret));
    assert.equal(secrets.size, 50);
    for (const secret of secrets) {
      assert.match(secret, /^[A-Za-z0-9_-]{22}$/);
      assert.ok(isRoomSecret(secret));
    }
  });

  test("refuses secrets shorter than 128 bits or not base64url, of any length, with a clear error", async () => {
    // 25 characters (4n + 1) is long enough, but no base64url: it must be refused, not throw while decoding.
    for (const bad of ["", "short", "A".repeat(20), `${"A".repeat(21)}=`, `${"A".repeat(21)}+`, `${"x".repeat(21)}é`, "A".repeat(25)]) {
      assert.equal(isRoomSecret(bad), false, bad);
      await assert.rejects(RoomKey.derive("room", bad), /at least 128 bits/);
    }
  });

  test("the same room and secret give every member the same address, public key and seed; another secret or name gives others", async () => {
    const secret = newRoomSecret();
    const [a, b] = await Promise.all([RoomKey.derive("lobby", secret), RoomKey.derive("lobby", secret)]);
    assert.equal(a.address, b.address);
    assert.equal(a.publicKey, b.publicKey);
    assert.deepEqual(a.seed, b.seed);
    assert.deepEqual(parseRoomAddress(a.address), { room: "lobby", fingerprint: a.publicKey.slice(0, FINGERPRINT_LENGTH) });
    assert.equal(a.seed.length, 4);
    for (const other of [await RoomKey.derive("lobby", newRoomSecret()), await RoomKey.derive("lobby", undefined), await RoomKey.derive("lobby-2", secret)]) {
      assert.notEqual(other.address, a.address);
      assert.notDeepEqual(other.seed, a.seed, "nicknames do not follow from the room's name");
    }
  });

  test("a room without a secret derives everything from its name: anyone who knows it holds the key", async () => {
    const [a, b] = [await RoomKey.derive("open-room", undefined), await RoomKey.derive("open-room", undefined)];
    assert.equal(a.address, b.address);
    const sealed = await a.sealPost("readable by anyone who knows the name", "client", 1);
    assert.equal(await b.openPost(sealed, "client", 1), "readable by anyone who knows the name");
  });

  test("a post opens only where it was sealed: in this room, from this client, as this post id; a fresh IV each time", async () => {
    const secret = newRoomSecret();
    const [writer, reader] = await Promise.all([RoomKey.derive("lobby", secret), RoomKey.derive("lobby", secret)]);
    const text = JSON.stringify({ scope: "chat", event: "post", data: { text: "Grüße 🎈 \u0000" } });
    const [first, second] = await Promise.all([writer.sealPost(text, "alice", 7), writer.sealPost(text, "alice", 7)]);
    assert.notEqual(first, second, "two sealings of one post differ");
    const sealedBytes = first.split(".").at(-1)!;
    assert.ok(
      sealedBytes.length > text.length && !Buffer.from(sealedBytes, "base64url").includes(Buffer.from(text)),
      "the plaintext is not in the sealed bytes",
    );
    assert.equal(await reader.openPost(first, "alice", 7), text);
    await assert.rejects(reader.openPost(first, "mallory", 7), isSealError, "replayed as another sender's");
    await assert.rejects(reader.openPost(first, "alice", 8), isSealError, "replayed as another post");
    for (const other of [await RoomKey.derive("lobby", newRoomSecret()), await RoomKey.derive("lobby2", secret)]) {
      await assert.rejects(other.openPost(first, "alice", 7), isSealError);
    }
    const flipped = first.slice(0, -2) + (first.at(-2) === "A" ? "B" : "A") + first.at(-1);
    await assert.rejects(reader.openPost(flipped, "alice", 7), isSealError);
    for (const plain of ["hello", '{"scope":"chat"}', "e1.", "e1.onlyone", "e1.a.b.c", ""])
      await assert.rejects(reader.openPost(plain, "alice", 7), isSealError, plain);
  });

  test("a snapshot is sealed deterministically: the same state at the same point gives every member the same text and hash", async () => {
    const secret = newRoomSecret();
    const [a, b] = await Promise.all([RoomKey.derive("lobby", secret), RoomKey.derive("lobby", secret)]);
    const state = JSON.stringify({ format: 1, users: ["Aardvark"], history: ["hello"] });
    const sealed = await a.sealSnapshot(state, 500);
    assert.equal(await b.sealSnapshot(state, 500), sealed);
    assert.notEqual(await a.sealSnapshot(`${state} `, 500), sealed, "another state");
    assert.notEqual(await a.sealSnapshot(state, 501), sealed, "another point");
    assert.equal(await b.openSnapshot(sealed, 500), state);
    await assert.rejects(b.openSnapshot(sealed, 501), isSealError, "opened as another point");
    // A member could seal a state with a random IV: it opens, but it is not what honest replicas seal, so it is refused.
    const randomIv = await a.sealPost(state, "x", 1);
    await assert.rejects(b.openSnapshot(randomIv, 500), isSealError);
  });

  test("without the key, a guess of the state cannot be turned into the hash members vote with", async () => {
    const key = await RoomKey.derive("lobby", newRoomSecret());
    const state = JSON.stringify({ history: ["the door code is 4711"] });
    const vote = await sha256Hex(await key.sealSnapshot(state, 10));
    assert.notEqual(vote, await sha256Hex(state), "not the hash of the plaintext");
    const guesser = await RoomKey.derive("lobby", undefined);
    assert.notEqual(vote, await sha256Hex(await guesser.sealSnapshot(state, 10)), "nor of any other key's sealing");
  });

  test("a member's proof: the member key signs the connection's challenge, and verifyMember checks it against the address", async () => {
    const key = await RoomKey.derive("lobby", newRoomSecret());
    const proof = await key.prove(helloChallenge(key.address, "nonce-1"));
    assert.equal(await verifyMember(key.address, "nonce-1", key.publicKey, proof), true);
    assert.equal(await verifyMember(key.address, "nonce-2", key.publicKey, proof), false, "another connection's challenge");
    const other = await RoomKey.derive("lobby", newRoomSecret());
    assert.equal(
      await verifyMember(key.address, "nonce-1", other.publicKey, await other.prove(helloChallenge(key.address, "nonce-1"))),
      false,
      "a key the address does not name",
    );
    assert.equal(await verifyMember(other.address, "nonce-1", key.publicKey, proof), false, "another room's address");
    assert.equal(await verifyMember(key.address, "nonce-1", key.publicKey, "not base64url!"), false);
    assert.equal(await verifyMember("lobby", "nonce-1", key.publicKey, proof), false, "an address without a fingerprint");
  });
});
