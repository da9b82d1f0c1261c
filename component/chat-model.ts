import { NICKNAMES } from "./nicknames.js";
import { Model, type StateValue } from "./runtime.js";

/** Posts longer than this are refused, never truncated. */
export const MAX_POST_LENGTH = 1000;
export const DEFAULT_MAX_HISTORY = 100;
/** The scope of the chat's own events (view to model and model to view). */
export const CHAT_SCOPE = "chat";
/** Typed as a post, clears the history for everyone. */
export const RESET_COMMAND = "/reset";
/** Typed as a post with a name after it (`/nick Ada`), renames its author. */
export const NICK_COMMAND = "/nick";
/** Longest nickname, in characters, after trimming. */
export const MAX_NICKNAME_LENGTH = 32;
/**
 * The colours that tell users apart, by name: each user gets one, spread over the palette and drawn by the
 * replicated generator, so every replica agrees. The element has a shade of each for either colour scheme.
 */
export const USER_COLOURS = ["red", "orange", "green", "teal", "blue", "indigo", "purple", "pink"] as const;
export type UserColour = (typeof USER_COLOURS)[number];

export interface ChatUser {
  /** The client id the reflector gave this window. */
  id: string;
  nickname: string;
  colour: UserColour;
}

export interface ChatEntry {
  /** Increases by one per entry and never repeats, even across resets: a stable key for rendering. */
  n: number;
  kind: "post" | "notice";
  /** Replicated time of the event, in milliseconds since the epoch. */
  time: number;
  text: string;
  /** Client id, nickname and colour of a post's author, as they were when it was sent. */
  author?: string;
  nickname?: string;
  colour?: UserColour;
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
    return {
      ok: false,
      reason: "too-long",
      message: `This message has ${text.length} characters; the limit is ${MAX_POST_LENGTH}. Shorten it and send again.`,
    };
  }
  return { ok: true, text };
}

/** Whether a nickname may be taken, and the name as it is kept (trimmed), or why not. */
export type NicknameCheck = { ok: true; name: string } | { ok: false; message: string };

/** Control characters, line breaks and the characters that reorder text: none of them belongs in a name. */
const NOT_IN_NAMES = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

/** A name's characters as a reader counts them: code points, not UTF-16 units. */
const lengthOf = (text: string) => Array.from(text).length;

/** A name as a user's own, apart from who else is here: 1 to 32 characters after trimming, no control characters. */
function checkNicknameShape(raw: unknown): NicknameCheck {
  const name = typeof raw === "string" ? raw.trim() : "";
  if (name.length === 0) return { ok: false, message: "A nickname needs at least one character." };
  if (lengthOf(name) > MAX_NICKNAME_LENGTH)
    return { ok: false, message: `This nickname has ${lengthOf(name)} characters; the limit is ${MAX_NICKNAME_LENGTH}.` };
  if (NOT_IN_NAMES.test(name)) return { ok: false, message: "A nickname cannot hold control characters or line breaks." };
  return { ok: true, name };
}

/**
 * The one rule for nicknames, used by the view before publishing and by the model on arrival: the shape above, and
 * no other present user's name, ignoring case. `self` is the user renaming, whose own name is no obstacle.
 */
export function checkNickname(raw: unknown, users: readonly ChatUser[], self?: string): NicknameCheck {
  const check = checkNicknameShape(raw);
  if (!check.ok) return check;
  const holder = users.find((user) => user.id !== self && user.nickname.toLowerCase() === check.name.toLowerCase());
  return holder === undefined ? check : { ok: false, message: `${holder.nickname} is already here: choose another nickname.` };
}

/** What a newcomer's hello tells the others of it: the name it chose before, if any. */
export interface ChatProfile {
  name?: string;
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
  /** A user took another nickname. */
  renamed: { id: string; from: string; to: string };
  /** A post or a new name broke the rules and was dropped: only its author's view shows the message. */
  refused: { client: string; message: string };
}

/**
 * The chat's replicated state: who is here, under which nickname, and the recent history.
 *
 * Views publish `post` (`{ text }`) and `rename` (`{ name }`) in the `chat` scope; the reflector stamps who sent
 * them. A newcomer's profile (`ChatProfile`) may name it. The model tells the views what changed in the same scope
 * (`ChatNotifications`).
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
    this.subscribe(CHAT_SCOPE, "rename", "rename");
  }

  nicknameOf(client: string): string | undefined {
    return this.users.find((user) => user.id === client)?.nickname;
  }

  /** A newcomer gets the name its profile asks for (numbered when someone here has it), or a random one. */
  userEnter(client: string, profile?: ChatProfile | null): void {
    if (this.nicknameOf(client) !== undefined) return;
    const asked = checkNicknameShape(profile?.name);
    const user: ChatUser = { id: client, nickname: asked.ok ? this.freeName(asked.name) : this.drawNickname(), colour: this.drawColour() };
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
    const author = this.users.find((user) => user.id === sender);
    if (author === undefined) return;
    const { nickname, colour } = author;
    const check = checkPost(data?.text);
    if (!check.ok) {
      if (check.reason === "too-long") this.notify("refused", { client: author.id, message: check.message });
      return;
    }
    if (check.text === RESET_COMMAND) {
      this.history = [];
      this.addEntry({ kind: "notice", text: `${nickname} reset the history` });
      return;
    }
    if (check.text === NICK_COMMAND || check.text.startsWith(`${NICK_COMMAND} `))
      return this.rename({ name: check.text.slice(NICK_COMMAND.length) }, author.id);
    this.addEntry({ kind: "post", text: check.text, author: author.id, nickname, colour });
  }

  /** A user asks for another nickname: taken if the rule allows it, else refused, and only the user is told why. */
  rename(data: { name?: unknown } | null, sender?: string): void {
    const user = this.users.find((present) => present.id === sender);
    if (user === undefined) return;
    const check = checkNickname(data?.name, this.users, user.id);
    if (!check.ok) return this.notify("refused", { client: user.id, message: check.message });
    if (check.name === user.nickname) return;
    const from = user.nickname;
    user.nickname = check.name;
    this.notify("renamed", { id: user.id, from, to: check.name });
    this.addEntry({ kind: "notice", text: `${from} is now ${check.name}` });
  }

  /** A random nickname no present user has; once every name is taken, a name with the lowest free number. */
  private drawNickname(): string {
    const taken = this.takenNames();
    const free = NICKNAMES.filter((name) => !taken.has(name.toLowerCase()));
    if (free.length > 0) return free[Math.floor(this.random() * free.length)]!;
    return this.freeName(NICKNAMES[Math.floor(this.random() * NICKNAMES.length)]!);
  }

  /** `name` if nobody here has it (ignoring case), else `name 2`, `name 3`…: the lowest free number, within the length. */
  private freeName(name: string): string {
    const taken = this.takenNames();
    if (!taken.has(name.toLowerCase())) return name;
    for (let number = 2; ; number++) {
      const suffix = ` ${number}`;
      const base = Array.from(name)
        .slice(0, MAX_NICKNAME_LENGTH - suffix.length)
        .join("")
        .trimEnd();
      if (!taken.has(`${base}${suffix}`.toLowerCase())) return `${base}${suffix}`;
    }
  }

  private takenNames(): Set<string> {
    return new Set(this.users.map((user) => user.nickname.toLowerCase()));
  }

  /** One of the colours fewest present users have, drawn among them: neighbours in the list rarely share one. */
  private drawColour(): UserColour {
    const counts = USER_COLOURS.map((colour) => this.users.filter((user) => user.colour === colour).length);
    const fewest = Math.min(...counts);
    const candidates = USER_COLOURS.filter((_, index) => counts[index] === fewest);
    return candidates[Math.floor(this.random() * candidates.length)]!;
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
