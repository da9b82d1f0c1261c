/**
 * Join links: a page's address with the room in its query (`?room=`) and the room's key in its fragment (`#key=`,
 * which browsers never send to a server). Opening one joins the same chat. Pure functions of the addresses they are
 * given: the element passes its page's and writes the results where they go.
 */

const ROOM_PARAMETER = "room";
const KEY_PARAMETER = "key";

/** A room to join: its name, its key, and whether they came from a link (the page's address) or were just made. */
export interface RoomToJoin {
  room: string;
  key: string | undefined;
  fromLink: boolean;
  /** For a new room: the page's address with the room and key written in, so that a reload and the QR code keep them. */
  page?: string;
}

/**
 * The room to join: the `room` attribute's, with the `key` attribute or else the key in `page`; else the room and key
 * that `page` names; else the new room that `newRoom` makes.
 */
export function roomToJoin(attributes: { room?: string; key?: string }, page: string, newRoom: () => { room: string; key: string }): RoomToJoin {
  const { room, key } = attributes;
  if (room !== undefined) return { room, key: key ?? keyInLink(page, room), fromLink: false };
  const linked = new URL(page).searchParams.get(ROOM_PARAMETER);
  if (linked) return { room: linked, key: keyInLink(page, linked), fromLink: true };
  const made = newRoom();
  return { ...made, fromLink: false, page: joinUrlFor(page, made.room, made.key) };
}

/** The key in `link`'s fragment, unless `link` names another room than `room`. */
export function keyInLink(link: string, room: string): string | undefined {
  const url = new URL(link);
  const linked = url.searchParams.get(ROOM_PARAMETER);
  if (linked !== null && linked !== room) return undefined;
  return new URLSearchParams(url.hash.slice(1)).get(KEY_PARAMETER) ?? undefined;
}

/** `page` with the room in its query and the key in its fragment, keeping anything else the page keeps there. */
export function joinUrlFor(page: string, room: string, key: string | undefined): string {
  const url = new URL(page);
  url.searchParams.set(ROOM_PARAMETER, room);
  if (key !== undefined) {
    const fragment = new URLSearchParams(url.hash.slice(1));
    fragment.set(KEY_PARAMETER, key);
    url.hash = fragment.toString();
  }
  return url.href;
}

/**
 * The page a join link opens: `joinUrl` (the `join-url` attribute), relative to `page`, when it is an http or https
 * address; else `page` itself, with a warning when `joinUrl` was set to anything else (a `javascript:` address, say).
 */
export function joinPage(joinUrl: string | undefined, page: string): { page: string; warning?: string } {
  const url = joinUrl !== undefined && URL.canParse(joinUrl, page) ? new URL(joinUrl, page) : undefined;
  if (url?.protocol === "http:" || url?.protocol === "https:") return { page: url.href };
  return joinUrl === undefined
    ? { page }
    : { page, warning: `<multiuser-chat>: join-url must be an http or https address; ignoring ${JSON.stringify(joinUrl)}` };
}

/** A new room's name: 16 characters of `0-9a-z`, two for each of 8 random bytes. */
export function newRoomName(random: Uint8Array): string {
  return [...random].map((byte) => byte.toString(36).padStart(2, "0")).join("");
}
