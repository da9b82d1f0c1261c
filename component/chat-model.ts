import { NICKNAMES } from "./nicknames.js";
import { Model } from "./runtime.js";

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
 * The chat's replicated state: who is here, under which nickname, and the recent history.
 *
 * Views publish `post` in the `chat` scope with `{ text }`; the reflector stamps who sent it. The model publishes
 * `users`, `history` and `refused` (`{ client, message }`, for a post that broke the rules) in the same scope.
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
    const nickname = this.drawNickname();
    this.users.push({ id: client, nickname });
    this.addEntry({ kind: "notice", text: `${nickname} joined` });
    this.publish(CHAT_SCOPE, "users");
  }

  userExit(client: string): void {
    const nickname = this.nicknameOf(client);
    if (nickname === undefined) return;
    this.users = this.users.filter((user) => user.id !== client);
    this.addEntry({ kind: "notice", text: `${nickname} left` });
    this.publish(CHAT_SCOPE, "users");
  }

  post(data: { text?: unknown } | null, sender?: string): void {
    if (sender === undefined) return;
    const nickname = this.nicknameOf(sender);
    if (nickname === undefined) return;
    const check = checkPost(data?.text);
    if (!check.ok) {
      if (check.reason === "too-long") this.publish(CHAT_SCOPE, "refused", { client: sender, message: check.message });
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

  private addEntry(entry: Omit<ChatEntry, "n" | "time">): void {
    this.history.push({ n: this.nextEntry++, time: this.now(), ...entry });
    if (this.history.length > this.maxHistory) this.history.splice(0, this.history.length - this.maxHistory);
    this.publish(CHAT_SCOPE, "history");
  }
}
ChatModel.register("ChatModel");
