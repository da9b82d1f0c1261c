/**
 * The address a member's socket opens, ticket included (docs/protocol.md#the-door), for tests that open sockets
 * by hand, in Node and in the browser alike.
 */
import type { RoomKey } from "../../component/room-key.js";
import { ticketText } from "../../common/protocol.js";

/** `ws://host/parties/main/ADDRESS?…` with a ticket signed by `key` at `at` (now by default), or without one. */
export async function memberUrl(
  host: string,
  key: RoomKey,
  { address = key.address, at = Date.now(), ticket = true, query = {} as Record<string, string> } = {},
): Promise<string> {
  const params = new URLSearchParams(query);
  if (ticket) {
    params.set("key", key.publicKey);
    params.set("at", String(at));
    params.set("ticket", await key.prove(ticketText(address, at)));
  }
  return `ws://${host}/parties/main/${address}?${params}`;
}
