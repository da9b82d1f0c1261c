import { expect } from "@esm-bundle/chai";
import { addChat, decodeQrCode, part, reflectorHost, removeAll, uniqueRoom, userTexts, waitFor } from "./helpers.js";

describe("the room and the join URL", () => {
  const originalUrl = location.href;
  afterEach(() => {
    removeAll();
    history.replaceState(history.state, "", originalUrl);
  });

  it("makes a new room, writes it into the page URL and puts that URL in the QR code and the link", async () => {
    expect(new URL(location.href).searchParams.has("room")).to.equal(false);
    const element = await addChat({ host: reflectorHost() });
    const room = new URL(location.href).searchParams.get("room");
    expect(room).to.match(/^[0-9a-z]{16}$/);
    // With a new room comes a new 128-bit secret, in the fragment that browsers never send to a server.
    expect(new URLSearchParams(location.hash.slice(1)).get("key")).to.match(/^[A-Za-z0-9_-]{22}$/);
    const link = part<HTMLAnchorElement>(element, '[part="qr"] a');
    expect(link.href).to.equal(location.href);
    expect(link.textContent).to.equal(location.href);
    expect(await decodeQrCode(element)).to.equal(location.href);
  });

  it("joins the room named in the page URL", async () => {
    const room = uniqueRoom("from-url");
    const url = new URL(location.href);
    url.searchParams.set("room", room);
    history.replaceState(history.state, "", url);
    const element = await addChat({ host: reflectorHost() });
    expect(new URL(location.href).searchParams.get("room")).to.equal(room);
    expect(await decodeQrCode(element)).to.equal(url.href);
  });

  it("prefers the room attribute, and the join link carries it", async () => {
    const room = uniqueRoom("attribute");
    const element = await addChat({ host: reflectorHost(), room });
    expect(new URL(location.href).searchParams.has("room")).to.equal(false);
    const joinUrl = new URL(part<HTMLAnchorElement>(element, '[part="qr"] a').href);
    expect(joinUrl.searchParams.get("room")).to.equal(room);
    expect(await decodeQrCode(element)).to.equal(joinUrl.href);
  });

  it("points the QR code and the link at the join-url page, with the room and the key added", async () => {
    const element = await addChat({ host: reflectorHost(), "join-url": "https://chat.example/embed/?lang=en" });
    const page = new URL(location.href);
    const key = new URLSearchParams(page.hash.slice(1)).get("key");
    const expected = `https://chat.example/embed/?lang=en&room=${page.searchParams.get("room")}#key=${key}`;
    expect(part<HTMLAnchorElement>(element, '[part="qr"] a').href).to.equal(expected);
    expect(await decodeQrCode(element)).to.equal(expected);
  });

  it("ignores a join-url that is not an http or https address, with a warning: the link and the QR code are this page's", async () => {
    const warnings: unknown[][] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args);
    try {
      const room = uniqueRoom("join-url-js");
      for (const hostile of [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)//",
        "data:text/html,<script>alert(1)</script>",
        " javascript:alert(1)",
      ]) {
        const element = await addChat({ host: reflectorHost(), room, "join-url": hostile });
        const link = part<HTMLAnchorElement>(element, '[part="qr"] a');
        expect(new URL(link.href).protocol, hostile).to.equal(location.protocol);
        expect(`${new URL(link.href).origin}${new URL(link.href).pathname}`).to.equal(`${location.origin}${location.pathname}`);
        expect(await decodeQrCode(element)).to.equal(link.href);
        element.remove();
      }
      expect(warnings.filter(([text]) => String(text).includes("join-url must be an http or https address")).length).to.equal(4);
    } finally {
      console.warn = warn;
    }
  });

  it("resolves a relative join-url against the page, and follows a change of it without joining anew", async () => {
    const room = uniqueRoom("join-url");
    const element = await addChat({ host: reflectorHost(), room, "join-url": "/chat.html" });
    expect(await decodeQrCode(element)).to.equal(`${location.origin}/chat.html?room=${room}`);
    await waitFor(() => element.users.length === 1, "the element to join");
    const self = element.users[0]!.id;
    element.setAttribute("join-url", "https://chat.example/");
    const link = () => part<HTMLAnchorElement>(element, '[part="qr"] a').href;
    await waitFor(() => link() === `https://chat.example/?room=${room}`, "the link to follow the attribute");
    expect(await decodeQrCode(element)).to.equal(link());
    // Only the link changed: the same user is still the only one, and nobody left or joined.
    expect(element.users.map((user) => user.id)).to.deep.equal([self]);
    expect(element.history.map((entry) => entry.kind)).to.deep.equal(["notice"]);
  });

  it("has the property joinUrl for join-url, and joinPage, its first name, as an alias of it", async () => {
    const room = uniqueRoom("join-url-property");
    const element = await addChat({ host: reflectorHost(), room, "join-url": "https://chat.example/a" });
    const link = () => part<HTMLAnchorElement>(element, '[part="qr"] a').href;
    expect([element.joinUrl, element.joinPage]).to.deep.equal(["https://chat.example/a", "https://chat.example/a"]);
    element.joinUrl = "https://chat.example/b";
    await waitFor(() => link() === `https://chat.example/b?room=${room}`, "the link to follow joinUrl");
    expect(element.joinPage).to.equal("https://chat.example/b");
    element.joinPage = "https://chat.example/c";
    await waitFor(() => link() === `https://chat.example/c?room=${room}`, "the link to follow joinPage");
    expect(element.joinUrl).to.equal("https://chat.example/c");
    element.setAttribute("join-url", "https://chat.example/d");
    await waitFor(() => link() === `https://chat.example/d?room=${room}`, "the link to follow the attribute");
    expect([element.joinUrl, element.joinPage]).to.deep.equal(["https://chat.example/d", "https://chat.example/d"]);
  });

  it("registers the element once when the script loads twice, with a warning", async () => {
    const warnings: unknown[][] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args);
    try {
      await import("/dist/multiuser-chat.js?second-copy" as string);
    } finally {
      console.warn = warn;
    }
    expect(warnings.map((args) => String(args[0]))).to.deep.equal(["<multiuser-chat> is already defined; this copy of the script is not used."]);
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("twice") });
    expect(element.shadowRoot).not.to.equal(null);
  });

  it("joins the new room when the room attribute changes", async () => {
    const [first, second] = [uniqueRoom("before"), uniqueRoom("after")];
    const neighbour = await addChat({ host: reflectorHost(), room: second });
    const element = await addChat({ host: reflectorHost(), room: first });
    expect(userTexts(element)).to.have.length(1);
    element.setAttribute("room", second);
    await waitFor(() => userTexts(element).length === 2 && userTexts(neighbour).length === 2, "the element in the second room");
    const joinUrl = new URL(part<HTMLAnchorElement>(element, '[part="qr"] a').href);
    expect(joinUrl.searchParams.get("room")).to.equal(second);
    expect(await decodeQrCode(element)).to.equal(joinUrl.href);
  });
});
