/**
 * `multiuser-chat/session`: what a client without a page needs (a test, a bot, a bench): the session, the chat's
 * model, and the runtime's `Model` for models of one's own. In Node, give `Session.join` a WebSocket (`ws`).
 */
export { CHAT_SCOPE, ChatModel, checkNickname, checkPost, USER_COLOURS } from "./chat-model.js";
export type { ChatEntry, ChatNotifications, ChatProfile, ChatUser, UserColour } from "./chat-model.js";
export { newRoomSecret } from "./room-key.js";
export { Model, Replica } from "./runtime.js";
export type { ModelClass } from "./runtime.js";
export { Session } from "./session.js";
export type { Divergence, PendingEvent, SessionEventMap, SessionOptions, SessionStatus } from "./session.js";
export { stateHash } from "./state-hash.js";
