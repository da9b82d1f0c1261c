import { html, LitElement, nothing } from "lit";
import { repeat } from "lit/directives/repeat.js";
import { CHAT_SCOPE, checkNickname, checkPost, type ChatEntry, type ChatModel, type ChatNotifications, type ChatUser } from "../chat-model.js";
import type { Session, SessionStatus } from "../session.js";
import { styles } from "./multiuser-chat.styles.js";
import { SessionController } from "./session-controller.js";

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
  "multiuser-chat-rename": CustomEvent<Readonly<{ id: string; from: string; to: string; own: boolean }>>;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface HTMLElementEventMap extends MultiuserChatEventMap {}
}

/**
 * `<multiuser-chat>`: a chat that every page showing the same room shares. The element is the view: it renders
 * the replicated `ChatModel` and publishes what the reader types; the reflector puts every post in one order.
 * This module defines the class only; `define.js` registers it as `multiuser-chat`.
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
 * Events describe what happens after the element joined, as the model announces it: the history and users already
 * there at join are not replayed (read `history` and `users`); after a reconnection, what happened meanwhile fires
 * once, in the order it happened.
 *
 * @fires multiuser-chat-message - a post arrived, the reader's own included; `detail`: {n, kind: "post", time,
 *   text, author, nickname, own}
 * @fires multiuser-chat-user-enter - a user joined the room; `detail`: {id, nickname, own}
 * @fires multiuser-chat-user-exit - a user left the room; `detail`: {id, nickname, own}
 * @fires multiuser-chat-status - the connection status changed; `detail`: {status}: `connecting`, `connected`,
 *   `reconnecting` or `offline`
 * @fires multiuser-chat-rename - a user took another nickname; `detail`: {id, from, to, own}
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
 * @csspart rename-button - the "Change nickname" button on the reader's own entry in the list of users
 * @csspart nickname-input - the field that opens in its place, with the accessible name "Nickname"
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
 * @cssprop --multiuser-chat-accent - colour of links, the buttons and focus rings
 * @cssprop --multiuser-chat-accent-contrast - text colour on the accent colour
 * @cssprop --multiuser-chat-border-color - colour of borders
 * @cssprop --multiuser-chat-error-color - colour of the refusal message and the warning
 * @cssprop --multiuser-chat-user-red - the colour of users whose `colour` is `red`; so for `orange`, `green`, `teal`,
 *   `blue`, `indigo`, `purple` and `pink`: `--multiuser-chat-user-orange` and so on. By default each is the hue at
 *   one lightness in OKLCH, at least 4.5:1 against the default background in either colour scheme
 * @cssprop --multiuser-chat-user-orange - see `--multiuser-chat-user-red`
 * @cssprop --multiuser-chat-user-green - see `--multiuser-chat-user-red`
 * @cssprop --multiuser-chat-user-teal - see `--multiuser-chat-user-red`
 * @cssprop --multiuser-chat-user-blue - see `--multiuser-chat-user-red`
 * @cssprop --multiuser-chat-user-indigo - see `--multiuser-chat-user-red`
 * @cssprop --multiuser-chat-user-purple - see `--multiuser-chat-user-red`
 * @cssprop --multiuser-chat-user-pink - see `--multiuser-chat-user-red`
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
    joinUrl: { attribute: "join-url" },
    showQr: { attribute: "show-qr", converter: shown },
    showUsers: { attribute: "show-users", converter: shown },
    refusal: { state: true },
    narrow: { state: true },
    qrOpen: { state: true },
    renaming: { state: true },
  };

  static override styles = styles;

  declare host: string | undefined;
  declare room: string | undefined;
  declare key: string | undefined;
  declare party: string | undefined;
  /** The `join-url` attribute. */
  declare joinUrl: string | undefined;
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
  /** True while the field for the reader's new nickname is open. */
  declare protected renaming: boolean;

  readonly #chat = new SessionController(this, (session) => this.#listen(session));
  #stickToBottom = true;
  /** The element's own width decides the layout, whatever the viewport's. */
  #resizer = new ResizeObserver(() => (this.narrow = this.offsetWidth < 480));

  /** The `join-url` attribute under its first name: an alias of `joinUrl`. */
  get joinPage(): string | undefined {
    return this.joinUrl;
  }
  set joinPage(page: string | undefined) {
    this.joinUrl = page;
  }

  /** The connection status: `connecting`, `connected`, `reconnecting` or `offline`. */
  get status(): SessionStatus {
    return this.#chat.session?.status ?? "connecting";
  }

  /** The users in the room, in the order they joined: frozen copies, with `own` marking this element's user. */
  get users(): readonly Own<ChatUser>[] {
    return Object.freeze((this.model?.users ?? []).map((user) => this.#own(user)));
  }

  /** The history (at most the last 100 posts and notices): frozen copies, with `own` marking this element's posts. */
  get history(): readonly Own<ChatEntry>[] {
    return Object.freeze((this.model?.history ?? []).map((entry) => this.#own(entry)));
  }

  /** The reader's nickname in this room; undefined until the element has joined. */
  get nickname(): string | undefined {
    const self = this.#chat.session?.clientId;
    return self === undefined ? undefined : this.model?.nicknameOf(self);
  }

  /** Read-only view of the replicated model, once the first welcome has arrived. */
  get model(): ChatModel | undefined {
    return this.#chat.session?.model as ChatModel | undefined;
  }

  /**
   * Publishes `text` as this element's user, as the form does: the text is trimmed, and the post waits in the
   * element while it is offline. Returns false when there is nothing to send (blank text) or nowhere to send it:
   * the element could not join, or its session has left (the room's name or key was turned away, or its saved history
   * did not check out). Throws a `RangeError` with the element's message for text over 1,000 characters.
   */
  post(text: string): boolean {
    const check = checkPost(text);
    if (!check.ok) {
      if (check.reason === "too-long") throw new RangeError(check.message);
      return false;
    }
    const { session } = this.#chat;
    if (session === undefined || session.left) return false;
    session.publish(CHAT_SCOPE, "post", { text: check.text });
    return true;
  }

  /**
   * Asks for another nickname for the reader, as `/nick` and the "Change nickname" field do; everyone sees it, with a
   * notice naming both names. Returns false when there is nowhere to send it (see `post`). Throws a `RangeError` with
   * the element's message for a name that is empty, over 32 characters, holds control characters or is the name of
   * someone present (ignoring case). The name is remembered for this reflector host (see `forgetNickname`).
   */
  rename(name: string): boolean {
    const { session } = this.#chat;
    const check = checkNickname(name, this.model?.users ?? [], session?.clientId);
    if (!check.ok) throw new RangeError(check.message);
    if (session === undefined || session.left) return false;
    session.publish(CHAT_SCOPE, "rename", { name: check.name });
    return true;
  }

  /**
   * Forgets the nickname this browser remembers for the reflector host (in `localStorage`, under
   * `multiuser-chat nickname HOST`, the one thing the element stores there): the next room opened there draws a
   * random name. The reader's name in rooms already open stays.
   */
  forgetNickname(): void {
    this.#chat.forgetNickname();
  }

  override connectedCallback(): void {
    super.connectedCallback();
    this.#resizer.observe(this);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#resizer.disconnect();
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
    const log = this.#logElement;
    this.#stickToBottom = !log || log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  }

  protected override updated(): void {
    const log = this.#logElement;
    if (log && this.#stickToBottom) log.scrollTop = log.scrollHeight;
  }

  // No header or aside elements: landmarks would compete with the page's own.
  protected override render() {
    const alert = this.#chat.failure ?? this.refusal ?? this.#chat.notice;
    return html`
      <div part="header">
        <h2>Chat</h2>
        <span part="status" role="status">${statusText[this.status]}</span>
      </div>
      <div class=${this.narrow ? "body narrow" : "body"}>
        <div part="log" role="log" aria-label="Chat messages" tabindex="0">
          <ol>
            ${repeat(
              this.model?.history ?? [],
              (entry) => entry.n,
              (entry) => this.#entryTemplate(entry),
            )}
            ${this.#pendingTemplates()}
          </ol>
        </div>
        ${this.showUsers || this.showQr ? this.#sideTemplate() : nothing}
      </div>
      <form part="form" @submit=${this.#send}>
        <input part="input" name="message" aria-label="Message" autocomplete="off" @input=${this.#clearRefusal} />
        <button part="button" type="submit">Send</button>
      </form>
      <p part="error" role="alert" ?hidden=${alert === undefined}>${alert ?? nothing}</p>
      ${this.#warningTemplate()}
    `;
  }

  #entryTemplate(entry: ChatEntry) {
    const time = html`<time datetime=${new Date(entry.time).toISOString()}>${timeFormat.format(entry.time)}</time>`;
    if (entry.kind === "notice") return html`<li part="notice">${time} ${entry.text}</li>`;
    return html`<li part="message">${time} <span class="nickname ${entry.colour ?? ""}">${entry.nickname}</span>: ${entry.text}</li>`;
  }

  /** The reader's own posts that wait for the connection, shown where they will appear. */
  #pendingTemplates() {
    const session = this.#chat.session;
    const self = this.model?.users.find((user) => user.id === session?.clientId);
    return (session?.pending ?? [])
      .filter((pending) => pending.scope === CHAT_SCOPE && pending.event === "post")
      .map(
        (pending) =>
          html`<li part="pending"><span class="nickname ${self?.colour ?? ""}">${self?.nickname ?? "You"}</span>: ${(pending.data as { text?: string } | null)?.text ?? ""} <em>(sending…)</em></li>`,
      );
  }

  /**
   * The users and the QR code: beside the log, or under it in the narrow layout, where the QR code folds away behind
   * a disclosure button that it directly follows.
   */
  #sideTemplate() {
    return html`
      <div class="side" @keydown=${this.#closeQr}>
        ${this.showUsers ? this.#usersTemplate() : nothing}
        ${this.showQr ? this.#qrTemplate() : nothing}
      </div>
    `;
  }

  #usersTemplate() {
    const users = this.model?.users ?? [];
    const self = this.#chat.session?.clientId;
    return html`
      <h2>Users (${users.length})</h2>
      <ul part="users" role="list" aria-label="Users">
        ${users.map((user) =>
          user.id === self ? this.#ownUserTemplate(user) : html`<li part="user"><span class="nickname ${user.colour}">${user.nickname}</span></li>`,
        )}
      </ul>
    `;
  }

  /**
   * The reader's own entry: their name, "(you)" and a pencil button named "Change nickname" (no text of its own, so
   * the entry still reads as the others do), or the field that replaces them while the reader types a new name.
   */
  #ownUserTemplate(user: ChatUser) {
    if (this.renaming) {
      return html`<li part="user"><input part="nickname-input" aria-label="Nickname" .value=${user.nickname} @keydown=${this.#renameKey} /></li>`;
    }
    return html`
      <li part="user">
        <span class="nickname ${user.colour}">${user.nickname}</span> (you)
        <button part="rename-button" aria-label="Change nickname" @click=${this.#openRename}>
          <svg viewBox="0 0 16 16" aria-hidden="true"><path d="M11.5 1.5l3 3-9 9H2.5v-3z"></path></svg>
        </button>
      </li>
    `;
  }

  #qrTemplate() {
    const { joinLink, joinQrCode } = this.#chat;
    const folded = this.narrow && !this.qrOpen;
    return html`
      ${this.narrow ? html`<button part="qr-button" aria-expanded=${!folded} @click=${() => (this.qrOpen = folded)}>QR code</button>` : nothing}
      <figure part="qr" ?hidden=${folded}>
        <div role="img" aria-label="QR code to join this chat">${joinQrCode}</div>
        <figcaption><a href=${joinLink}>${joinLink}</a></figcaption>
      </figure>
    `;
  }

  #warningTemplate() {
    const divergence = this.#chat.session?.divergence;
    if (divergence === undefined) return nothing;
    const text = divergence.outvoted
      ? `This copy of the chat no longer matches the others (after event ${divergence.seq}), so what you see may be wrong. Reload the page to get the shared version.`
      : `Another copy of this chat stopped matching after event ${divergence.seq}. Yours matches the majority.`;
    return html`<p part="warning" role="alert">${text}</p>`;
  }

  /** Escape closes the unfolded QR code and gives the focus back to its button. */
  #closeQr(event: KeyboardEvent): void {
    if (event.key === "Escape" && this.qrOpen) {
      this.qrOpen = false;
      (event.currentTarget as HTMLElement).querySelector<HTMLElement>('[part="qr-button"]')?.focus();
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
      // Text that was not sent stays in the field, so nothing typed is lost.
      if (this.post(input.value)) input.value = "";
    } catch (error) {
      this.refusal = (error as Error).message;
    }
  }

  #clearRefusal(): void {
    this.refusal = undefined;
  }

  async #openRename(): Promise<void> {
    this.renaming = true;
    await this.updateComplete;
    const field = this.renderRoot.querySelector<HTMLInputElement>('[part="nickname-input"]');
    field?.focus();
    field?.select();
  }

  /** Enter saves the name (or says why not, keeping the field open); Escape closes the field; either returns focus. */
  async #renameKey(event: KeyboardEvent): Promise<void> {
    if (event.key !== "Enter" && event.key !== "Escape") return;
    event.preventDefault();
    if (event.key === "Enter") {
      this.refusal = undefined;
      try {
        this.rename((event.currentTarget as HTMLInputElement).value);
      } catch (error) {
        this.refusal = (error as Error).message;
        return;
      }
    }
    this.renaming = false;
    await this.updateComplete;
    this.renderRoot.querySelector<HTMLElement>('[part="rename-button"]')?.focus();
  }

  /**
   * Tells the page what the model says changed, as it changes, and re-renders. What the model held when the session
   * caught up (at join, or back as a new user) is no news: the session passes on no notifications of it, and the
   * render after its welcome reads the whole state.
   */
  #listen(session: Session): void {
    const on = <K extends keyof ChatNotifications>(event: K, handler: (data: ChatNotifications[K]) => void) =>
      session.subscribe(CHAT_SCOPE, event, (data) => {
        handler(data as ChatNotifications[K]);
        this.requestUpdate();
      });
    on("entry", (entry) => {
      if (entry.kind === "post") this.#emit("message", this.#own(entry));
    });
    on("joined", (user) => this.#emit("user-enter", this.#own(user)));
    on("left", (user) => this.#emit("user-exit", this.#own(user)));
    on("renamed", ({ id, from, to }) => {
      const own = id === session.clientId;
      // The name the reader chose, by the field, `rename()` or `/nick`, is the one their next visit asks for.
      if (own) this.#chat.rememberNickname(to);
      this.#emit("rename", Object.freeze({ id, from, to, own }));
    });
    on("refused", ({ client, message }) => {
      if (client === session.clientId) this.refusal = message;
    });
    session.addEventListener("status", () => this.#emit("status", { status: session.status }));
  }

  /** A frozen copy of a user or an entry of the model, with `own` set when it is this element's user or post. */
  #own<T extends ChatUser | ChatEntry>(item: T): Own<T> {
    const self = this.#chat.session?.clientId;
    return Object.freeze({ ...item, own: self !== undefined && ((item as ChatEntry).author ?? (item as ChatUser).id) === self }) as Own<T>;
  }

  #emit(type: string, detail: object): void {
    this.dispatchEvent(new CustomEvent(`multiuser-chat-${type}`, { detail, bubbles: true, composed: true }));
  }
}

const statusText: Record<SessionStatus, string> = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
