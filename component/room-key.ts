/**
 * Everything a room's secret gives its members, and the one cipher of the room. From a random secret of 128 bits or
 * more, carried in the page URL's fragment (`#key=…`, which browsers never send to a server), HKDF-SHA-256 derives,
 * each with its own label and the room name as context:
 *
 * - the **encryption key** (AES-GCM-256) that seals every payload and snapshot: the reflector sees ciphertext only;
 * - the **member key** (Ed25519), whose public half names the room's address and whose signature of a challenge
 *   proves membership to the reflector, which never learns the encryption key;
 * - the **IV key** (HMAC-SHA-256) that makes a snapshot's sealing deterministic, so that every honest replica seals the
 *   same state to the same ciphertext and members vote with its hash, which reveals nothing without the key;
 * - the **seed** of the replicated random generator, so that nicknames do not follow from the room's name.
 *
 * A room named without a secret derives all of it from the room name: encrypted on the wire and in storage, but anyone
 * who knows or guesses the name holds its key.
 */
import { fromBase64Url, toBase64Url } from "../common/base64url.js";
import { roomAddress } from "../common/protocol.js";

/** Bytes in a new room secret: 128 bits. */
export const SECRET_BYTES = 16;
/** Marks the format of a sealed text, so a later change of scheme can be told apart. */
const FORMAT = "e1.";
const IV_BYTES = 12;
const SALT = new TextEncoder().encode("multiuser-chat room key v1");
/** An Ed25519 private key in PKCS #8 is this prefix and the 32-byte seed. */
const ED25519_PKCS8_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/** Raised when a sealed text does not open: sealed with another key, for another place, altered, or not sealed at all. */
export class SealError extends Error {
  constructor(what: string) {
    super(`this ${what} does not open with the room's key where it stands`);
    this.name = "SealError";
  }
}

/** A new random room secret, base64url, for `#key=`. */
export function newRoomSecret(): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(SECRET_BYTES)));
}

/** Checks a secret from a URL or attribute: base64url of at least 128 bits. */
export function isRoomSecret(secret: string): boolean {
  // A length of 4n + 1 characters is no base64url: its last character would hold 6 bits of no whole byte.
  if (!/^[A-Za-z0-9_-]+$/.test(secret) || secret.length % 4 === 1) return false;
  return Math.floor((secret.length * 6) / 8) >= SECRET_BYTES;
}

const utf8 = (text: string) => new TextEncoder().encode(text);

/** A room's keys and the operations on them. */
export class RoomKey {
  private constructor(
    /** The room's name. */
    readonly room: string,
    /** The room's address on the reflector: its name and its member key's fingerprint. */
    readonly address: string,
    /** The member key's public half, base64url: what a hello names. */
    readonly publicKey: string,
    /** The replicated random generator's first state: four 32-bit words, not all zero. */
    readonly seed: readonly number[],
    encryptionKey: CryptoKey,
    ivKey: CryptoKey,
    memberKey: CryptoKey,
  ) {
    this.#encryptionKey = encryptionKey;
    this.#ivKey = ivKey;
    this.#memberKey = memberKey;
  }

  readonly #encryptionKey: CryptoKey;
  readonly #ivKey: CryptoKey;
  readonly #memberKey: CryptoKey;

  /** Derives the keys of `room` from `secret` (base64url, at least 128 bits), or from the room name when there is none. */
  static async derive(room: string, secret: string | undefined): Promise<RoomKey> {
    if (secret !== undefined && !isRoomSecret(secret)) throw new Error("a room key must be base64url text of at least 128 bits (22 characters)");
    const material = secret === undefined ? utf8(`room:${room}`) : fromBase64Url(secret);
    const base = await crypto.subtle.importKey("raw", material, "HKDF", false, ["deriveKey", "deriveBits"]);
    const hkdf = (label: string) => ({ name: "HKDF", hash: "SHA-256", salt: SALT, info: utf8(`multiuser-chat ${label} ${room}`) });
    const encryptionKey = await crypto.subtle.deriveKey(hkdf("room"), base, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
    const ivKey = await crypto.subtle.deriveKey(hkdf("snapshot iv"), base, { name: "HMAC", hash: "SHA-256", length: 256 }, false, ["sign"]);
    const memberSeed = new Uint8Array(await crypto.subtle.deriveBits(hkdf("member"), base, 256));
    const memberKey = await crypto.subtle.importKey("pkcs8", new Uint8Array([...ED25519_PKCS8_PREFIX, ...memberSeed]), { name: "Ed25519" }, true, ["sign"]);
    const publicKey = ((await crypto.subtle.exportKey("jwk", memberKey)) as JsonWebKey).x!;
    const bits = new DataView(await crypto.subtle.deriveBits(hkdf("seed"), base, 128));
    const words = [0, 4, 8, 12].map((offset) => bits.getUint32(offset, true));
    // All zero is the one state xoshiro cannot leave; one chance in 2^128.
    const seed = words.every((word) => word === 0) ? [1, 0, 0, 0] : words;
    return new RoomKey(room, roomAddress(room, publicKey), publicKey, seed, encryptionKey, ivKey, memberKey);
  }

  /** Proves to the reflector that this client holds the room's key: the member key's signature of its challenge. */
  async prove(challenge: string): Promise<string> {
    return toBase64Url(new Uint8Array(await crypto.subtle.sign("Ed25519", this.#memberKey, utf8(challenge))));
  }

  /** Seals a post's payload for its place: the room, the client that sends it and its post id. */
  sealPost(text: string, client: string, id: number): Promise<string> {
    return this.#seal(text, crypto.getRandomValues(new Uint8Array(IV_BYTES)), postPlace(this.room, client, id));
  }

  /** Opens a post's payload where the reflector put it; a payload sealed for another sender or post id does not open. */
  openPost(sealed: string, client: string, id: number): Promise<string> {
    return this.#open(sealed, postPlace(this.room, client, id), "post");
  }

  /** Seals what a newcomer's hello tells the room's members about it (its `profile`): readable by members only. */
  sealProfile(text: string): Promise<string> {
    return this.#seal(text, crypto.getRandomValues(new Uint8Array(IV_BYTES)), profilePlace(this.room));
  }

  openProfile(sealed: string): Promise<string> {
    return this.#open(sealed, profilePlace(this.room), "profile");
  }

  /**
   * Seals the state at snapshot point `seq` deterministically: the IV is an HMAC of the state, so every replica with
   * the same state seals the same text, and the hash of that text is what members vote with.
   */
  async sealSnapshot(text: string, seq: number): Promise<string> {
    const place = snapshotPlace(this.room, seq);
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", this.#ivKey, utf8(`${place}\n${text}`)));
    return this.#seal(text, mac.slice(0, IV_BYTES), place);
  }

  /** Opens a snapshot sealed at `seq`, and checks that it was sealed as every honest replica seals that state. */
  async openSnapshot(sealed: string, seq: number): Promise<string> {
    const text = await this.#open(sealed, snapshotPlace(this.room, seq), "snapshot");
    if ((await this.sealSnapshot(text, seq)) !== sealed) throw new SealError("snapshot");
    return text;
  }

  async #seal(text: string, iv: Uint8Array<ArrayBuffer>, place: string): Promise<string> {
    const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: utf8(place) }, this.#encryptionKey, utf8(text)));
    return `${FORMAT}${toBase64Url(iv)}.${toBase64Url(sealed)}`;
  }

  async #open(text: string, place: string, what: string): Promise<string> {
    const [iv, sealed, rest] = text.startsWith(FORMAT) ? text.slice(FORMAT.length).split(".") : [];
    if (iv === undefined || sealed === undefined || rest !== undefined) throw new SealError(what);
    try {
      const plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: fromBase64Url(iv), additionalData: utf8(place) },
        this.#encryptionKey,
        fromBase64Url(sealed),
      );
      return new TextDecoder().decode(plain);
    } catch {
      throw new SealError(what);
    }
  }
}

/** The authenticated data that binds a sealed text to its place in the room. */
const postPlace = (room: string, client: string, id: number) => `multiuser-chat post\n${room}\n${client}\n${id}`;
const snapshotPlace = (room: string, seq: number) => `multiuser-chat snapshot\n${room}\n${seq}`;
/**
 * A profile is bound to its room only: a newcomer has no client id yet when it says hello. A member may copy another's
 * profile into its own hello; it says only what the newcomer says of itself, which is all a profile is.
 */
const profilePlace = (room: string) => `multiuser-chat profile\n${room}`;
