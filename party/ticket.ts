/**
 * The door of a room: a socket must carry a ticket, the room key's signature of the room's address and the time, in
 * its query (`key`, `at`, `ticket`). The server checks it before the room sees the socket, so a stranger who knows
 * only the address takes no place among the sockets waiting for their hello, and never wakes the room. The hello
 * that follows still answers a challenge of this connection: a ticket seen in a log can be replayed only within
 * TICKET_WINDOW, and only to wait at the door of the hello. docs/protocol.md#connecting describes it.
 */
import { verifySigned } from "../common/crypto.js";
import { CLOSE_NOT_MEMBER, CLOSE_STALE_TICKET, encodeError, TICKET_WINDOW, ticketText } from "../common/protocol.js";

/** Why a socket is turned away at the door: the error frame it gets, then the close. */
export interface Refusal {
  frame: string;
  code: number;
  reason: string;
}

/** Checks the ticket in `query` for the room at `address` at the server's time `now`; undefined lets the socket in. */
export async function checkTicket(address: string, query: URLSearchParams, now: number): Promise<Refusal | undefined> {
  const [key, at, ticket] = [query.get("key"), query.get("at"), query.get("ticket")];
  const time = Number(at);
  if (key === null || ticket === null || at === null || !Number.isSafeInteger(time) || !(await verifySigned(address, key, ticket, ticketText(address, time)))) {
    return {
      frame: encodeError("not-member", "this connection carries no ticket signed with the room's key"),
      code: CLOSE_NOT_MEMBER,
      reason: "not a member",
    };
  }
  if (Math.abs(now - time) > TICKET_WINDOW) {
    return {
      frame: encodeError("stale-ticket", `this ticket was made at ${time}; the server's time is ${now}: make another by this clock`, { time: now }),
      code: CLOSE_STALE_TICKET,
      reason: "stale ticket",
    };
  }
  return undefined;
}
