import { css, html, LitElement, nothing, type PropertyValues } from "lit";
import { repeat } from "lit/directives/repeat.js";
import { create as createQrCode } from "qrcode/lib/core/qrcode.js";
import { CHAT_SCOPE, ChatModel, checkPost, type ChatEntry, type ChatUser } from "./chat-model.js";
import { checkRoomId } from "../common/protocol.js";
import { newRoomSecret } from "./room-key.js";
import { Session, type SessionStatus } from "./session.js";

const TAG = "multiuser-chat";
const ROOM_PARAMETER = "room";
/** In the URL fragment, which browsers never send to a server. */
const KEY_PARAMETER = "key";
/** `show-qr` and `show-users` are on unless set to `false`, as `draggable` and `spellcheck` are. */
const shown = { fromAttribute: (value: string | null) => value !== "false" };

/** A user or an entry as the element hands it to the page: a frozen copy, `own` when it is this element's. */
export type Own<T> = Readonly<T & { own: boolean }>;

/** The element's events, for `addEventListener` with types. */
export interface MultiuserChatEventMap {
  "multiuser-chat-message": CustomEvent<Own<ChatEntry>>;
  "multiuser-chat-user-enter": CustomEvent<Own<ChatUser>>;
  "multiuser-chat-user-exit": CustomEvent<Own<ChatUser>>;
  "multiuser-chat-status": CustomEvent<{ status: SessionStatus }>;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface HTMLElementEventMap extends MultiuserChatEventMap {}
}

/**
 * Where this script was served from: by default the reflector is the same host. The classic-script build reads it
 * from `document.currentScript` instead (scripts/build.mjs).
 */
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
 * @attr join-url - the page the QR code and the join link open, with the room and the key added; by default this
 *   page. Set it where a phone cannot open this page's address, as in a CodePen: the deployment's demo page will do
 * @attr show-qr - `false` hides the QR code and the join link; shown by default (any other value, or none, shows it)
 * @attr show-users - `false` hides the list of users; shown by default (any other value, or none, shows it)
 *
 * Below 480 px of the element's own width (not the viewport's) the users move under the log and the QR code folds
 * away behind a "QR code" disclosure button; Escape closes it again and returns focus to the button.
 * Colours follow `prefers-color-scheme` (dark defaults for the same custom properties). Nothing moves (no animation,
 * no smooth scrolling), so `prefers-reduced-motion: reduce` needs nothing turned off.
 *
 * Events describe what happens after the element joined: the history and users already there at join are not
 * replayed (read `history` and `users`); after a reconnection, what happened meanwhile fires once, in a batch.
 *
 * @fires multiuser-chat-message - a post arrived, the reader's own included; `detail`: {n, kind: "post", time,
 *   text, author, nickname, own}
 * @fires multiuser-chat-user-enter - a user joined the room; `detail`: {id, nickname, own}
 * @fires multiuser-chat-user-exit - a user left the room; `detail`: {id, nickname, own}
 * @fires multiuser-chat-status - the connection status changed; `detail`: {status}: `connecting`, `connected`,
 *   `reconnecting` or `offline`
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
 * @csspart qr-button - the button that shows and hides the QR code in the narrow layout
 * @csspart form - the message field and the Send button
 * @csspart input - the message field
 * @csspart button - the Send button
 * @csspart error - the message shown when a post is refused
 *
 * @cssprop --multiuser-chat-background - background of the element
 * @cssprop --multiuser-chat-color - text colour
 * @cssprop --multiuser-chat-muted-color - colour of notices, times, posts not sent yet and the status
 * @cssprop --multiuser-chat-accent - colour of nicknames, links, the buttons and focus rings
 * @cssprop --multiuser-chat-accent-contrast - text colour on the accent colour
 * @cssprop --multiuser-chat-border-color - colour of borders
 * @cssprop --multiuser-chat-error-color - colour of the refusal message and the warning
 * @cssprop --multiuser-chat-qr-color - colour of the QR code's modules (keep it dark on a light background: not
 *   every phone reads an inverted code); black by default, in both schemes
 * @cssprop --multiuser-chat-qr-background - background of the QR code; white by default, in both schemes
 * @cssprop --multiuser-chat-font-family - font of the whole element
 * @cssprop --multiuser-chat-font-size - base font size
 * @cssprop --multiuser-chat-radius - corner radius
 * @cssprop --multiuser-chat-spacing - the base unit of padding and gaps
 * @cssprop --multiuser-chat-height - height of the element
 */
export class MultiuserChat extends LitElement {
  static override properties = {
    host: {},
    room: {},
    key: {},
    party: {},
    joinPage: { attribute: "join-url" },
    showQr: { attribute: "show-qr", converter: shown },
    showUsers: { attribute: "show-users", converter: shown },
    refusal: { state: true },
    failure: { state: true },
    notice: { state: true },
    narrow: { state: true },
    qrOpen: { state: true },
  };

  // Colours go through private properties (--_bg, --_fg, --_m muted, --_a accent, --_on text on the accent, --_l
  // line, --_e error; --_b border, --_s spacing, --_r radius): the dark defaults replace the light ones, and the
  // page's --multiuser-chat-* properties win in both schemes. scripts/build.mjs minifies this CSS in the bundles.
  static override styles = css`
    :host {
      --_s: var(--multiuser-chat-spacing, 0.5rem);
      --_r: var(--multiuser-chat-radius, 0.5rem);
      --_bg: var(--multiuser-chat-background, #fff);
      --_fg: var(--multiuser-chat-color, #1c1f24);
      --_m: var(--multiuser-chat-muted-color, #5b6270);
      --_a: var(--multiuser-chat-accent, #2458c6);
      --_on: var(--multiuser-chat-accent-contrast, #fff);
      --_l: var(--multiuser-chat-border-color, #c8ccd4);
      --_e: var(--multiuser-chat-error-color, #b3261e);
      --_b: 1px solid var(--_l);
      color-scheme: light dark;
      display: flex;
      flex-direction: column;
      box-sizing: border-box;
      height: var(--multiuser-chat-height, 28rem);
      background: var(--_bg);
      color: var(--_fg);
      font-family: var(--multiuser-chat-font-family, system-ui, sans-serif);
      font-size: var(--multiuser-chat-font-size, 1rem);
      border: var(--_b);
      border-radius: var(--_r);
      overflow: hidden;
    }
    @media (prefers-color-scheme: dark) {
      :host {
        --_bg: var(--multiuser-chat-background, #17191d);
        --_fg: var(--multiuser-chat-color, #e4e7ec);
        --_m: var(--multiuser-chat-muted-color, #a3aab6);
        --_a: var(--multiuser-chat-accent, #8ab4ff);
        --_on: var(--multiuser-chat-accent-contrast, #0d1526);
        --_l: var(--multiuser-chat-border-color, #3b414b);
        --_e: var(--multiuser-chat-error-color, #ff8a80);
      }
    }
    :host([hidden]),
    [hidden] {
      display: none !important;
    }
    [part="header"] {
      display: flex;
      justify-content: space-between;
      align-items: baseline;
      padding: var(--_s) calc(var(--_s) * 2);
      border-bottom: var(--_b);
    }
    h2 {
      margin: 0;
      font-size: 1em;
    }
    [part="status"],
    [part="notice"],
    [part="pending"],
    time {
      color: var(--_m);
    }
    [part="status"],
    time {
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
      padding: var(--_s) calc(var(--_s) * 2);
    }
    :focus-visible {
      outline: 2px solid var(--_a);
      outline-offset: 2px;
    }
    ol,
    ul {
      list-style: none;
      margin: 0;
      padding: 0;
    }
    ol > li {
      margin: calc(var(--_s) / 2) 0;
      white-space: pre-wrap;
    }
    li,
    figure {
      overflow-wrap: anywhere;
    }
    [part="notice"] {
      font-style: italic;
    }
    .nickname,
    a {
      color: var(--_a);
    }
    .nickname {
      font-weight: 600;
    }
    .side {
      width: 12rem;
      display: flex;
      flex-direction: column;
      gap: var(--_s);
      padding: var(--_s);
      border-inline-start: var(--_b);
      overflow-y: auto;
    }
    .narrow {
      flex-direction: column;
    }
    .narrow .side {
      width: auto;
      flex-flow: row wrap;
      align-items: center;
      border: 0;
      border-top: var(--_b);
    }
    .narrow ul {
      display: flex;
      flex-wrap: wrap;
      gap: 0 var(--_s);
      flex: 1;
    }
    .narrow figure {
      flex-basis: 100%;
    }
    figure {
      margin: 0;
      text-align: center;
      font-size: 0.75em;
    }
    svg {
      width: 100%;
      max-width: 10rem;
      background: var(--multiuser-chat-qr-background, #fff);
      fill: var(--multiuser-chat-qr-color, #000);
    }
    form {
      display: flex;
      gap: var(--_s);
      padding: var(--_s);
      border-top: var(--_b);
    }
    input,
    button {
      font: inherit;
      padding: var(--_s) calc(var(--_s) * 2);
      border: var(--_b);
      border-radius: var(--_r);
      background: none;
      color: inherit;
    }
    input {
      flex: 1;
      min-width: 0;
      padding-inline: var(--_s);
    }
    button {
      border-color: var(--_a);
      background: var(--_a);
      color: var(--_on);
    }
    [part="qr-button"] {
      background: none;
      color: var(--_a);
    }
    [role="alert"] {
      margin: 0;
      padding: 0 var(--_s) var(--_s);
      color: var(--_e);
    }
  `;

  declare host: string | undefined;
  declare room: string | undefined;
  declare key: string | undefined;
  declare party: string | undefined;
  /** The `join-url` attribute. */
  declare joinPage: string | undefined;
  /** Whether the QR code and the join link show; the attribute `show-qr="false"` hides them. */
  showQr = true;
  /** Whether the list of users shows; the attribute `show-users="false"` hides it. */
  showUsers = true;
  /** Why the reader's last post was not sent, shown until they edit or send again. */
  declare protected refusal: string | undefined;
  /** True while the element is narrower than 480 px: the QR code folds away behind a button. */
  declare protected narrow: boolean;
  /** True while the folded QR code is shown. */
  declare protected qrOpen: boolean;

  #session: Session | undefined;
  /** Encoded once per join URL: the QR code does not change while the room stays the same. */
  #qrCode: ReturnType<typeof qrSvg> | typeof nothing = nothing;
  /** The attribute values of the current session, so changing any of them joins anew. */
  #joinedWith: string | undefined;
  /** Why the element could not join: a key that is not valid, or one that does not open this room. */
  declare protected failure: string | undefined;
  /** Something the reader should know that does not stop the chat: a link that led to a room nobody used. */
  declare protected notice: string | undefined;
  #joinUrl = "";
  /** The last `join-url` shown, so that one that is ignored is warned of once. */
  #shownJoinPage: string | undefined;
  /** The room and key of the current session, and whether they came from a link (the page URL) rather than a new room. */
  #joined: { room: string; key: string | undefined; fromLink: boolean } | undefined;
  #stickToBottom = true;
  /** The element's own width decides the layout, whatever the viewport's. */
  #resizer = new ResizeObserver(() => (this.narrow = this.offsetWidth < 480));

  override connectedCallback(): void {
    super.connectedCallback();
    this.#resizer.observe(this);
    this.#join();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#resizer.disconnect();
    this.#leave();
  }

  /** The connection status: `connecting`, `connected`, `reconnecting` or `offline`. */
  get status(): SessionStatus {
    return this.#session?.status ?? "connecting";
  }

  /** The users in the room, in the order they joined: frozen copies, with `own` marking this element's user. */
  get users(): readonly Own<ChatUser>[] {
    return Object.freeze((this.model?.users ?? []).map((user) => this.#own(user)));
  }

  /** The history (at most the last 100 posts and notices): frozen copies, with `own` marking this element's posts. */
  get history(): readonly Own<ChatEntry>[] {
    return Object.freeze((this.model?.history ?? []).map((entry) => this.#own(entry)));
  }

  /**
   * Publishes `text` as this element's user, as the form does: the text is trimmed, and the post waits in the
   * element while it is offline. Returns false when there is nothing to send (blank text, or the element could
   * not join); throws a `RangeError` with the element's message for text over 1,000 characters.
   */
  post(text: string): boolean {
    const check = checkPost(text);
    if (!check.ok) {
      if (check.reason === "too-long") throw new RangeError(check.message);
      return false;
    }
    this.#session?.publish(CHAT_SCOPE, "post", { text: check.text });
    return !!this.#session;
  }

  /** Read-only view of the replicated model, once the first welcome has arrived. */
  get model(): ChatModel | undefined {
    return this.#session?.model as ChatModel | undefined;
  }

  /**
   * Renders at most once per animation frame, however many events arrive in between: a burst of posts costs a
   * render per frame, not one per post.
   */
  protected override async scheduleUpdate(): Promise<void> {
    await new Promise((resolve) => requestAnimationFrame(resolve));
    super.scheduleUpdate();
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (this.isConnected && this.#joinedWith !== undefined && this.#joinedWith !== this.#joinAttributes()) this.#join();
    // Where the QR code points is no reason to join anew: the others would see this user leave and come back.
    else if (changed.has("joinPage") && this.#joined !== undefined) this.#showJoinUrl(this.#joined);
    const log = this.#logElement;
    this.#stickToBottom = !log || log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  }

  protected override updated(): void {
    const log = this.#logElement;
    if (log && this.#stickToBottom) log.scrollTop = log.scrollHeight;
  }

  // Templates and styles are written without indentation: the bundle keeps every character of a template.
  // No header or aside elements: landmarks would compete with the page's own.
  protected override render() {
    return html`<div part="header"><h2>Chat</h2><span part="status" role="status">${statusText[this.status]}</span></div>
<div class=${this.narrow ? "body narrow" : "body"}><div part="log" role="log" aria-label="Chat messages" tabindex="0"><ol>
${repeat(this.model?.history ?? [], (entry) => entry.n, (entry) => this.#entryTemplate(entry))}
${this.#pendingTemplates()}
</ol></div>${this.showUsers || this.showQr ? this.#sideTemplate() : nothing}</div>
<form part="form" @submit=${this.#send}><input part="input" name="message" aria-label="Message" autocomplete="off" @input=${this.#clearRefusal} />
<button part="button" type="submit">Send</button></form>
<p part="error" role="alert" ?hidden=${(this.failure ?? this.refusal ?? this.notice) === undefined}>${this.failure ?? this.refusal ?? this.notice ?? nothing}</p>
${this.#warningTemplate()}`;
  }

  /** The reader's own posts that wait for the connection, shown where they will appear. */
  #pendingTemplates() {
    const nickname = this.model?.nicknameOf(this.#session?.clientId ?? "") ?? "You";
    return (this.#session?.pending ?? [])
      .filter((pending) => pending.scope === CHAT_SCOPE && pending.event === "post")
      .map((pending) => html`<li part="pending"><span class="nickname">${nickname}</span>: ${(pending.data as { text?: string } | null)?.text ?? ""} <em>(sending…)</em></li>`);
  }

  #warningTemplate() {
    const divergence = this.#session?.divergence;
    if (divergence === undefined) return nothing;
    const text = divergence.outvoted
      ? `This copy of the chat no longer matches the others (after event ${divergence.seq}), so what you see may be wrong. Reload the page to get the shared version.`
      : `Another copy of this chat stopped matching after event ${divergence.seq}. Yours matches the majority.`;
    return html`<p part="warning" role="alert">${text}</p>`;
  }

  #entryTemplate(entry: ChatEntry) {
    const time = html`<time datetime=${new Date(entry.time).toISOString()}>${timeFormat.format(entry.time)}</time>`;
    if (entry.kind === "notice") return html`<li part="notice">${time} ${entry.text}</li>`;
    return html`<li part="message">${time} <span class="nickname">${entry.nickname}</span>: ${entry.text}</li>`;
  }

  /**
   * The users and the QR code: beside the log, or under it in the narrow layout, where the QR code folds away behind
   * a disclosure button that it directly follows.
   */
  #sideTemplate() {
    const { model, narrow, showUsers } = this;
    const self = this.#session?.clientId;
    const folded = narrow && !this.qrOpen;
    return html`<div class="side" @keydown=${this.#closeQr}>${showUsers
      ? html`<h2>Users (${model?.users.length ?? 0})</h2><ul part="users" role="list" aria-label="Users">
${(model?.users ?? []).map((user) => html`<li part="user">${user.nickname}${user.id === self ? " (you)" : ""}</li>`)}</ul>`
      : nothing}${this.showQr
      ? html`${narrow ? html`<button part="qr-button" aria-expanded=${!folded} @click=${() => (this.qrOpen = folded)}>QR code</button>` : nothing}
<figure part="qr" ?hidden=${folded}><div role="img" aria-label="QR code to join this chat">${this.#qrCode}</div>
<figcaption><a href=${this.#joinUrl}>${this.#joinUrl}</a></figcaption></figure>`
      : nothing}</div>`;
  }

  /** Escape closes the unfolded QR code and gives the focus back to its button. */
  #closeQr(event: KeyboardEvent): void {
    if (event.key === "Escape" && this.qrOpen) {
      this.qrOpen = false;
      (event.currentTarget as HTMLElement).querySelector("button")?.focus();
    }
  }

  get #logElement() {
    return this.renderRoot.querySelector<HTMLElement>("[part=log]");
  }

  #send(event: SubmitEvent): void {
    event.preventDefault();
    const input = (event.currentTarget as HTMLFormElement).elements.namedItem("message") as HTMLInputElement;
    this.refusal = undefined;
    try {
      if (this.post(input.value)) input.value = "";
    } catch (error) {
      // A refused post stays in the field so nothing typed is lost.
      this.refusal = (error as Error).message;
    }
  }

  #clearRefusal(): void {
    this.refusal = undefined;
  }

  #join(): void {
    this.#leave();
    const joined = (this.#joined = this.room === undefined ? roomFromPage() : { room: this.room, key: this.key ?? keyFromPage(this.room), fromLink: false });
    const { room, key } = joined;
    this.#showJoinUrl(this.#joined);
    this.#joinedWith = this.#joinAttributes();
    this.failure = undefined;
    this.notice = undefined;
    const badRoom = checkRoomId(room);
    if (badRoom !== undefined) {
      this.failure = `This room name cannot be used: ${badRoom}.`;
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
      return;
    }
    this.#watch(session, joined.fromLink);
    this.#session = session;
    this.requestUpdate();
  }

  /** Re-renders on every change of the session, and shows what keeps it from working. */
  #watch(session: Session, fromLink: boolean): void {
    const update = () => this.requestUpdate();
    for (const type of ["welcome", "status", "update", "pending", "divergence"]) session.addEventListener(type, update);
    session.addEventListener("status", () => this.#emit("status", { status: session.status }));
    // The page hears of changes to the model, found by comparing it with what it was: the view never changes it.
    let seen = 0; // the highest entry number the page has heard of
    let present: ChatUser[] | undefined; // unset until the first welcome: what was there at join is not news
    const missing = (users: ChatUser[], from: ChatUser[], type: string) => {
      for (const user of users) if (!from.some((other) => other.id === user.id)) this.#emit(type, this.#own(user));
    };
    const observe = () => {
      const model = session.model as ChatModel;
      if (present !== undefined) {
        missing(model.users, present, "user-enter");
        for (const entry of model.history) if (entry.n > seen && entry.kind === "post") this.#emit("message", this.#own(entry));
        missing(present, model.users, "user-exit");
      }
      seen = model.history.at(-1)?.n ?? seen;
      present = [...model.users];
    };
    session.addEventListener("welcome", observe);
    session.addEventListener("update", observe);
    session.addEventListener("reflector-error", (event) => {
      const { code, message } = (event as CustomEvent<{ code: string; message: string }>).detail;
      // While the room is full or busy the session keeps trying, and the welcome clears this. After bad-room or
      // not-member it has left: trying again could not help.
      if (code === "room-full") this.failure = "This chat is full right now. Waiting for a place…";
      else if (code === "busy") this.failure = "This chat is busy right now. Trying again…";
      else if (code === "bad-room") this.failure = `The server does not take this room name: ${message}.`;
      else if (code === "not-member") this.failure = "The server turned this page away: it could not check this link's key. Reload the page to try again.";
    });
    session.addEventListener("welcome", () => (this.failure = undefined));
    // A room's address is its name and its key: a link with a key that is not whole leads to a room of its own,
    // which nobody else has used. Said while the reader is alone there.
    const checkNewRoom = () => {
      const alone = (session.model as ChatModel).users.length === 1;
      this.notice = fromLink && session.newRoom && alone ? "Nobody has been in this chat with this link before. If someone sent you the link, check that it was copied whole, with the part after #." : undefined;
    };
    session.addEventListener("welcome", checkNewRoom);
    session.addEventListener("update", checkNewRoom);
    session.addEventListener("bad-snapshot", () => (this.failure = "This chat's saved history does not match what its members agreed on, so it is not shown. Reload the page to try again."));
    session.subscribe(CHAT_SCOPE, "refused", (data) => {
      const { client, message } = data as { client: string; message: string };
      if (client === session.clientId) this.refusal = message;
    });
  }

  /** A frozen copy of a user or an entry of the model, with `own` set when it is this element's user or post. */
  #own<T extends ChatUser | ChatEntry>(item: T): Own<T> {
    const self = this.#session?.clientId;
    return Object.freeze({ ...item, own: self !== undefined && ((item as ChatEntry).author ?? (item as ChatUser).id) === self }) as Own<T>;
  }

  #emit(type: string, detail: object): void {
    this.dispatchEvent(new CustomEvent(`multiuser-chat-${type}`, { detail, bubbles: true, composed: true }));
  }

  /** The attributes that decide what to join, as one string to compare. */
  #joinAttributes(): string {
    return JSON.stringify([this.host, this.room, this.key, this.party]);
  }

  /** The join link and its QR code: the `join-url` page (by default this one) with the room and key. */
  #showJoinUrl({ room, key }: { room: string; key: string | undefined }): void {
    const page = this.joinPage;
    if (page !== undefined && !isHttpPage(page) && page !== this.#shownJoinPage) {
      console.warn(`<multiuser-chat>: join-url must be an http or https address; ignoring ${JSON.stringify(page)}`);
    }
    this.#shownJoinPage = page;
    this.#joinUrl = joinUrlFor(page !== undefined && isHttpPage(page) ? page : undefined, room, key);
    this.#qrCode = qrSvg(this.#joinUrl);
  }

  #leave(): void {
    this.#session?.leave();
    this.#session = undefined;
    this.#joinedWith = undefined;
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
function roomFromPage(): { room: string; key: string | undefined; fromLink: boolean } {
  const url = new URL(location.href);
  const existing = url.searchParams.get(ROOM_PARAMETER);
  if (existing) return { room: existing, key: keyFromPage(existing), fromLink: true };
  const room = [...crypto.getRandomValues(new Uint8Array(8))].map((byte) => byte.toString(36).padStart(2, "0")).join("");
  const key = newRoomSecret();
  url.searchParams.set(ROOM_PARAMETER, room);
  url.hash = fragmentWith(url.hash, key);
  history.replaceState(history.state, "", url);
  return { room, key, fromLink: false };
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

/** Whether `page`, relative to this page, is an http or https address: a `join-url` must be (not `javascript:`, say). */
function isHttpPage(page: string): boolean {
  return URL.canParse(page, location.href) && ["http:", "https:"].includes(new URL(page, location.href).protocol);
}

/**
 * `page` (relative to this page; this page when none is given) with the room in its query and the key in its
 * fragment: opening it joins the same chat.
 */
function joinUrlFor(page: string | undefined, room: string, key: string | undefined): string {
  const url = new URL(page ?? location.href, location.href);
  url.searchParams.set(ROOM_PARAMETER, room);
  if (key !== undefined) url.hash = fragmentWith(url.hash, key);
  return url.href;
}

/** The QR code as one SVG path of dark modules, drawn with a Lit template (no markup strings); colours come from CSS. */
function qrSvg(text: string) {
  // One segment in byte mode: a URL needs no other, and the build leaves qrcode's other modes out of the bundle.
  const { modules } = createQrCode([{ data: new TextEncoder().encode(text), mode: "byte" }], { errorCorrectionLevel: "M" });
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
  return html`<svg viewBox="0 0 ${size} ${size}" shape-rendering="crispEdges" aria-hidden="true"><path d=${path}></path></svg>`;
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
