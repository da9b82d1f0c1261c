import { expect } from "@esm-bundle/chai";
import type { MultiuserChat } from "../../component/multiuser-chat.js";
import { addChat, part, reflectorHost, removeAll, uniqueRoom, userTexts, waitFor } from "./helpers.js";

/** Draws the element's QR code on a canvas and decodes it with jsQR (bundled to ESM by scripts/test.mjs). */
async function decodeQrCode(element: MultiuserChat): Promise<string | undefined> {
  const { default: jsQR } = await import("/test-results/bundles/jsqr.js" as string);
  const svg = part(element, '[role="img"] svg');
  const image = new Image();
  image.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(new XMLSerializer().serializeToString(svg))}`;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 400;
  const context = canvas.getContext("2d")!;
  context.drawImage(image, 0, 0, 400, 400);
  const { data, width, height } = context.getImageData(0, 0, 400, 400);
  return jsQR(data, width, height)?.data;
}

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
