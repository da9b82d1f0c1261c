/** Helpers for the Chromium tests: they drive the built element (dist/) against the real reflector. */
import { executeServerCommand } from "@web/test-runner-commands";
import "../../dist/multiuser-chat.js";
import type { MultiuserChat } from "../../component/multiuser-chat/multiuser-chat.js";
import { waitFor } from "../support/wait-for.js";

export { waitFor };

declare global {
  interface Window {
    REFLECTOR_HOST: string;
  }
}

export const reflectorHost = () => window.REFLECTOR_HOST;

/** Drives a demo page in a browser context of its own (web-test-runner.config.mjs, "demo-page"). */
export const demo = (payload: Record<string, unknown>) => executeServerCommand<unknown, Record<string, unknown>>("demo-page", payload);

/** The texts of the element's alerts that show. */
export const alertTexts = (element: HTMLElement) =>
  [...element.shadowRoot!.querySelectorAll('[role="alert"]:not([hidden])')].map((alert) => alert.textContent!.trim());

export const uniqueRoom = (label: string) => `${label}-${crypto.randomUUID().slice(0, 8)}`;

/** Adds `<multiuser-chat>` with the given attributes to the page and waits until it is connected. */
export async function addChat(attributes: Record<string, string>, { connected = true } = {}): Promise<MultiuserChat> {
  const element = document.createElement("multiuser-chat");
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  document.body.append(element);
  await element.updateComplete;
  if (connected) await waitFor(() => statusOf(element) === "Connected", `${attributes.room} to connect`);
  return element;
}

export function removeAll(): void {
  for (const element of document.querySelectorAll("multiuser-chat")) element.remove();
}

export const part = <E extends Element = HTMLElement>(element: MultiuserChat, selector: string): E => {
  const found = element.shadowRoot!.querySelector<E>(selector);
  if (found === null) throw new Error(`no ${selector} in <multiuser-chat>`);
  return found;
};

export const statusOf = (element: MultiuserChat) => element.shadowRoot?.querySelector('[role="status"]')?.textContent?.trim();
export const logTexts = (element: MultiuserChat) =>
  [...element.shadowRoot!.querySelectorAll('[role="log"] li')].map((item) => item.textContent!.replace(/\s+/g, " ").trim());
export const userTexts = (element: MultiuserChat) =>
  [...element.shadowRoot!.querySelectorAll('[aria-label="Users"] li')].map((item) => item.textContent!.trim());
export const messageInput = (element: MultiuserChat) => part<HTMLInputElement>(element, 'input[aria-label="Message"]');

/** Types into the element's field and sends, as a reader would with the Send button. */
export async function sendWithButton(element: MultiuserChat, text: string): Promise<void> {
  messageInput(element).value = text;
  messageInput(element).dispatchEvent(new Event("input", { bubbles: true, composed: true }));
  const button = [...element.shadowRoot!.querySelectorAll("button")].find((candidate) => candidate.textContent?.trim() === "Send")!;
  button.click();
  await element.updateComplete;
}

/**
 * Draws the element's QR code on a canvas, in the colours its styles give it (an image of the SVG alone carries
 * none), and decodes it with jsQR (bundled to ESM by scripts/test.mjs).
 */
export async function decodeQrCode(element: MultiuserChat): Promise<string | undefined> {
  const { default: jsQR } = await import("/test-results/bundles/jsqr.js" as string);
  const svg = part<SVGSVGElement>(element, '[role="img"] svg');
  const style = getComputedStyle(svg);
  const copy = svg.cloneNode(true) as SVGSVGElement;
  copy.setAttribute("fill", style.fill);
  const image = new Image();
  image.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(new XMLSerializer().serializeToString(copy))}`;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 400;
  const context = canvas.getContext("2d")!;
  context.fillStyle = style.backgroundColor;
  context.fillRect(0, 0, 400, 400);
  context.drawImage(image, 0, 0, 400, 400);
  const { data, width, height } = context.getImageData(0, 0, 400, 400);
  return jsQR(data, width, height)?.data;
}
