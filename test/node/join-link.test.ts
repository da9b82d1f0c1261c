/** The element's join links, as pure functions of the page's address: what room it joins and what link it shows. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { joinPage, joinUrlFor, keyInLink, newRoomName, roomToJoin } from "../../component/multiuser-chat/join-link.js";

const KEY = "AAAAAAAAAAAAAAAAAAAAAA";
const OTHER_KEY = "BBBBBBBBBBBBBBBBBBBBBB";
const noNewRoom = () => assert.fail("no new room should be made");

describe("roomToJoin", () => {
  test("takes the room and key attributes first", () => {
    assert.deepEqual(roomToJoin({ room: "lobby", key: KEY }, `https://blog.example/post?room=other#key=${OTHER_KEY}`, noNewRoom), {
      room: "lobby",
      key: KEY,
      fromLink: false,
    });
  });

  test("takes the page's key for the room attribute when the page names the same room or none", () => {
    assert.equal(roomToJoin({ room: "lobby" }, `https://blog.example/post?room=lobby#key=${KEY}`, noNewRoom).key, KEY);
    assert.equal(roomToJoin({ room: "lobby" }, `https://blog.example/post#key=${KEY}`, noNewRoom).key, KEY);
    assert.equal(roomToJoin({ room: "lobby" }, `https://blog.example/post?room=other#key=${KEY}`, noNewRoom).key, undefined, "another room's key");
    assert.equal(roomToJoin({ room: "lobby" }, "https://blog.example/post", noNewRoom).key, undefined);
  });

  test("joins the room and key the page's address names, as a link", () => {
    assert.deepEqual(roomToJoin({}, `https://chat.example/?lang=en&room=lobby#theme=dark&key=${KEY}`, noNewRoom), { room: "lobby", key: KEY, fromLink: true });
    assert.deepEqual(roomToJoin({}, "https://chat.example/?room=lobby", noNewRoom), { room: "lobby", key: undefined, fromLink: true });
  });

  test("makes a new room when the page names none, and the page's address to write it into", () => {
    const made = roomToJoin({ key: OTHER_KEY }, "https://chat.example/demo?lang=en#theme=dark", () => ({ room: "fresh", key: KEY }));
    assert.deepEqual(made, { room: "fresh", key: KEY, fromLink: false, page: `https://chat.example/demo?lang=en&room=fresh#theme=dark&key=${KEY}` });
    assert.equal(roomToJoin({}, "https://chat.example/?room=", () => ({ room: "fresh", key: KEY })).room, "fresh", "an empty room parameter names no room");
  });
});

test("keyInLink reads #key= unless the link names another room", () => {
  assert.equal(keyInLink(`https://chat.example/?room=lobby#key=${KEY}`, "lobby"), KEY);
  assert.equal(keyInLink(`https://chat.example/#a=1&key=${KEY}`, "lobby"), KEY);
  assert.equal(keyInLink(`https://chat.example/?room=other#key=${KEY}`, "lobby"), undefined);
  assert.equal(keyInLink("https://chat.example/?room=lobby#section", "lobby"), undefined);
});

test("joinUrlFor puts the room in the query and the key in the fragment, keeping everything else", () => {
  assert.equal(joinUrlFor("https://chat.example/embed/?lang=en", "lobby", KEY), `https://chat.example/embed/?lang=en&room=lobby#key=${KEY}`);
  assert.equal(
    joinUrlFor(`https://chat.example/?room=old#theme=dark&key=${OTHER_KEY}`, "lobby", KEY),
    `https://chat.example/?room=lobby#theme=dark&key=${KEY}`,
  );
  assert.equal(
    joinUrlFor("https://chat.example/#theme=dark", "lobby", undefined),
    "https://chat.example/?room=lobby#theme=dark",
    "no key, no key in the fragment",
  );
  assert.equal(joinUrlFor("https://chat.example/", "a b&c", undefined), "https://chat.example/?room=a+b%26c");
});

describe("joinPage", () => {
  const page = "https://blog.example/posts/chat.html?x=1#top";

  test("is this page when join-url is not set", () => {
    assert.deepEqual(joinPage(undefined, page), { page });
  });

  test("takes an http or https join-url, relative to this page", () => {
    assert.deepEqual(joinPage("https://chat.example/", page), { page: "https://chat.example/" });
    assert.deepEqual(joinPage("http://192.168.1.2:1999/demo", page), { page: "http://192.168.1.2:1999/demo" });
    assert.deepEqual(joinPage("/chat.html", page), { page: "https://blog.example/chat.html" });
    assert.deepEqual(joinPage("other.html?lang=en", page), { page: "https://blog.example/posts/other.html?lang=en" });
  });

  test("ignores any other join-url, with a warning, and keeps this page", () => {
    for (const hostile of [
      "javascript:alert(document.cookie)",
      "JavaScript:alert(1)//",
      "data:text/html,<script>alert(1)</script>",
      " javascript:alert(1)",
      "ftp://files.example/",
    ]) {
      assert.deepEqual(
        joinPage(hostile, page),
        { page, warning: `<multiuser-chat>: join-url must be an http or https address; ignoring ${JSON.stringify(hostile)}` },
        hostile,
      );
    }
  });
});

test("newRoomName spells 8 random bytes as 16 characters of 0-9a-z", () => {
  assert.equal(newRoomName(new Uint8Array([0, 1, 35, 36, 255, 128, 7, 200])), "00010z10733k075k");
  assert.match(newRoomName(crypto.getRandomValues(new Uint8Array(8))), /^[0-9a-z]{16}$/);
});
