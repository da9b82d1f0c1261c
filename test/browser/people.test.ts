/**
 * People: a nickname that stays across a reload, that the reader can change (with /nick or the "Change nickname"
 * button), that the browser remembers for the next room, and a colour that tells users apart. In Chromium, against
 * the real reflector; demo pages in browsers of their own (or tabs of one) play the others.
 */
import { expect } from "@esm-bundle/chai";
import { emulateMedia, sendKeys } from "@web/test-runner-commands";
import { USER_COLOURS } from "../../component/chat-model.js";
import type { MultiuserChat } from "../../component/multiuser-chat/multiuser-chat.js";
import { chatViolations } from "../support/axe.js";
import { addChat, alertTexts, demo, logTexts, part, reflectorHost, removeAll, sendWithButton, uniqueRoom, userTexts, waitFor } from "./helpers.js";

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const own = (texts: string[]) => texts.find((text) => text.endsWith(" (you)"))?.replace(/ \(you\)$/, "");
const demoUsers = async (id: string) => (await demo({ action: "users", id })) as string[];
const demoLog = async (id: string) => (await demo({ action: "log", id })) as string[];
/** A log's notices (joins, leaves, renames), without their times. */
const notices = (texts: string[]) =>
  texts.map((text) => text.replace(/^\d\d:\d\d\s*(AM|PM)?\s*/i, "")).filter((text) => / (joined|left|is now .*)$/.test(text));

async function openDemo(room: string, sameBrowserAs?: string): Promise<string> {
  const id = (await demo({ action: "open", room, sameBrowserAs })) as string;
  await waitFor(async () => (await demo({ action: "status", id })) === "Connected", "the demo page to connect");
  return id;
}

describe("people in Chromium", () => {
  const pages: string[] = [];
  const track = (id: string) => {
    pages.push(id);
    return id;
  };
  afterEach(async () => {
    removeAll();
    for (const id of pages.splice(0)) await demo({ action: "close", id }).catch(() => {});
  });

  it("a reload keeps the nickname: the others see no leave or join and no second entry; two tabs are two users", async () => {
    const room = uniqueRoom("reload");
    const watcher = await addChat({ host: reflectorHost(), room });
    const page = track(await openDemo(room));
    await waitFor(() => userTexts(watcher).length === 2, "the page in the watcher's list");
    const name = own(await demoUsers(page))!;
    const noticesBefore = notices(logTexts(watcher));

    await demo({ action: "reload", id: page });
    await waitFor(async () => (await demo({ action: "status", id: page })) === "Connected", "the reloaded page to connect");
    expect(own(await demoUsers(page)), "the same nickname after the reload").to.equal(name);
    await pause(5000); // past RELOAD_GRACE_MS: a departure would show by now
    expect(
      userTexts(watcher).filter((text) => text === name),
      "one entry",
    ).to.have.length(1);
    expect(userTexts(watcher)).to.have.length(2);
    expect(notices(logTexts(watcher)), "no leave or join").to.deep.equal(noticesBefore);

    // Another tab of the same browser is another user, as in the seed: two windows, two users.
    const tab = track(await openDemo(room, page));
    await waitFor(() => userTexts(watcher).length === 3, "the second tab in the list");
    expect(own(await demoUsers(tab))).not.to.equal(name);
  });

  it("/nick and the Change nickname button rename for everyone, a late joiner included, with one notice each", async () => {
    const room = uniqueRoom("rename");
    const [first, second] = [await addChat({ host: reflectorHost(), room }), await addChat({ host: reflectorHost(), room })];
    const renames: CustomEvent[] = [];
    first.addEventListener("multiuser-chat-rename", (event) => renames.push(event));
    const [firstName, secondName] = [first.nickname!, second.nickname!];

    await sendWithButton(first, "/nick Ada");
    await waitFor(() => userTexts(second).includes("Ada"), "Ada in the other list");
    expect(first.nickname).to.equal("Ada");
    expect(renames.map((event) => event.detail)).to.deep.equal([{ id: first.users.find((user) => user.own)!.id, from: firstName, to: "Ada", own: true }]);
    expect(renames[0]!.bubbles && renames[0]!.composed).to.equal(true);

    // The button on the reader's own entry opens a field named "Nickname"; Enter saves and gives the focus back.
    part(second, '[part="rename-button"]').click();
    await second.updateComplete;
    const field = part<HTMLInputElement>(second, '[aria-label="Nickname"]');
    expect(second.shadowRoot!.activeElement).to.equal(field);
    expect(field.value).to.equal(secondName);
    field.value = "Grace";
    await sendKeys({ press: "Enter" });
    await waitFor(() => userTexts(first).includes("Grace"), "Grace in the first list");
    expect(second.shadowRoot!.activeElement).to.equal(part(second, '[part="rename-button"]'));
    expect(renames.map((event) => event.detail.own)).to.deep.equal([true, false]);

    const late = await addChat({ host: reflectorHost(), room });
    await waitFor(() => userTexts(late).includes("Ada (you)") === false && userTexts(late).includes("Ada"), "the names at the late joiner");
    for (const element of [first, second, late]) {
      await waitFor(() => logTexts(element).some((text) => text.endsWith(`${secondName} is now Grace`)), "the notices");
      expect(notices(logTexts(element)).filter((text) => text.includes(" is now "))).to.deep.equal([`${firstName} is now Ada`, `${secondName} is now Grace`]);
      expect(
        userTexts(element)
          .map((text) => text.replace(/ \(you\)$/, ""))
          .sort(),
      ).to.deep.equal(["Ada", "Grace", late.nickname!].sort());
    }
  });

  it("Escape closes the nickname field without a change and returns the focus to its button", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("escape") });
    const name = element.nickname;
    part(element, '[part="rename-button"]').click();
    await element.updateComplete;
    part<HTMLInputElement>(element, '[aria-label="Nickname"]').value = "Not this";
    await sendKeys({ press: "Escape" });
    await element.updateComplete;
    expect(element.shadowRoot!.querySelector('[aria-label="Nickname"]')).to.equal(null);
    expect(element.shadowRoot!.activeElement).to.equal(part(element, '[part="rename-button"]'));
    await pause(300);
    expect(element.nickname).to.equal(name);
  });

  it("refuses an empty name, 33 characters, control characters and someone else's name in any case, with the reason and no change", async () => {
    const room = uniqueRoom("refusals");
    const [element, other] = [await addChat({ host: reflectorHost(), room }), await addChat({ host: reflectorHost(), room })];
    await sendWithButton(other, "/nick Bob");
    await waitFor(() => element.users.some((user) => user.nickname === "Bob"), "Bob");
    const name = element.nickname!;
    const before = { users: userTexts(other), log: logTexts(other) };
    const cases: [string, string][] = [
      ["   ", "A nickname needs at least one character."],
      ["x".repeat(33), "This nickname has 33 characters; the limit is 32."],
      ["bell\u0007", "A nickname cannot hold control characters or line breaks."],
      ["bOB", "Bob is already here: choose another nickname."],
    ];
    for (const [tried, message] of cases) {
      // By the API, with a RangeError…
      expect(() => element.rename(tried)).to.throw(RangeError, message);
      // …by the field, in the element's alert, with the field still open…
      part(element, '[part="rename-button"]').click();
      await element.updateComplete;
      part<HTMLInputElement>(element, '[aria-label="Nickname"]').value = tried;
      part(element, '[aria-label="Nickname"]').focus();
      await sendKeys({ press: "Enter" });
      await element.updateComplete;
      expect(alertTexts(element)).to.deep.equal([message]);
      expect(element.shadowRoot!.querySelector('[aria-label="Nickname"]'), "the field stays open").not.to.equal(null);
      await sendKeys({ press: "Escape" });
      await element.updateComplete;
    }
    // …and by /nick, which the model refuses: only the reader is told.
    await sendWithButton(element, "/nick bob");
    await waitFor(() => alertTexts(element).includes("Bob is already here: choose another nickname."), "the model's refusal");
    expect(alertTexts(other)).to.deep.equal([]);
    await pause(300);
    expect(element.nickname).to.equal(name);
    expect(userTexts(other)).to.deep.equal(before.users);
    expect(logTexts(other)).to.deep.equal(before.log);
  });

  it("a chosen name comes back in a new tab of the same browser after the first one closed, numbered when someone here has it", async () => {
    // A tab that keeps the browser open while the others come and go.
    const anchor = track(await openDemo(uniqueRoom("anchor")));
    const first = await openDemo(uniqueRoom("remember"), anchor);
    await demo({ action: "rename", id: first, text: "Hypatia" });
    await waitFor(async () => own(await demoUsers(first)) === "Hypatia", "the new name");
    await demo({ action: "close", id: first });

    const room = uniqueRoom("remembered");
    const next = track(await openDemo(room, anchor));
    expect(own(await demoUsers(next)), "greeted by the chosen name").to.equal("Hypatia");
    expect(notices(await demoLog(next)), "joined under it, with no rename").to.deep.equal(["Hypatia joined"]);
    // Someone here already has it: the lowest free number.
    const clash = track(await openDemo(room, anchor));
    expect(own(await demoUsers(clash))).to.equal("Hypatia 2");

    // Forgotten, the next room draws a random name.
    await demo({ action: "evaluate", id: anchor, expression: "(document.querySelector('multiuser-chat').forgetNickname(), true)" });
    const forgotten = track(await openDemo(uniqueRoom("forgotten"), anchor));
    expect(own(await demoUsers(forgotten))).not.to.match(/^Hypatia/);
  });

  it("each user has a colour of the palette on their name, in the list and on their posts, the same everywhere", async () => {
    const room = uniqueRoom("colours");
    const [first, second] = [await addChat({ host: reflectorHost(), room }), await addChat({ host: reflectorHost(), room })];
    await sendWithButton(first, "coloured");
    await waitFor(() => logTexts(second).some((text) => text.endsWith("coloured")), "the post");
    const colourOf = (element: MultiuserChat, selector: string) =>
      [...part(element, selector).classList].find((name) => (USER_COLOURS as readonly string[]).includes(name));
    const firstColour = first.users.find((user) => user.own)!.colour;
    expect(USER_COLOURS).to.include(firstColour);
    expect(second.users.find((user) => !user.own)!.colour).to.equal(firstColour);
    expect(colourOf(second, '[part="message"] .nickname')).to.equal(firstColour);
    expect(colourOf(first, '[part="user"] .nickname')).to.equal(firstColour);
    expect(getComputedStyle(part(second, '[part="message"] .nickname')).color).not.to.equal(getComputedStyle(part(second, '[part="message"]')).color);
  });

  it("axe finds nothing with the nickname field open, in either colour scheme", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("axe-rename") });
    part(element, '[part="rename-button"]').click();
    await element.updateComplete;
    try {
      for (const colorScheme of ["light", "dark"] as const) {
        await emulateMedia({ colorScheme });
        expect(await chatViolations(element), colorScheme).to.deep.equal([]);
      }
    } finally {
      await emulateMedia({ colorScheme: "light" });
    }
  });
});
