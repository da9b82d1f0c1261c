import type { ReactiveController, ReactiveControllerHost } from "lit";
import { checkRoomId } from "../../common/protocol.js";
import { ChatModel } from "../chat-model.js";
import { newRoomSecret } from "../room-key.js";
import { Session } from "../session.js";
import { joinPage, joinUrlFor, newRoomName, roomToJoin, type RoomToJoin } from "./join-link.js";
import { qrCode } from "./qr-code.js";
import { forgetName, rememberedName, rememberName } from "./remembered-name.js";

/**
 * Where this script was served from: by default the reflector is the same host. The classic-script build reads it
 * from `document.currentScript` instead (scripts/build.mjs), which is set only while the script first runs.
 */
const scriptUrl = new URL(import.meta.url);

/**
 * What the element says when the reflector turns it away. While the room is full or busy the session keeps trying,
 * and its welcome clears this; after `not-member` (and `bad-room`) it leaves: trying again could not help.
 */
const turnedAway: Record<string, string> = {
  "room-full": "This chat is full right now. Waiting for a place…",
  busy: "This chat is busy right now. Trying again…",
  "not-member": "The server turned this page away: it could not check this link's key. Reload the page to try again.",
};

/** The element's attributes that say what to join and where the join link leads. */
export interface SessionControllerHost extends ReactiveControllerHost {
  host?: string;
  room?: string;
  key?: string;
  party?: string;
  joinUrl?: string;
}

/**
 * The element's session, from its attributes and its page's address: joined when the element connects, left when
 * it disconnects, joined anew when an attribute that names the room changes. It also says what keeps the session
 * from working, and the link that joins the same room, with its QR code.
 */
export class SessionController implements ReactiveController {
  session: Session | undefined;
  /** Why the session cannot work, or works only once the reflector lets it: shown until it does. */
  failure: string | undefined;
  /** The address that joins this room: the `join-url` page, or this one, with the room and the key. */
  joinLink = "";
  /** The join link's QR code, drawn once per link. */
  joinQrCode: ReturnType<typeof qrCode> | undefined;
  #joined: RoomToJoin | undefined;
  /** The attribute values of the current session, so changing any of them joins anew. */
  #joinedWith: string | undefined;
  /** The `join-url` of the link shown, so that one that is ignored is warned of once. */
  #joinUrl: string | undefined;

  readonly #element: SessionControllerHost;
  /** Called with each new session, to listen to it. */
  readonly #onSession: (session: Session) => void;

  constructor(element: SessionControllerHost, onSession: (session: Session) => void) {
    this.#element = element;
    this.#onSession = onSession;
    element.addController(this);
  }

  hostConnected(): void {
    this.#join();
  }

  hostDisconnected(): void {
    this.#leave();
  }

  hostUpdate(): void {
    if (this.#joinedWith !== undefined && this.#joinedWith !== this.#attributes()) this.#join();
    // Where the link points is no reason to join anew: the others would see this user leave and come back.
    else if (this.#joined !== undefined && this.#element.joinUrl !== this.#joinUrl) this.#showJoinLink(this.#joined);
  }

  /**
   * Something the reader should know that does not stop the chat. A room's address is its name and its key: a link
   * with a key that is not whole leads to a room of its own, which nobody else has used. Said while they are alone.
   */
  get notice(): string | undefined {
    const { session } = this;
    if (!this.#joined?.fromLink || !session?.newRoom || (session.model as ChatModel).users.length !== 1) return undefined;
    return "Nobody has been in this chat with this link before. If someone sent you the link, check that it was copied whole, with the part after #.";
  }

  #join(): void {
    this.#leave();
    const element = this.#element;
    const joined = roomToJoin(element, location.href, () => ({ room: newRoomName(crypto.getRandomValues(new Uint8Array(8))), key: newRoomSecret() }));
    if (joined.page !== undefined) history.replaceState(history.state, "", joined.page);
    this.#joined = joined;
    this.#joinedWith = this.#attributes();
    this.#showJoinLink(joined);
    this.failure = undefined;
    element.requestUpdate();
    const badRoom = checkRoomId(joined.room);
    if (badRoom !== undefined) {
      this.failure = `This room name cannot be used: ${badRoom}.`;
      return;
    }
    const host = this.#reflectorHost;
    try {
      this.session = Session.join({
        host,
        protocol: element.host === undefined ? (scriptUrl.protocol === "https:" ? "wss" : "ws") : undefined,
        room: joined.room,
        key: joined.key,
        party: element.party,
        model: ChatModel,
        // A name the reader chose in an earlier visit to this reflector, which a new client of theirs asks for.
        profile: () => {
          const name = rememberedName(host);
          return name === undefined ? undefined : { name };
        },
      });
    } catch (error) {
      this.failure = `This link's key is not valid: ${(error as Error).message.replace(/^multiuser-chat: /, "")}.`;
      return;
    }
    this.#watch(this.session);
    this.#onSession(this.session);
  }

  /** Re-renders on every change of the session, and shows what keeps it from working. */
  #watch(session: Session): void {
    const update = () => this.#element.requestUpdate();
    for (const type of ["welcome", "status", "pending", "divergence", "reflector-error", "bad-snapshot"]) session.addEventListener(type, update);
    session.addEventListener("welcome", () => (this.failure = undefined));
    session.addEventListener("reflector-error", (event) => {
      const { code, message } = (event as CustomEvent<{ code: string; message: string }>).detail;
      this.failure = code === "bad-room" ? `The server does not take this room name: ${message}.` : (turnedAway[code] ?? this.failure);
    });
    session.addEventListener("bad-snapshot", () => {
      this.failure = "This chat's saved history does not match what its members agreed on, so it is not shown. Reload the page to try again.";
    });
  }

  /** Remembers the name the reader chose, for the next room they open on this reflector. */
  rememberNickname(name: string): void {
    rememberName(this.#reflectorHost, name);
  }

  /** Forgets the remembered name: the next new room greets the reader with a random one. */
  forgetNickname(): void {
    forgetName(this.#reflectorHost);
  }

  get #reflectorHost(): string {
    return this.#element.host ?? scriptUrl.host;
  }

  /** The attributes that decide what to join, as one string to compare. */
  #attributes(): string {
    const { host, room, key, party } = this.#element;
    return JSON.stringify([host, room, key, party]);
  }

  #showJoinLink({ room, key }: RoomToJoin): void {
    const joinUrl = this.#element.joinUrl;
    const { page, warning } = joinPage(joinUrl, location.href);
    if (warning !== undefined && joinUrl !== this.#joinUrl) console.warn(warning);
    this.#joinUrl = joinUrl;
    this.joinLink = joinUrlFor(page, room, key);
    this.joinQrCode = qrCode(this.joinLink);
  }

  #leave(): void {
    this.session?.leave();
    this.session = undefined;
    this.#joinedWith = undefined;
  }
}
