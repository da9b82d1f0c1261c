import { expect } from "@esm-bundle/chai";
import { emulateMedia, setViewport } from "@web/test-runner-commands";
import type { MultiuserChat } from "../../component/multiuser-chat/multiuser-chat.js";
import { USER_COLOURS } from "../../component/chat-model.js";
import { addChat, logTexts, part, reflectorHost, removeAll, sendWithButton, uniqueRoom, waitFor } from "./helpers.js";

// Tests compare booleans, not elements: the runner cannot report a failed assertion about a DOM node.
const all = (element: MultiuserChat, selector: string) => [...element.shadowRoot!.querySelectorAll<HTMLElement>(selector)];
const shown = (element: Element | null) => element !== null && (element as HTMLElement).offsetParent !== null;
const qrButton = (element: MultiuserChat) => element.shadowRoot!.querySelector<HTMLButtonElement>('[part="qr-button"]');
const qr = (element: MultiuserChat) => element.shadowRoot!.querySelector<HTMLElement>('[part="qr"]');
/** Waits until the element has rendered after a change of its size or attributes (the resize observer, then a frame). */
const settled = async (element: MultiuserChat) => {
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  await element.updateComplete;
};

describe("<multiuser-chat> theming and layout", () => {
  afterEach(async () => {
    removeAll();
    for (const style of document.querySelectorAll("style[data-test]")) style.remove();
    await emulateMedia({ colorScheme: "light", reducedMotion: "no-preference" });
    await setViewport({ width: 800, height: 600 });
  });

  it("folds the QR code behind a disclosure button below 480 px of its own width, whatever the viewport", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("narrow"), style: "width: 400px" });
    await settled(element);
    expect(window.innerWidth).to.be.greaterThan(700);
    const button = qrButton(element)!;
    expect(shown(button)).to.equal(true);
    expect(button.getAttribute("aria-expanded")).to.equal("false");
    expect(button.nextElementSibling === qr(element), "the code follows its button").to.equal(true);
    expect(shown(qr(element))).to.equal(false);
    // Users go under the log, the log keeps the width.
    const log = part(element, '[part="log"]').getBoundingClientRect();
    const users = part(element, '[part="users"]').getBoundingClientRect();
    expect(users.top).to.be.at.least(log.bottom - 1);
    expect(log.width).to.be.greaterThan(350);

    button.click();
    await settled(element);
    expect(button.getAttribute("aria-expanded")).to.equal("true");
    expect(shown(qr(element))).to.equal(true);
    expect(part(element, '[role="img"]').getBoundingClientRect().width).to.be.greaterThan(100);
    button.click();
    await settled(element);
    expect(shown(qr(element))).to.equal(false);

    // Wider than 480 px: the QR code shows beside the log, with no button.
    element.style.width = "600px";
    await settled(element);
    expect(qrButton(element) === null).to.equal(true);
    expect(shown(qr(element))).to.equal(true);
    expect(part(element, '[part="users"]').getBoundingClientRect().left).to.be.at.least(part(element, '[part="log"]').getBoundingClientRect().right - 1);

    // A narrow viewport with a wide element is the wide layout: the element's width decides.
    await setViewport({ width: 420, height: 600 });
    await settled(element);
    expect(qrButton(element) === null).to.equal(true);
    element.style.width = "";
    await settled(element);
    expect(shown(qrButton(element))).to.equal(true);
  });

  it("show-qr and show-users hide their regions only when set to false", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("toggles"), "show-qr": "false" });
    await settled(element);
    expect(qr(element) === null).to.equal(true);
    expect(element.shadowRoot!.querySelector('[aria-label="Users"]') !== null).to.equal(true);
    element.style.width = "400px";
    await settled(element);
    expect(qrButton(element) === null, "no button for a hidden QR code").to.equal(true);

    element.setAttribute("show-users", "false");
    await settled(element);
    expect(element.shadowRoot!.querySelector('[aria-label="Users"]') === null).to.equal(true);
    expect(element.shadowRoot!.querySelector(".side") === null).to.equal(true);
    // The log takes the whole width.
    expect(part(element, '[part="log"]').getBoundingClientRect().width).to.be.closeTo(400, 4);

    element.removeAttribute("show-qr");
    element.setAttribute("show-users", "");
    await settled(element);
    expect(shown(qrButton(element))).to.equal(true);
    expect(element.shadowRoot!.querySelector('[aria-label="Users"]') !== null).to.equal(true);
    for (const value of ["true", "", "yes"]) {
      element.setAttribute("show-qr", value);
      await settled(element);
      expect(element.showQr, `show-qr="${value}"`).to.equal(true);
    }
    element.showUsers = false;
    await settled(element);
    expect(element.shadowRoot!.querySelector('[aria-label="Users"]') === null).to.equal(true);
    // The page can hide the whole element as any other.
    element.hidden = true;
    expect(element.getBoundingClientRect().height).to.equal(0);
  });

  it("takes every colour from its custom properties, in both colour schemes", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("colours") });
    const colours: Record<string, string> = {
      background: "rgb(1, 1, 1)",
      color: "rgb(2, 2, 2)",
      "muted-color": "rgb(3, 3, 3)",
      accent: "rgb(4, 4, 4)",
      "accent-contrast": "rgb(5, 5, 5)",
      "border-color": "rgb(6, 6, 6)",
      "error-color": "rgb(7, 7, 7)",
      "qr-color": "rgb(8, 8, 8)",
      "qr-background": "rgb(9, 9, 9)",
      ...Object.fromEntries(USER_COLOURS.map((colour, index) => [`user-${colour}`, `rgb(10, 10, ${index})`])),
    };
    for (const [name, value] of Object.entries(colours)) element.style.setProperty(`--multiuser-chat-${name}`, value);
    await sendWithButton(element, "a post");
    await sendWithButton(element, "x".repeat(1001)); // shows the refusal
    await waitFor(() => logTexts(element).some((line) => line.endsWith("a post")), "the post");
    await settled(element);
    const allowed = new Set([...Object.values(colours), "rgba(0, 0, 0, 0)"]);
    for (const scheme of ["light", "dark"] as const) {
      await emulateMedia({ colorScheme: scheme });
      for (const node of [element, ...all(element, "*")]) {
        const style = getComputedStyle(node);
        const used = [style.color, style.backgroundColor];
        if (node instanceof SVGElement) used.push(style.fill);
        for (const side of ["Top", "Right", "Bottom", "Left"] as const) if (style[`border${side}Width`] !== "0px") used.push(style[`border${side}Color`]);
        for (const colour of used)
          expect(allowed.has(colour), `${scheme}: ${node.localName}.${node.getAttribute("part") ?? node.className} uses ${colour}`).to.equal(true);
      }
    }
    expect(getComputedStyle(part(element, '[part="button"]')).backgroundColor).to.equal(colours.accent);
    expect(getComputedStyle(part(element, '[part="error"]')).color).to.equal(colours["error-color"]);
    expect(getComputedStyle(part(element, '[part="qr"] svg')).fill).to.equal(colours["qr-color"]);
  });

  it("has dark defaults under prefers-color-scheme: dark, and fonts, radius and spacing from custom properties", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("dark") });
    const host = () => getComputedStyle(element);
    expect(host().backgroundColor).to.equal("rgb(255, 255, 255)");
    await emulateMedia({ colorScheme: "dark" });
    expect(host().backgroundColor).to.equal("rgb(23, 25, 29)");
    expect(host().color).to.equal("rgb(228, 231, 236)");
    // The page's choice wins in the dark too.
    element.style.setProperty("--multiuser-chat-background", "rgb(10, 20, 30)");
    expect(host().backgroundColor).to.equal("rgb(10, 20, 30)");

    element.style.setProperty("--multiuser-chat-font-family", "monospace");
    element.style.setProperty("--multiuser-chat-font-size", "20px");
    element.style.setProperty("--multiuser-chat-radius", "3px");
    element.style.setProperty("--multiuser-chat-spacing", "7px");
    element.style.setProperty("--multiuser-chat-height", "300px");
    const input = getComputedStyle(part(element, '[part="input"]'));
    expect(input.fontFamily).to.equal("monospace");
    expect(input.fontSize).to.equal("20px");
    expect(input.borderTopLeftRadius).to.equal("3px");
    expect(getComputedStyle(part(element, '[part="form"]')).paddingTop).to.equal("7px");
    expect(element.getBoundingClientRect().height).to.equal(300);
  });

  it("exposes its parts to ::part() styles", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("parts") });
    await sendWithButton(element, "styled");
    await waitFor(() => logTexts(element).some((line) => line.endsWith("styled")), "the post");
    await settled(element);
    const style = Object.assign(document.createElement("style"), { textContent: "multiuser-chat::part(message) { color: rgb(1, 2, 3) }" });
    style.dataset.test = "";
    document.head.append(style);
    expect(getComputedStyle(part(element, '[part="message"]')).color).to.equal("rgb(1, 2, 3)");
    for (const name of ["header", "status", "log", "message", "notice", "users", "user", "qr", "form", "input", "button", "error"]) {
      expect(all(element, `[part="${name}"]`), name).not.to.have.length(0);
    }
    element.style.width = "400px";
    await settled(element);
    expect(all(element, '[part="qr-button"]')).to.have.length(1);
  });

  it("moves nothing, with or without prefers-reduced-motion", async () => {
    const element = await addChat({ host: reflectorHost(), room: uniqueRoom("motion") });
    for (const reducedMotion of ["no-preference", "reduce"] as const) {
      await emulateMedia({ reducedMotion });
      await sendWithButton(element, `posted with ${reducedMotion}`);
      await waitFor(() => logTexts(element).at(-1)!.endsWith(`posted with ${reducedMotion}`), "the post");
      await settled(element);
      part(element, '[part="qr-button"], a').focus();
      expect(element.shadowRoot!.getAnimations(), reducedMotion).to.have.length(0);
      for (const node of all(element, "*")) {
        const style = getComputedStyle(node);
        expect([style.animationName, style.transitionDuration, style.scrollBehavior], `${node.localName}.${node.getAttribute("part")}`).to.deep.equal([
          "none",
          "0s",
          "auto",
        ]);
      }
    }
  });
});
