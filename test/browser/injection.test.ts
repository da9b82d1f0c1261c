/**
 * Security: no user-controlled text can run script or inject markup, in the element or in the host page.
 *
 * Every string of test/support/injection-corpus.ts is posted as text — through the element's real message field
 * and Send button, through a headless client that sends it untrimmed and with its newlines, and as a pending post
 * typed while offline on the demo page — and must render as literal text, with no element, attribute, frame or
 * style coming from it, and without the sentinel global `__pwned` ever being set.
 *
 * Nicknames are not user-controlled: this product has no /nick command (nicknames are drawn by the replicated
 * model), so "/nick …" is posted like any other text and must show literally; the user lists are checked intact.
 */
import { expect } from "@esm-bundle/chai";
import { executeServerCommand } from "@web/test-runner-commands";
import type { MultiuserChat } from "../../component/multiuser-chat/multiuser-chat.js";
import { CHAT_SCOPE, ChatModel, checkPost } from "../../component/chat-model.js";
import { Session } from "../../component/session.js";
import { INJECTION_CORPUS, pwned, SENTINEL } from "../support/injection-corpus.js";
import { addChat, logTexts, messageInput, part, reflectorHost, removeAll, uniqueRoom, userTexts, waitFor } from "./helpers.js";

/** A room keeps the last 100 entries; two join notices and a batch of this size stay well within that. */
const BATCH = 50;
const batches = (items: readonly string[]) =>
  Array.from({ length: Math.ceil(items.length / BATCH) }, (_, index) => items.slice(index * BATCH, (index + 1) * BATCH));

/** What an `<input>` keeps of a value: it strips CR and LF (HTML's value sanitization for text fields). */
const fieldValue = (raw: string) => raw.replace(/[\r\n]/g, "");
/** The text a post keeps, by the model's one rule (trimmed, its line breaks made spaces). */
const kept = (raw: string) => {
  const check = checkPost(raw);
  if (!check.ok) throw new Error(`the model refuses ${JSON.stringify(raw)}`);
  return check.text;
};
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve(undefined)));

/** Elements a post may legitimately produce in the log: the list, its entries, their times and nicknames, "(sending…)". */
const LOG_TAGS = new Set(["ol", "li", "time", "span", "em"]);
/** An element as `tag.class…`, leaving out the user's colour (USER_COLOURS), which the model sets, never a post. */
const tagLabel = (element: Element) =>
  element.tagName.toLowerCase() +
  [...element.classList]
    .filter((name) => !["red", "orange", "green", "teal", "blue", "indigo", "purple", "pink"].includes(name))
    .map((name) => `.${name}`)
    .join("");

interface RenderedEntry {
  children: string[];
  descendants: number;
  nickname: string | null;
  /** The text nodes after the nickname (before "(sending…)" for a pending post), exactly as in the DOM. */
  afterNickname: string;
  textContent: string;
  timeText: string;
}

/** What one log entry holds. Only Text nodes count as text: Lit's marker comments are skipped, elements are reported. */
function describeEntry(item: Element): RenderedEntry {
  const nickname = item.querySelector(":scope > .nickname");
  let afterNickname = "";
  for (let node = nickname?.nextSibling ?? null; node !== null; node = node.nextSibling) {
    if (node.nodeType === Node.TEXT_NODE) afterNickname += (node as Text).data;
    else if (node.nodeType === Node.ELEMENT_NODE) {
      if ((node as Element).tagName === "EM" && node.textContent === "(sending…)") break;
      afterNickname += `<${tagLabel(node as Element)}>`;
    }
  }
  return {
    children: [...item.children].map(tagLabel),
    descendants: item.querySelectorAll("*").length,
    nickname: nickname?.textContent ?? null,
    afterNickname,
    textContent: item.textContent ?? "",
    timeText: item.querySelector(":scope > time")?.textContent ?? "",
  };
}

const logOf = (element: MultiuserChat) => part(element, '[role="log"]');
const postEntries = (element: MultiuserChat) => [...logOf(element).querySelectorAll('li[part="message"]')];
/** Posts in the element's model: counting them, unlike counting <li>s, cannot be fooled by injected markup. */
const modelPosts = (element: MultiuserChat) => element.model?.history.filter((entry) => entry.kind === "post").length ?? 0;
/** Waits until the element's model holds `count` posts and the element has rendered them. */
async function waitForPosts(elements: MultiuserChat[], count: number, what: string): Promise<void> {
  await waitFor(() => elements.every((element) => modelPosts(element) === count), what);
  for (const element of elements) {
    element.requestUpdate();
    await element.updateComplete;
  }
}
const ownNickname = (element: MultiuserChat) =>
  userTexts(element)
    .find((text) => text.endsWith(" (you)"))!
    .replace(/ \(you\)$/, "");

/** Every post entry is exactly `<time>`, a space, the nickname span, ": " and the text, with nothing else. */
function expectLiteralPosts(element: MultiuserChat, nickname: string, expected: readonly string[]): void {
  const rendered = postEntries(element).map(describeEntry);
  expect(rendered.map((entry) => entry.afterNickname)).to.deep.equal(expected.map((text) => `: ${text}`));
  rendered.forEach((entry, index) => {
    const what = `post ${index} (${JSON.stringify(expected[index])})`;
    expect(entry.children, what).to.deep.equal(["time", "span.nickname"]);
    expect(entry.descendants, what).to.equal(2);
    expect(entry.nickname, what).to.equal(nickname);
    expect(entry.textContent, what).to.equal(`${entry.timeText} ${nickname}: ${expected[index]}`);
  });
}

/** No element, event-handler attribute, frame or script URL anywhere in the shadow root came from a post. */
function expectNoInjectedMarkup(element: MultiuserChat, outsideLogBefore: string[]): void {
  const root = element.shadowRoot!;
  const log = logOf(element);
  const strangers = [...log.querySelectorAll("*")].filter((found) => !LOG_TAGS.has(found.tagName.toLowerCase())).map(tagLabel);
  expect(strangers, "elements in the log that no template made").to.deep.equal([]);
  // A <span> or <em> may only be a nickname or the "(sending…)" marker, each directly in an entry.
  for (const found of log.querySelectorAll("span, em, time")) {
    expect(found.parentElement?.tagName, `<${tagLabel(found)}> in the log`).to.equal("LI");
    expect(found.children.length, `children of <${tagLabel(found)}>`).to.equal(0);
  }
  for (const found of log.querySelectorAll("li")) expect(found.parentElement?.tagName).to.equal("OL");
  expect(log.querySelectorAll("ol").length).to.equal(1);
  expect(outsideLog(element), "the rest of the shadow root").to.deep.equal(outsideLogBefore);
  const handlers = [...root.querySelectorAll("*")].flatMap((found) =>
    [...found.attributes]
      .filter((attribute) => /^on/i.test(attribute.name) || attribute.name === "srcdoc" || /^\s*(javascript|data):/i.test(attribute.value))
      .map((attribute) => `${tagLabel(found)}[${attribute.name}]`),
  );
  expect(handlers, "event handlers or script URLs in the shadow root").to.deep.equal([]);
  const dangerous =
    "script, img, iframe, svg svg, object, embed, link, style, meta, base, form:not([part=form]), math, template, noscript, video, audio, source, details, input:not([part=input]), a:not([part=qr] a), multiuser-chat";
  expect([...root.querySelectorAll(dangerous)].map(tagLabel), "dangerous elements in the shadow root").to.deep.equal([]);
}

/** The elements of the shadow root outside the log: they must not change when posts arrive. */
const outsideLog = (element: MultiuserChat) =>
  [...element.shadowRoot!.querySelectorAll("*")]
    .filter((found) => found.closest('[role="log"]') === null)
    .map((found) => `${tagLabel(found)}${found.getAttribute("href") ?? ""}`);

/** What the host page holds: its elements, frames, address, base URL and the element's computed look. */
function pageState(elements: MultiuserChat[]) {
  return {
    // Labels, not nodes: chai's deep equality sees any two elements as equal.
    elements: [...document.querySelectorAll("*")].map(tagLabel),
    head: [...document.head.children].map((child) => child.outerHTML),
    body: [...document.body.children].map(tagLabel),
    frames: window.length,
    href: location.href,
    baseURI: document.baseURI,
    styleSheets: document.styleSheets.length,
    looks: elements.map((element) => {
      const log = getComputedStyle(logOf(element));
      const host = getComputedStyle(element);
      return [
        host.display,
        host.backgroundColor,
        host.color,
        log.display,
        log.visibility,
        log.color,
        log.backgroundColor,
        element.shadowRoot!.adoptedStyleSheets.length,
      ];
    }),
  };
}

/**
 * Gives anything that might have been injected every chance to run: lays out and scrolls the whole log, fires
 * the events inline handlers listen to on every element in it, then waits for images to fail and frames to load.
 */
async function provoke(element: MultiuserChat): Promise<void> {
  const log = logOf(element);
  for (const found of log.querySelectorAll("*")) {
    found.getBoundingClientRect();
    for (const type of ["mouseover", "mouseenter", "pointerover", "focus", "focusin", "load", "error", "toggle", "animationstart", "begin"]) {
      found.dispatchEvent(new Event(type));
    }
  }
  for (let top = 0; top <= log.scrollHeight; top += Math.max(1, log.clientHeight)) {
    log.scrollTop = top;
    await nextFrame();
  }
  log.scrollTop = log.scrollHeight;
  await nextFrame();
}

/** Types into the element's own field and presses its Send button; the field empties when the post is accepted. */
async function postThroughField(element: MultiuserChat, raw: string): Promise<void> {
  const input = messageInput(element);
  input.value = raw;
  expect(input.value, `the field's value for ${JSON.stringify(raw)}`).to.equal(fieldValue(raw));
  input.dispatchEvent(new Event("input", { bubbles: true, composed: true }));
  const button = [...element.shadowRoot!.querySelectorAll("button")].find((candidate) => candidate.textContent?.trim() === "Send")!;
  button.click();
  await element.updateComplete;
  expect(input.value, `the field after sending ${JSON.stringify(raw)}`).to.equal("");
  expect(part(element, '[part="error"]').hidden, `no refusal for ${JSON.stringify(raw)}`).to.equal(true);
}

/** Two distinct users in each list, each marking only itself, with the same plain nicknames everywhere. */
function expectUsersIntact(elements: MultiuserChat[], count: number): void {
  const plain = (element: MultiuserChat) =>
    userTexts(element)
      .map((text) => text.replace(/ \(you\)$/, ""))
      .sort();
  for (const element of elements) {
    expect(userTexts(element)).to.have.length(count);
    expect(userTexts(element).filter((text) => text.endsWith(" (you)"))).to.have.length(1);
    expect(plain(element)).to.deep.equal(plain(elements[0]!));
    // Each entry is its name and, on the reader's own, the button that renames them: nothing a post could add.
    const entries = [...element.shadowRoot!.querySelectorAll('[aria-label="Users"] li')].map((item) => [...item.children].map(tagLabel));
    expect(entries.filter((children) => children.length === 2)).to.deep.equal([["span.nickname", "button"]]);
    expect(entries.every((children) => children[0] === "span.nickname" && children.length <= 2)).to.equal(true);
  }
  for (const name of plain(elements[0]!)) expect(name).to.match(/^[\p{L}\p{N} '-]+$/u);
}

describe("markup and script injection in Chromium", () => {
  afterEach(() => {
    removeAll();
    delete (window as unknown as { __pwned?: number }).__pwned;
  });

  it("the corpus has at least 60 distinct hostile strings, each one a post the model accepts", () => {
    expect(INJECTION_CORPUS.length).to.be.at.least(60);
    expect(new Set(INJECTION_CORPUS).size).to.equal(INJECTION_CORPUS.length);
    for (const raw of INJECTION_CORPUS) {
      expect(fieldValue(raw).trim().length, JSON.stringify(raw)).to.be.within(1, 1000);
      expect(raw.trim(), "/reset would clear the history").not.to.equal("/reset");
    }
    expect(INJECTION_CORPUS.some((raw) => raw.trim().length === 1000)).to.equal(true);
  });

  it("the sentinel catches a payload that runs (control: the same markup parsed as HTML outside the element)", async () => {
    const scratch = document.createElement("div");
    scratch.innerHTML = `<img src=x onerror=${SENTINEL}>`;
    document.body.append(scratch);
    try {
      await waitFor(() => pwned() === 1, "the control payload to run");
    } finally {
      scratch.remove();
    }
  });

  for (const [index, batch] of batches(INJECTION_CORPUS).entries()) {
    it(`posts typed into the field render as literal text in both windows (batch ${index + 1}, ${batch.length} strings)`, async () => {
      expect(pwned(), "the sentinel before the test").to.equal(undefined);
      const room = uniqueRoom(`injection-${index + 1}`);
      const poster = await addChat({ host: reflectorHost(), room });
      const reader = await addChat({ host: reflectorHost(), room });
      await waitFor(() => userTexts(poster).length === 2 && userTexts(reader).length === 2, "both users in both lists");
      const nickname = ownNickname(poster);
      const outside = [outsideLog(poster), outsideLog(reader)];
      const before = pageState([poster, reader]);

      for (const raw of batch) await postThroughField(poster, raw);
      const expected = batch.map((raw) => kept(fieldValue(raw)));
      await waitForPosts([poster, reader], batch.length, "every post in both models");

      await provoke(poster);
      await provoke(reader);
      await pause(500);
      await provoke(poster);
      await provoke(reader);
      expect(pwned(), "the sentinel: something ran").to.equal(undefined);

      for (const element of [poster, reader]) {
        expectLiteralPosts(element, nickname, expected);
        expectNoInjectedMarkup(element, element === poster ? outside[0]! : outside[1]!);
      }
      expect(logTexts(poster)).to.deep.equal(logTexts(reader));
      expect(pageState([poster, reader])).to.deep.equal(before);
      expectUsersIntact([poster, reader], 2);
      expect(ownNickname(poster)).to.equal(nickname);
    });
  }

  it("untrimmed, newline-laden posts from a headless client render as literal text, each on one line", async () => {
    const room = uniqueRoom("injection-headless");
    const reader = await addChat({ host: reflectorHost(), room });
    // The public headless API (README): it publishes the raw text, newlines and surrounding blanks included.
    const client = Session.join({ host: reflectorHost(), room, model: ChatModel });
    try {
      await client.whenReady();
      await waitFor(() => userTexts(reader).length === 2, "the headless client in the list");
      const outside = outsideLog(reader);
      const before = pageState([reader]);
      const nickname = (client.model as ChatModel).nicknameOf(client.clientId!)!;
      // One batch is enough: it holds every newline and whitespace payload, which the field cannot send as they are.
      const batch = INJECTION_CORPUS.filter((raw) => /[\r\n]/.test(raw) || raw !== raw.trim()).concat(
        INJECTION_CORPUS.filter((raw) => raw.includes("<script")).slice(0, 10),
      );
      expect(batch.length).to.be.within(5, BATCH);
      for (const raw of batch) client.publish(CHAT_SCOPE, "post", { text: raw });
      await waitForPosts([reader], batch.length, "every headless post in the model");

      await provoke(reader);
      await pause(500);
      await provoke(reader);
      expect(pwned(), "the sentinel: something ran").to.equal(undefined);
      expectLiteralPosts(reader, nickname, batch.map(kept));
      // Each post is one line: its line breaks cannot draw lines that pass for other posts or notices.
      expect(postEntries(reader).filter((item) => /[\r\n\u2028\u2029]/.test(item.textContent!))).to.deep.equal([]);
      expectNoInjectedMarkup(reader, outside);
      expect(pageState([reader])).to.deep.equal(before);
      expect(userTexts(reader)).to.have.length(2);
    } finally {
      client.leave();
    }
  });

  it("posts typed offline on the demo page render literally while pending and after delivery", async function () {
    this.timeout(60_000);
    const demo = (payload: Record<string, unknown>) => executeServerCommand<unknown, Record<string, unknown>>("demo-page", payload);
    /** Evaluates in the demo page; wrapped in JSON so that `undefined` survives the trip. */
    const inDemo = async <T>(id: string, body: string): Promise<T> =>
      JSON.parse((await demo({ action: "evaluate", id, expression: `JSON.stringify((() => { ${body} })() ?? null)` })) as string) as T;
    const demoEntries = (id: string, kind: "pending" | "message") =>
      inDemo<RenderedEntry[]>(
        id,
        `const describe = ${describeEntry.toString()}; const tagLabel = ${tagLabel.toString()};
         return [...document.querySelector("multiuser-chat").shadowRoot.querySelectorAll('[role="log"] li[part="${kind}"]')].map(describe);`,
      );
    const provokeDemo = (id: string) =>
      inDemo<null>(
        id,
        `for (const found of document.querySelector("multiuser-chat").shadowRoot.querySelectorAll('[role="log"] *')) {
           found.getBoundingClientRect();
           for (const type of ["mouseover", "mouseenter", "focus", "load", "error", "toggle"]) found.dispatchEvent(new Event(type));
         }`,
      );
    const demoState = (id: string) =>
      inDemo<{ pwned: string; strangers: string[]; handlers: number; frames: number; href: string; bodyChildren: number; headChildren: number }>(
        id,
        `const root = document.querySelector("multiuser-chat").shadowRoot;
         return {
           pwned: typeof window.__pwned,
           strangers: [...root.querySelectorAll('[role="log"] *')].map((found) => found.tagName.toLowerCase()).filter((tag) => !["ol", "li", "time", "span", "em"].includes(tag)),
           handlers: [...root.querySelectorAll("*")].filter((found) => [...found.attributes].some((attribute) => /^on/i.test(attribute.name) || /^\\s*javascript:/i.test(attribute.value))).length,
           frames: window.length, href: location.href, bodyChildren: document.body.childElementCount, headChildren: document.head.childElementCount,
         };`,
      );

    const room = uniqueRoom("injection-pending");
    const watcher = await addChat({ host: reflectorHost(), room });
    const id = (await demo({ action: "open", room })) as string;
    try {
      await waitFor(async () => (await demo({ action: "status", id })) === "Connected", "the demo page to connect");
      await waitFor(() => userTexts(watcher).length === 2, "the demo page's user");
      const nickname = userTexts(watcher).find((text) => !text.endsWith(" (you)"))!;
      const stateBefore = await demoState(id);
      expect(stateBefore.pwned).to.equal("undefined");

      await demo({ action: "offline", id, offline: true });
      await waitFor(async () => (await demo({ action: "status", id })) === "Offline", "the offline status");
      // Every fifth string, so that every family is represented and the pending list stays short. Without the
      // newline payloads: Playwright's fill types them, and a text field turns typed line breaks into spaces
      // (the headless-client test above covers newlines).
      const batch = INJECTION_CORPUS.filter((raw, index) => index % 5 === 0 && !/[\r\n]/.test(raw));
      const expected = batch.map((raw) => kept(fieldValue(raw)));
      for (const raw of batch) await demo({ action: "post", id, text: raw });
      const pendingLines = (lines: string[]) => lines.filter((line) => line.endsWith("(sending…)"));
      await waitFor(async () => pendingLines((await demo({ action: "log", id })) as string[]).length === batch.length, "the pending posts");

      // The 'log' action's text (whitespace collapsed) shows each pending post literally.
      const collapse = (text: string) => text.replace(/\s+/g, " ").trim();
      expect(pendingLines((await demo({ action: "log", id })) as string[])).to.deep.equal(expected.map((text) => collapse(`${nickname}: ${text} (sending…)`)));
      // And the DOM holds exactly the nickname, the text as one literal run, and "(sending…)".
      await provokeDemo(id);
      await pause(500);
      const pending = await demoEntries(id, "pending");
      expect(pending.map((entry) => entry.afterNickname)).to.deep.equal(expected.map((text) => `: ${text} `));
      for (const entry of pending) {
        expect(entry.children).to.deep.equal(["span.nickname", "em"]);
        expect(entry.descendants).to.equal(2);
        expect(entry.nickname).to.equal(nickname);
      }
      const statePending = await demoState(id);
      expect(statePending).to.deep.equal({ ...stateBefore, strangers: [], handlers: 0 });
      expect(statePending.pwned, "the sentinel in the demo page while pending").to.equal("undefined");

      await demo({ action: "offline", id, offline: false });
      await waitForPosts([watcher], batch.length, "the posts at the watcher");
      await waitFor(
        async () => (await demoEntries(id, "pending")).length === 0 && (await demoEntries(id, "message")).length === batch.length,
        "the posts sent at the demo page",
      );
      await provoke(watcher);
      await provokeDemo(id);
      await pause(500);
      expect(pwned(), "the sentinel in the test page").to.equal(undefined);
      expect((await demoState(id)).pwned, "the sentinel in the demo page after delivery").to.equal("undefined");
      expectLiteralPosts(watcher, nickname, expected);
      const delivered = await demoEntries(id, "message");
      expect(delivered.map((entry) => entry.afterNickname)).to.deep.equal(expected.map((text) => `: ${text}`));
      for (const entry of delivered) expect(entry.children).to.deep.equal(["time", "span.nickname"]);
      expect(await demoState(id)).to.deep.equal({ ...stateBefore, strangers: [], handlers: 0 });
    } finally {
      await demo({ action: "close", id });
    }
  });
});
