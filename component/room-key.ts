/**
 * End-to-end encryption of a room's payloads and snapshots: AES-GCM with a 256-bit key that only the people
 * holding the join link can derive. The reflector sees ciphertext only.
 *
 * The key comes from HKDF-SHA-256 over a random secret of 128 bits or more, carried in the page URL's fragment
 * (`#key=…`, which browsers never send to a server), with the room id as context, so one secret never gives
 * two rooms the same key. A room named without a secret derives its key from the room name alone: it is
 * encrypted on the wire and in storage, but anyone who knows or guesses the name can read it.
 */
import { fromBase64Url, toBase64Url } from "../party/base64url.js";

/** Bytes in a new room secret: 128 bits. */
export const SECRET_BYTES = 16;
/** Marks the format of an encrypted text, so a later change of scheme can be told apart. */
const FORMAT = "e1.";
const IV_BYTES = 12;
const SALT = new TextEncoder().encode("multiuser-chat room key v1");

/** Raised when a text was not encrypted with this room's key (or is not an encrypted text at all). */
export class WrongKeyError extends Error {
  constructor(
    /** True for well-formed ciphertext that this key cannot open; false for text that is not ciphertext at all. */
    readonly sealed: boolean,
  ) {
    super(sealed ? "this link's key does not match the room" : "this text is not encrypted for a room");
    this.name = "WrongKeyError";
  }
}

/** A new random room secret, base64url, for `#key=`. */
export function newRoomSecret(): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(SECRET_BYTES)));
}

/** Checks a secret from a URL or attribute: base64url of at least 128 bits. */
export function isRoomSecret(secret: string): boolean {
  if (!/^[A-Za-z0-9_-]+$/.test(secret)) return false;
  return Math.floor((secret.length * 6) / 8) >= SECRET_BYTES;
}

/** A room's key and the operations on it. */
export class RoomKey {
  private constructor(
    private readonly key: CryptoKey,
    /** True when the key came from a secret, false when only from the room name. */
    readonly fromSecret: boolean,
  ) {}

  /**
   * Derives the key of `room` from `secret` (base64url, at least 128 bits), or from the room name when there is
   * no secret.
   */
  static async derive(room: string, secret: string | undefined): Promise<RoomKey> {
    if (secret !== undefined && !isRoomSecret(secret)) throw new Error("a room key must be base64url text of at least 128 bits (22 characters)");
    const material = secret === undefined ? new TextEncoder().encode(`room:${room}`) : fromBase64Url(secret);
    const base = await crypto.subtle.importKey("raw", material, "HKDF", false, ["deriveKey"]);
    const key = await crypto.subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: SALT, info: new TextEncoder().encode(`multiuser-chat room ${room}`) },
      base,
      { name: "AES-GCM", length: 256 },
      false,
      ["encrypt", "decrypt"],
    );
    return new RoomKey(key, secret !== undefined);
  }

  /** Encrypts a text with a fresh random IV. */
  async encrypt(text: string): Promise<string> {
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, this.key, new TextEncoder().encode(text)));
    return `${FORMAT}${toBase64Url(iv)}.${toBase64Url(sealed)}`;
  }

  /** Decrypts a text from `encrypt`; throws WrongKeyError when it was sealed with another key or altered. */
  async decrypt(text: string): Promise<string> {
    const [iv, sealed] = text.startsWith(FORMAT) ? text.slice(FORMAT.length).split(".") : [];
    if (iv === undefined || sealed === undefined) throw new WrongKeyError(false);
    try {
      const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromBase64Url(iv) }, this.key, fromBase64Url(sealed));
      return new TextDecoder().decode(plain);
    } catch {
      throw new WrongKeyError(true);
    }
  }
}
