/**
 * Headless chat clients for the Node tests: joining a room with a real `Session` over `ws`, reading its chat, and
 * checking that replicas agree.
 */
import assert from "node:assert/strict";
import WebSocket from "ws";
import { ChatModel } from "../../component/chat-model.js";
import { Session, type SessionOptions } from "../../component/session.js";
import { stateHash } from "../../component/state-hash.js";
import { waitFor } from "./wait-for.js";

/** The chat model of a session that has been welcomed. */
export const chat = (session: Session) => session.model as ChatModel;
export const postTexts = (session: Session) =>
  chat(session)
    .history.filter((entry) => entry.kind === "post")
    .map((entry) => entry.text);

/** Joins `room` on `host` with a ChatModel (unless the options name another) and waits for the first welcome. */
export async function joinRoom(host: string, room: string, options: Partial<SessionOptions> = {}): Promise<Session> {
  const session = Session.join({ host, room, model: ChatModel, WebSocket, ...options });
  await session.whenReady();
  return session;
}

/** Waits until every session has applied the same last event, then compares their state hashes; returns the hash. */
export async function assertConverged(sessions: Session[], what = "every replica to reach the same event"): Promise<string> {
  await waitFor(() => sessions.every((session) => session.replica !== undefined) && new Set(sessions.map((session) => session.replica!.seq)).size === 1, what);
  const hashes = await Promise.all(sessions.map((session) => stateHash(session.replica!)));
  assert.equal(new Set(hashes).size, 1, `replicas differ at ${sessions[0]!.replica!.seq}: ${hashes.join(" ")}`);
  return hashes[0]!;
}
