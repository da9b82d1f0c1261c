/**
 * The builds as other sites use them: a page on another origin than the reflector's (a blog, a CodePen) loads a
 * bundle from the reflector's host, and the element finds its reflector from its script's URL (no `host`). Each page
 * is an iframe: a window of its own, with its own registry of custom elements.
 */
import { expect } from "@esm-bundle/chai";
import { executeServerCommand } from "@web/test-runner-commands";
import type { MultiuserChat } from "../../component/multiuser-chat/multiuser-chat.js";
import { axeViolations } from "../support/axe.js";
import { addChat, decodeQrCode, logTexts, reflectorHost, removeAll, sendWithButton, statusOf, uniqueRoom, waitFor } from "./helpers.js";

const WARNING = "<multiuser-chat> is already defined; this copy of the script is not used.";
const served = (file: string) => `http://${reflectorHost()}/${file}`;
const demo = (payload: Record<string, unknown>) => executeServerCommand<unknown, Record<string, unknown>>("demo-page", payload);

interface Page {
  window: Window & { warnings: string[]; secondLoaded?: boolean; eval: typeof eval };
  chat: MultiuserChat;
}

/** Opens `body` as a page of its own, which records its warnings, and waits until its chat is connected. */
async function openPage(body: string): Promise<Page> {
  const recordWarnings = `<script>
    window.warnings = [];
    const warn = console.warn;
    console.warn = (...args) => (warnings.push(args.join(" ")), warn(...args));
  </script>`;
  const frame = document.createElement("iframe");
  frame.style.cssText = "width: 640px; height: 480px";
  frame.src = `/embed-page?html=${encodeURIComponent(`<!doctype html><meta charset="utf-8">${recordWarnings}${body}`)}`;
  document.body.append(frame);
  const page = () => frame.contentWindow as Page["window"];
  const chat = () => page().document.querySelector("multiuser-chat");
  await waitFor(() => chat() !== null && statusOf(chat()!) === "Connected", "the page's chat to connect");
  return { window: page(), chat: chat()! };
}

/** Posts from `from` and waits until `to` shows the post, delivered. */
async function postArrives(from: MultiuserChat, to: MultiuserChat, text: string): Promise<void> {
  await sendWithButton(from, text);
  await waitFor(() => logTexts(to).some((line) => line.endsWith(`: ${text}`)), `"${text}" to arrive`);
}

describe("the builds embedded in pages on another origin", () => {
  afterEach(() => {
    removeAll();
    for (const frame of document.querySelectorAll("iframe")) frame.remove();
  });

  it("a page with the classic bundle and a page with the module bundle chat through the reflector that served them", async () => {
    const room = uniqueRoom("bundles");
    const classic = await openPage(`<script src="${served("multiuser-chat.iife.js")}"></script><multiuser-chat room="${room}"></multiuser-chat>`);
    const module = await openPage(`<script type="module" src="${served("multiuser-chat.js")}"></script><multiuser-chat room="${room}"></multiuser-chat>`);
    await postArrives(classic.chat, module.chat, "hello from the classic script");
    await postArrives(module.chat, classic.chat, "hello from the module");
    expect(classic.window.warnings).to.deep.equal([]);
    expect(module.window.warnings).to.deep.equal([]);
  });

  // Each sets `secondLoaded` once the second copy has run: module scripts run in order, after the classic ones.
  const bothOrders = {
    "the classic bundle, then the module bundle": `<script src="${served("multiuser-chat.iife.js")}"></script>
      <script type="module" src="${served("multiuser-chat.js")}"></script>
      <script type="module">window.secondLoaded = true;</script>`,
    "the module bundle, then the classic bundle": `<script type="module">
        import "${served("multiuser-chat.js")}";
        const script = document.createElement("script");
        script.src = "${served("multiuser-chat.iife.js")}";
        script.onload = () => (window.secondLoaded = true);
        document.head.append(script);
      </script>`,
  };
  for (const [order, scripts] of Object.entries(bothOrders)) {
    it(`a page loading ${order} defines the element once, warns once and works`, async () => {
      const room = uniqueRoom("both");
      const page = await openPage(`${scripts}<multiuser-chat room="${room}"></multiuser-chat>`);
      await waitFor(() => page.window.secondLoaded === true, "the second copy to run");
      expect(page.window.warnings).to.deep.equal([WARNING]);
      const here = await addChat({ host: reflectorHost(), room });
      await postArrives(page.chat, here, "hello from a page with both bundles");
      await postArrives(here, page.chat, "hello back");
    });
  }

  it("demo/codepen.html's body works on another origin, and its QR code opens the deployment's demo page in the same room", async () => {
    const deployment = "https://multiuser-chat.YOUR-SUBDOMAIN.workers.dev";
    const file = new DOMParser().parseFromString(await (await fetch("/demo/codepen.html")).text(), "text/html");
    const body = file.body.innerHTML;
    expect(body).to.include(`${deployment}/multiuser-chat.js`);
    // CodePen puts the body in a document of its own, with a language and a title: the file's.
    const pen = await openPage(
      `<html lang="${file.documentElement.lang}"><title>${file.title}</title>${body.replaceAll(deployment, `http://${reflectorHost()}`)}`,
    );
    expect(pen.window.warnings).to.deep.equal([]);
    // The pen's page as a visitor gets it, page-level rules included.
    expect(await pen.window.eval(axeViolations("[document]")), "axe on the pen").to.deep.equal([]);

    const joinUrl = new URL((await decodeQrCode(pen.chat))!);
    expect(`${joinUrl.origin}${joinUrl.pathname}`).to.equal(served(""));
    expect(joinUrl.searchParams.get("room")).to.equal(new URL(pen.window.location.href).searchParams.get("room"));
    expect(new URLSearchParams(joinUrl.hash.slice(1)).get("key")).to.match(/^[A-Za-z0-9_-]{22}$/);

    // What a phone does with the QR code: open the demo page at that address.
    const phone = (await demo({ action: "open", url: joinUrl.href })) as string;
    try {
      await waitFor(async () => (await demo({ action: "status", id: phone })) === "Connected", "the demo page to connect");
      await demo({ action: "post", id: phone, text: "hello from the phone" });
      await waitFor(() => logTexts(pen.chat).some((line) => line.endsWith(": hello from the phone")), "the phone's post in the pen");
      await sendWithButton(pen.chat, "hello from the pen");
      await waitFor(
        async () => ((await demo({ action: "log", id: phone })) as string[]).some((line) => line.endsWith(": hello from the pen")),
        "the pen's post on the phone",
      );
    } finally {
      await demo({ action: "close", id: phone });
    }
  });
});
