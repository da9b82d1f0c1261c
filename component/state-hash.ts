import type { Replica } from "./runtime.js";

/** SHA-256 of a replica's canonical state, in hex: equal hashes mean equal replicas. */
export async function stateHash(replica: Replica): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(replica.serialize()));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}
