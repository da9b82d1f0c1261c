/**
 * The nickname a reader chose, remembered by their browser for one reflector host (`localStorage`), so that the
 * next room they open there greets them by it. Nothing else about them is kept.
 */

/** The one key the element writes, per reflector host. */
const keyFor = (host: string) => `multiuser-chat nickname ${host}`;

/** Runs `action` on the page's `localStorage`; where a page may not use storage (blocked cookies, say), nothing is kept. */
function withStorage<T>(action: (storage: Storage) => T): T | undefined {
  try {
    return action(localStorage);
  } catch {
    return undefined;
  }
}

export const rememberedName = (host: string) => withStorage((storage) => storage.getItem(keyFor(host))) ?? undefined;
export const rememberName = (host: string, name: string) => withStorage((storage) => storage.setItem(keyFor(host), name));
export const forgetName = (host: string) => withStorage((storage) => storage.removeItem(keyFor(host)));
