/**
 * The WebCrypto both sides share: the hash members vote with, and the check of a member's proof. Both run wherever
 * WebCrypto does: workerd, browsers and Node.
 */
import { fromBase64Url } from "./base64url.js";
import { FINGERPRINT_LENGTH, helloChallenge, parseRoomAddress } from "./protocol.js";

/** SHA-256 of a text's UTF-8 bytes, in hex. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Whether a hello proves its sender holds the key of the room at `address`: `key` (an Ed25519 public key, base64url)
 * must be the one the address names by its fingerprint, and `proof` its signature of this connection's challenge.
 */
export function verifyMember(address: string, nonce: string, key: string, proof: string): Promise<boolean> {
  return verifySigned(address, key, proof, helloChallenge(address, nonce));
}

/** Whether `proof` is the signature of `text` by `key`, and `key` the one the room's `address` names. */
export async function verifySigned(address: string, key: string, proof: string, text: string): Promise<boolean> {
  const parsed = parseRoomAddress(address);
  if (typeof parsed === "string" || key.slice(0, FINGERPRINT_LENGTH) !== parsed.fingerprint) return false;
  try {
    const publicKey = await crypto.subtle.importKey("raw", fromBase64Url(key), { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify("Ed25519", publicKey, fromBase64Url(proof), new TextEncoder().encode(text));
  } catch {
    // Not a public key, or not a signature: no proof.
    return false;
  }
}
