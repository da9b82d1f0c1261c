/**
 * axe-core for the Chromium tests, as JavaScript expressions to evaluate in a page: the test page itself, a demo page
 * (`demo({ action: "evaluate" })`) or a frame. axe is served from node_modules by the test server.
 */
const AXE_URL = new URL("/node_modules/axe-core/axe.min.js", location.href).href;

/** Loads axe once, as a classic script; resolves when `window.axe` is there. */
export const loadAxe = `(window.axe ? Promise.resolve() : new Promise((resolve, reject) => {
  const script = Object.assign(document.createElement("script"), { src: ${JSON.stringify(AXE_URL)}, onload: resolve, onerror: reject });
  document.head.append(script);
}))`;

/**
 * Runs every axe rule (WCAG 2.x A and AA, and best practices) on each context that `contexts` (an expression for an
 * array) names, and resolves to the violations, readably. `[document]` is the whole page, page-level rules included.
 */
export const axeViolations = (contexts: string) => `${loadAxe}.then(async () => {
  const found = [];
  for (const context of ${contexts}) {
    for (const v of (await window.axe.run(context)).violations) {
      found.push(v.id + " (" + v.impact + "): " + v.help + " at " + v.nodes.map((node) => JSON.stringify(node.target) + " " + node.failureSummary).join("; "));
    }
  }
  return found;
})`;

/** Every axe violation in a page's `<multiuser-chat>` elements: an expression, for the test page or a demo page. */
export const elementViolations = axeViolations(`document.querySelectorAll("multiuser-chat")`);

/** Every axe violation in the test page's `<multiuser-chat>` elements, once `element` has rendered. */
export async function chatViolations(element: { updateComplete: Promise<unknown> }): Promise<string[]> {
  await element.updateComplete;
  // biome-ignore lint/security/noGlobalEval: the expression is this module's own, written for pages it cannot import into.
  return (await globalThis.eval(elementViolations)) as string[];
}
