import type { Replica } from "./runtime.js";

/** SHA-256 of a text, in hex. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** SHA-256 of a replica's canonical state: equal hashes mean equal replicas. */
export function stateHash(replica: Replica): Promise<string> {
  return sha256Hex(replica.serialize());
}
