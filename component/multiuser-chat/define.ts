/**
 * Registers `<multiuser-chat>`: the bundles' and the package's entry. Import `multiuser-chat.js` instead for the class
 * alone, to register it under another name or not at all.
 */
import { MultiuserChat } from "./multiuser-chat.js";

export * from "./multiuser-chat.js";

const TAG = "multiuser-chat";

declare global {
  interface HTMLElementTagNameMap {
    [TAG]: MultiuserChat;
  }
}

// A page may load two copies of the script (the module and the classic one, say): the first one defines the tag.
if (customElements.get(TAG) === undefined) {
  customElements.define(TAG, MultiuserChat);
} else {
  console.warn(`<${TAG}> is already defined; this copy of the script is not used.`);
}
