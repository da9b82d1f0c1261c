import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isRoomSecret, newRoomSecret, RoomKey, WrongKeyError } from "../../component/room-key.js";

describe("room keys", () => {
  test("a new secret is 128 random bits of base64url, different every time", () => {
    const secrets = new Set(Array.from({ length: 50 }, newRoomSecret));
    assert.equal(secrets.size, 50);
    for (const secret of secrets) {
      assert.match(secret, /^[A-Za-z0-9_-]{22}$/);
      assert.ok(isRoomSecret(secret));
    }
  });

  test("refuses secrets shorter than 128 bits or not base64url, with a clear error", async () => {
    for (const bad of ["", "short", "A".repeat(20), `${"A".repeat(21)}=`, `${"A".repeat(21)}+`, "x".repeat(21) + "é"]) {
      assert.equal(isRoomSecret(bad), false, bad);
      await assert.rejects(RoomKey.derive("room", bad), /at least 128 bits/);
    }
  });

  test("the same room and secret give the same key; text round-trips, with a fresh IV each time", async () => {
    const secret = newRoomSecret();
    const [writer, reader] = await Promise.all([RoomKey.derive("lobby", secret), RoomKey.derive("lobby", secret)]);
    const text = JSON.stringify({ scope: "chat", event: "post", data: { text: "Grüße 🎈 \u0000" } });
    const [first, second] = await Promise.all([writer.encrypt(text), writer.encrypt(text)]);
    assert.notEqual(first, second, "two encryptions of one text differ");
    assert.ok(!first.includes("Gr") && !first.includes("post"));
    assert.equal(await reader.decrypt(first), text);
    assert.equal(await reader.decrypt(second), text);
    assert.equal(writer.fromSecret, true);
  });

  test("another secret, another room or an altered text does not open, and says so", async () => {
    const secret = newRoomSecret();
    const key = await RoomKey.derive("lobby", secret);
    const sealed = await key.encrypt("hello");
    for (const other of [await RoomKey.derive("lobby", newRoomSecret()), await RoomKey.derive("lobby2", secret), await RoomKey.derive("lobby", undefined)]) {
      await assert.rejects(other.decrypt(sealed), (error: unknown) => error instanceof WrongKeyError && error.sealed && /does not match the room/.test(error.message));
    }
    const flipped = sealed.slice(0, -2) + (sealed.at(-2) === "A" ? "B" : "A") + sealed.at(-1);
    await assert.rejects(key.decrypt(flipped), (error: unknown) => error instanceof WrongKeyError && error.sealed);
  });

  test("text that is not ciphertext is told apart from ciphertext of another key", async () => {
    const key = await RoomKey.derive("lobby", undefined);
    for (const plain of ["hello", '{"scope":"chat"}', "e1.", "e1.onlyone", ""]) {
      await assert.rejects(key.decrypt(plain), (error: unknown) => error instanceof WrongKeyError && !error.sealed, plain);
    }
  });

  test("a room without a secret still encrypts, with a key every client derives from the room name", async () => {
    const [a, b] = [await RoomKey.derive("open-room", undefined), await RoomKey.derive("open-room", undefined)];
    assert.equal(a.fromSecret, false);
    assert.equal(await b.decrypt(await a.encrypt("readable by anyone who knows the name")), "readable by anyone who knows the name");
  });
});
