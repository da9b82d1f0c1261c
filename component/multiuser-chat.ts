import { css, html, LitElement, nothing, svg } from "lit";
import { repeat } from "lit/directives/repeat.js";
import { create as createQrCode } from "qrcode/lib/core/qrcode.js";
import { CHAT_SCOPE, ChatModel, checkPost, type ChatEntry } from "./chat-model.js";
import { checkRoomId } from "../party/protocol.js";
import { newRoomSecret } from "./room-key.js";
import { Session, type PendingEvent, type SessionStatus } from "./session.js";

const TAG = "multiuser-chat";
const ROOM_PARAMETER = "room";
/** In the URL fragment, which browsers never send to a server. */
const KEY_PARAMETER = "key";

/** Where this script was served from: by default the reflector is the same host. */
const scriptUrl = new URL(import.meta.url);

/**
 * `<multiuser-chat>`: a chat that every page showing the same room shares. The element is the view: it renders
 * the replicated `ChatModel` and publishes what the reader types; the reflector puts every post in one order.
 *
 * @attr host - the reflector's `host[:port]`; by default the host that served this script
 * @attr room - the room (session) id; by default the page URL's `room` parameter, else a new random room
 * @attr key - the room's secret key (base64url, 128 bits or more); by default the page URL's `#key=`, made anew
 *   with a new room; a room without one is encrypted with a key derived from its name, which is not private
 * @attr party - the PartyKit party; `main` by default
 *
 * @csspart header - the bar with the title and the status
 * @csspart status - the connection status text
 * @csspart log - the scrolling list of messages and notices
 * @csspart message - one post
 * @csspart notice - one join, leave or reset notice
 * @csspart pending - one post typed here that has not reached the others yet
 * @csspart warning - the warning shown when this copy of the chat disagrees with the others
 * @csspart users - the list of connected users
 * @csspart user - one user
 * @csspart qr - the QR code and the join link
 * @csspart form - the message field and the Send button
 * @csspart input - the message field
 * @csspart button - the Send button
 * @csspart error - the message shown when a post is refused
 *
 * @cssprop --multiuser-chat-background - background of the element
 * @cssprop --multiuser-chat-color - text colour
 * @cssprop --multiuser-chat-muted-color - colour of notices, times and the status
 * @cssprop --multiuser-chat-accent - colour of nicknames, the button and focus rings
 * @cssprop --multiuser-chat-accent-contrast - text colour on the accent colour
 * @cssprop --multiuser-chat-border-color - colour of borders
 * @cssprop --multiuser-chat-error-color - colour of the refusal message
 * @cssprop --multiuser-chat-font-family - font of the whole element
 * @cssprop --multiuser-chat-font-size - base font size
 * @cssprop --multiuser-chat-radius - corner radius
 * @cssprop --multiuser-chat-spacing - the base unit of padding and gaps
 * @cssprop --multiuser-chat-height - height of the element
 */
export class MultiuserChat extends LitElement {
  static override properties = {
    host: { type: String },
    room: { type: String },
    key: { type: String },
    party: { type: String },
    refusal: { state: true },
  };

  static override styles = css`
    :host {
      --_spacing: var(--multiuser-chat-spacing, 0.5rem);
      --_border: 1px solid var(--multiuser-chat-border-color, #c8ccd4);
      --_radius: var(--multiuser-chat-radius, 0.5rem);
      --_accent: var(--multiuser-chat-accent, #2458c6);
      --_muted: var(--multiuser-chat-muted-color, #5b6270);
      display: flex;
      flex-direction: column;
      box-sizing: border-box;
      height: var(--multiuser-chat-height, 28rem);
      background: var(--multiuser-chat-background, #ffffff);
      color: var(--multiuser-chat-color, #1c1f24);
      font-family: var(--multiuser-chat-font-family, system-ui, sans-serif);
      font-size: var(--multiuser-chat-font-size, 1rem);
      border: var(--_border);
      border-radius: var(--_radius);
      overflow: hidden;
    }
    [hidden] {
      display: none !important;
    }
    header {
      display: flex;
      justify-content: space-between;
      align-items: baseline;
      padding: var(--_spacing) calc(var(--_spacing) * 2);
      border-bottom: var(--_border);
    }
    h2 {
      margin: 0;
      font-size: 1em;
    }
    [part="status"] {
      color: var(--_muted);
      font-size: 0.85em;
    }
    .body {
      display: flex;
      flex: 1;
      min-height: 0;
    }
    [part="log"] {
      flex: 1;
      overflow-y: auto;
      padding: var(--_spacing) calc(var(--_spacing) * 2);
    }
    [part="log"]:focus-visible,
    input:focus-visible,
    button:focus-visible,
    a:focus-visible {
      outline: 2px solid var(--_accent);
      outline-offset: 2px;
    }
    ol,
    ul {
      list-style: none;
      margin: 0;
      padding: 0;
    }
    [part="message"],
    [part="pending"],
    [part="notice"] {
      margin: calc(var(--_spacing) / 2) 0;
      overflow-wrap: anywhere;
      white-space: pre-wrap;
    }
    [part="notice"] {
      color: var(--_muted);
      font-style: italic;
    }
    [part="pending"] {
      opacity: 0.6;
    }
    .nickname {
      color: var(--_accent);
      font-weight: 600;
    }
    time {
      color: var(--_muted);
      font-size: 0.8em;
    }
    aside {
      width: 12rem;
      display: flex;
      flex-direction: column;
      gap: var(--_spacing);
      padding: var(--_spacing);
      border-inline-start: var(--_border);
      overflow-y: auto;
    }
    [part="qr"] {
      margin: 0;
      text-align: center;
      font-size: 0.75em;
    }
    [part="qr"] svg {
      width: 100%;
      height: auto;
      max-width: 10rem;
    }
    [part="qr"] a {
      color: var(--_accent);
      overflow-wrap: anywhere;
    }
    form {
      display: flex;
      gap: var(--_spacing);
      padding: var(--_spacing);
      border-top: var(--_border);
    }
    input {
      flex: 1;
      min-width: 0;
      font: inherit;
      padding: var(--_spacing);
      border: var(--_border);
      border-radius: var(--_radius);
      background: inherit;
      color: inherit;
    }
    button {
      font: inherit;
      padding: var(--_spacing) calc(var(--_spacing) * 2);
      border: none;
      border-radius: var(--_radius);
      background: var(--_accent);
      color: var(--multiuser-chat-accent-contrast, #ffffff);
      cursor: pointer;
    }
    [part="error"],
    [part="warning"] {
      margin: 0;
      padding: 0 var(--_spacing) var(--_spacing);
      color: var(--multiuser-chat-error-color, #b3261e);
    }
  `;

  declare host: string | undefined;
  declare room: string | undefined;
  declare key: string | undefined;
  declare party: string | undefined;
  /** Why the reader's last post was not sent, shown until they edit or send again. */
  declare protected refusal: string | undefined;

  private session: Session | undefined;
  /** Encoded once per join URL: the QR code does not change while the room stays the same. */
  private qrCode: ReturnType<typeof qrSvg> | typeof nothing = nothing;
  /** The attribute values of the current session, so changing any of them joins anew. */
  private joinedWith: { host?: string; room?: string; key?: string; party?: string } | undefined;
  /** Why the element could not join: a key that is not valid, or one that does not open this room. */
  private failure: string | undefined;
  private joinUrl = "";
  private stickToBottom = true;

  override connectedCallback(): void {
    super.connectedCallback();
    this.join();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.leave();
  }

  /** Read-only view of the replicated model, once the first welcome has arrived. */
  get model(): ChatModel | undefined {
    return this.session?.model as ChatModel | undefined;
  }

  /**
   * Renders at most once per animation frame, however many events arrive in between: a burst of posts costs a
   * render per frame, not one per post.
   */
  protected override async scheduleUpdate(): Promise<void> {
    await new Promise((resolve) => requestAnimationFrame(resolve));
    super.scheduleUpdate();
  }

  protected override willUpdate(): void {
    const joined = this.joinedWith;
    if (this.isConnected && joined !== undefined && (joined.host !== this.host || joined.room !== this.room || joined.key !== this.key || joined.party !== this.party)) {
      this.join();
    }
    const log = this.logElement;
    this.stickToBottom = log === null || log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  }

  protected override updated(): void {
    const log = this.logElement;
    if (log !== null && this.stickToBottom) log.scrollTop = log.scrollHeight;
  }

  protected override render() {
    const model = this.model;
    const status = this.session?.status ?? "connecting";
    return html`
      <header part="header">
        <h2>Chat</h2>
        <span part="status" role="status">${statusText[status]}</span>
      </header>
      <div class="body">
        <div part="log" role="log" aria-label="Chat messages" tabindex="0">
          <ol>
            ${repeat(model?.history ?? [], (entry) => entry.n, (entry) => this.entryTemplate(entry))}
            ${repeat(this.pendingPosts(), (pending) => pending.id, (pending) => this.pendingTemplate(pending))}
          </ol>
        </div>
        <aside>${this.usersTemplate(model)} ${this.qrTemplate()}</aside>
      </div>
      <form part="form" @submit=${this.send}>
        <input part="input" name="message" aria-label="Message" autocomplete="off" @input=${this.clearRefusal} />
        <button part="button" type="submit">Send</button>
      </form>
      <p part="error" role="alert" ?hidden=${this.refusal === undefined && this.failure === undefined}>${this.failure ?? this.refusal ?? nothing}</p>
      ${this.warningTemplate()}
    `;
  }

  /** The reader's own posts that wait for the connection, shown where they will appear. */
  private pendingPosts(): PendingEvent[] {
    return (this.session?.pending ?? []).filter((pending) => pending.scope === CHAT_SCOPE && pending.event === "post");
  }

  private pendingTemplate(pending: PendingEvent) {
    const text = (pending.data as { text?: string } | null)?.text ?? "";
    return html`<li part="pending"><span class="nickname">${this.model?.nicknameOf(this.session?.clientId ?? "") ?? "You"}</span>: ${text} <em>(sending…)</em></li>`;
  }

  private warningTemplate() {
    const divergence = this.session?.divergence;
    if (divergence === undefined) return nothing;
    const text = divergence.outvoted
      ? `This copy of the chat no longer matches the others (after event ${divergence.seq}), so what you see may be wrong. Reload the page to get the shared version.`
      : `Another copy of this chat stopped matching after event ${divergence.seq}. Yours matches the majority.`;
    return html`<p part="warning" role="alert">${text}</p>`;
  }

  private entryTemplate(entry: ChatEntry) {
    const time = html`<time datetime=${new Date(entry.time).toISOString()}>${timeFormat.format(entry.time)}</time>`;
    if (entry.kind === "notice") return html`<li part="notice">${time} ${entry.text}</li>`;
    return html`<li part="message">${time} <span class="nickname">${entry.nickname}</span>: ${entry.text}</li>`;
  }

  private usersTemplate(model: ChatModel | undefined) {
    const self = this.session?.clientId;
    return html`
      <h2>Users (${model?.users.length ?? 0})</h2>
      <ul part="users" role="list" aria-label="Users">
        ${repeat(model?.users ?? [], (user) => user.id, (user) => html`<li part="user">${user.nickname}${user.id === self ? " (you)" : ""}</li>`)}
      </ul>
    `;
  }

  private qrTemplate() {
    return html`
      <figure part="qr">
        <div role="img" aria-label="QR code to join this chat">${this.qrCode}</div>
        <figcaption><a href=${this.joinUrl}>${this.joinUrl}</a></figcaption>
      </figure>
    `;
  }

  private get logElement(): HTMLElement | null {
    return this.renderRoot?.querySelector?.('[part="log"]') ?? null;
  }

  private send(event: SubmitEvent): void {
    event.preventDefault();
    const input = (event.currentTarget as HTMLFormElement).elements.namedItem("message") as HTMLInputElement;
    const check = checkPost(input.value);
    if (!check.ok) {
      // A refused post stays in the field so nothing typed is lost.
      this.refusal = check.reason === "too-long" ? check.message : undefined;
      return;
    }
    this.session?.publish(CHAT_SCOPE, "post", { text: check.text });
    input.value = "";
    this.refusal = undefined;
  }

  private clearRefusal(): void {
    this.refusal = undefined;
  }

  private join(): void {
    this.leave();
    const { room, key } = this.room === undefined ? roomFromPage() : { room: this.room, key: this.key ?? keyFromPage(this.room) };
    this.joinUrl = joinUrlFor(room, key);
    this.qrCode = qrSvg(this.joinUrl);
    this.joinedWith = { host: this.host, room: this.room, key: this.key, party: this.party };
    this.failure = undefined;
    const badRoom = checkRoomId(room);
    if (badRoom !== undefined) {
      this.failure = `This room name cannot be used: ${badRoom}.`;
      this.requestUpdate();
      return;
    }
    let session: Session;
    try {
      session = Session.join({
        host: this.host ?? scriptUrl.host,
        protocol: this.host === undefined ? (scriptUrl.protocol === "https:" ? "wss" : "ws") : undefined,
        room,
        key,
        party: this.party,
        model: ChatModel,
      });
    } catch (error) {
      this.failure = `This link's key is not valid: ${(error as Error).message.replace(/^multiuser-chat: /, "")}.`;
      this.requestUpdate();
      return;
    }
    this.watch(session);
    this.session = session;
    this.requestUpdate();
  }

  /** Re-renders on every change of the session, and shows what keeps it from working. */
  private watch(session: Session): void {
    const update = () => this.requestUpdate();
    for (const type of ["welcome", "status", "update", "pending", "divergence"]) session.addEventListener(type, update);
    session.addEventListener("reflector-error", (event) => {
      // The room turns newcomers away while it is full; the session keeps trying and the welcome clears this.
      if ((event as CustomEvent<{ code: string }>).detail.code === "room-full") {
        this.failure = "This chat is full right now. Waiting for a place…";
        this.requestUpdate();
      }
    });
    session.addEventListener("welcome", () => (this.failure = undefined));
    session.addEventListener("key-mismatch", () => {
      this.failure = "This link's key does not match the room. Ask for the link again: the part after # must be complete.";
      this.requestUpdate();
    });
    session.subscribe(CHAT_SCOPE, "refused", (data) => {
      const { client, message } = data as { client: string; message: string };
      if (client === session.clientId) this.refusal = message;
    });
  }

  private leave(): void {
    this.session?.leave();
    this.session = undefined;
    this.joinedWith = undefined;
  }
}

const statusText: Record<SessionStatus, string> = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

/**
 * The page URL's room and key, or a new random room with a new secret key, written into the page URL (the key
 * into its fragment) so that a reload and the QR code keep them.
 */
function roomFromPage(): { room: string; key: string | undefined } {
  const url = new URL(location.href);
  const existing = url.searchParams.get(ROOM_PARAMETER);
  if (existing) return { room: existing, key: keyFromPage(existing) };
  const room = [...crypto.getRandomValues(new Uint8Array(8))].map((byte) => byte.toString(36).padStart(2, "0")).join("");
  const key = newRoomSecret();
  url.searchParams.set(ROOM_PARAMETER, room);
  url.hash = fragmentWith(url.hash, key);
  history.replaceState(history.state, "", url);
  return { room, key };
}

/** The page URL fragment's key, unless the page URL names another room than `room`. */
function keyFromPage(room: string): string | undefined {
  const pageRoom = new URL(location.href).searchParams.get(ROOM_PARAMETER);
  if (pageRoom !== null && pageRoom !== room) return undefined;
  return new URLSearchParams(location.hash.slice(1)).get(KEY_PARAMETER) ?? undefined;
}

/** The fragment with `key=` set, keeping anything else the page keeps there. */
function fragmentWith(hash: string, key: string): string {
  const fragment = new URLSearchParams(hash.slice(1));
  fragment.set(KEY_PARAMETER, key);
  return fragment.toString();
}

/** This page with the room in its query and the key in its fragment: opening it joins the same chat. */
function joinUrlFor(room: string, key: string | undefined): string {
  const url = new URL(location.href);
  url.searchParams.set(ROOM_PARAMETER, room);
  if (key !== undefined) url.hash = fragmentWith(url.hash, key);
  return url.href;
}

/** The QR code as one SVG path of dark modules, drawn with Lit's svg templates (no markup strings). */
function qrSvg(text: string) {
  const { modules } = createQrCode(text, { errorCorrectionLevel: "M" });
  const quiet = 4;
  const size = modules.size + quiet * 2;
  let path = "";
  for (let row = 0; row < modules.size; row++) {
    for (let column = 0; column < modules.size; ) {
      let run = 0;
      while (column + run < modules.size && modules.get(row, column + run)) run++;
      if (run > 0) path += `M${column + quiet} ${row + quiet}h${run}v1h-${run}z`;
      column += run + 1;
    }
  }
  return html`<svg viewBox="0 0 ${size} ${size}" shape-rendering="crispEdges" aria-hidden="true">
    ${svg`<rect width=${size} height=${size} fill="#fff"></rect><path d=${path} fill="#000"></path>`}
  </svg>`;
}

declare global {
  interface HTMLElementTagNameMap {
    [TAG]: MultiuserChat;
  }
}

if (customElements.get(TAG) === undefined) {
  customElements.define(TAG, MultiuserChat);
} else {
  console.warn(`<${TAG}> is already defined; this copy of the script is not used.`);
}
