import { NICKNAMES } from "./nicknames.js";
import { Model, type StateValue } from "./runtime.js";

/** Posts longer than this are refused, never truncated. */
export const MAX_POST_LENGTH = 1000;
export const DEFAULT_MAX_HISTORY = 100;
/** The scope of the chat's own events (view to model and model to view). */
export const CHAT_SCOPE = "chat";
/** Typed as a post, clears the history for everyone. */
export const RESET_COMMAND = "/reset";

export interface ChatUser {
  /** The client id the reflector gave this window. */
  id: string;
  nickname: string;
}

export interface ChatEntry {
  /** Increases by one per entry and never repeats, even across resets: a stable key for rendering. */
  n: number;
  kind: "post" | "notice";
  /** Replicated time of the event, in milliseconds since the epoch. */
  time: number;
  text: string;
  /** Client id and nickname of a post's author. */
  author?: string;
  nickname?: string;
}

/** Why a post was not accepted. An empty post is simply dropped; a long one is reported to its author. */
export type PostCheck = { ok: true; text: string } | { ok: false; reason: "empty" } | { ok: false; reason: "too-long"; message: string };

/** Line breaks of every kind, with the white space around them. */
const LINE_BREAKS = /\s*[\n\v\f\r\u0085\u2028\u2029]\s*/g;

/**
 * The one rule for post text, used by the view before publishing and by the model on arrival. A post is one line:
 * line breaks become spaces, so that one post can never be drawn as the lines of several, other people's included.
 */
export function checkPost(raw: unknown): PostCheck {
  const text = typeof raw === "string" ? raw.replace(LINE_BREAKS, " ").trim() : "";
  if (text.length === 0) return { ok: false, reason: "empty" };
  if (text.length > MAX_POST_LENGTH) {
    return { ok: false, reason: "too-long", message: `This message has ${text.length} characters; the limit is ${MAX_POST_LENGTH}. Shorten it and send again.` };
  }
  return { ok: true, text };
}

export interface ChatModelOptions {
  maxHistory?: number;
}

/**
 * What the model tells the views in the `chat` scope, by event: each change they show, as it happens. A view reads the
 * whole state when it starts (and after each welcome), and these after that.
 */
export interface ChatNotifications {
  /** A post or notice was added to the history. */
  entry: ChatEntry;
  /** A user came into the room. */
  joined: ChatUser;
  /** A user left the room. */
  left: ChatUser;
  /** A post broke the rules and was dropped: only its author's view shows the message. */
  refused: { client: string; message: string };
}

/**
 * The chat's replicated state: who is here, under which nickname, and the recent history.
 *
 * Views publish `post` in the `chat` scope with `{ text }`; the reflector stamps who sent it. The model tells the
 * views what changed in the same scope (`ChatNotifications`).
 */
export class ChatModel extends Model {
  users: ChatUser[] = [];
  history: ChatEntry[] = [];
  maxHistory = DEFAULT_MAX_HISTORY;
  private nextEntry = 1;

  override init(options?: ChatModelOptions): void {
    if (options?.maxHistory !== undefined) this.maxHistory = options.maxHistory;
    this.subscribe(this.sessionId, "user-enter", "userEnter");
    this.subscribe(this.sessionId, "user-exit", "userExit");
    this.subscribe(CHAT_SCOPE, "post", "post");
  }

  nicknameOf(client: string): string | undefined {
    return this.users.find((user) => user.id === client)?.nickname;
  }

  userEnter(client: string): void {
    if (this.nicknameOf(client) !== undefined) return;
    const user = { id: client, nickname: this.drawNickname() };
    this.users.push(user);
    this.notify("joined", user);
    this.addEntry({ kind: "notice", text: `${user.nickname} joined` });
  }

  userExit(client: string): void {
    const user = this.users.find((present) => present.id === client);
    if (user === undefined) return;
    this.users = this.users.filter((present) => present !== user);
    this.notify("left", user);
    this.addEntry({ kind: "notice", text: `${user.nickname} left` });
  }

  post(data: { text?: unknown } | null, sender?: string): void {
    if (sender === undefined) return;
    const nickname = this.nicknameOf(sender);
    if (nickname === undefined) return;
    const check = checkPost(data?.text);
    if (!check.ok) {
      if (check.reason === "too-long") this.notify("refused", { client: sender, message: check.message });
      return;
    }
    if (check.text === RESET_COMMAND) {
      this.history = [];
      this.addEntry({ kind: "notice", text: `${nickname} reset the history` });
      return;
    }
    this.addEntry({ kind: "post", text: check.text, author: sender, nickname });
  }

  /** A random nickname no present user has; once every name is taken, a name with the lowest free number. */
  private drawNickname(): string {
    const taken = new Set(this.users.map((user) => user.nickname));
    const free = NICKNAMES.filter((name) => !taken.has(name));
    if (free.length > 0) return free[Math.floor(this.random() * free.length)]!;
    const base = NICKNAMES[Math.floor(this.random() * NICKNAMES.length)]!;
    let number = 2;
    while (taken.has(`${base} ${number}`)) number++;
    return `${base} ${number}`;
  }

  private addEntry(fields: Omit<ChatEntry, "n" | "time">): void {
    const entry = { n: this.nextEntry++, time: this.now(), ...fields };
    this.history.push(entry);
    if (this.history.length > this.maxHistory) this.history.splice(0, this.history.length - this.maxHistory);
    this.notify("entry", entry);
  }

  /** Tells the views of a change; the data is the model's own (JSON, as state is), for them to read, never change. */
  private notify<K extends keyof ChatNotifications>(event: K, data: ChatNotifications[K]): void {
    this.publish(CHAT_SCOPE, event, data as StateValue);
  }
}
ChatModel.register("ChatModel");
