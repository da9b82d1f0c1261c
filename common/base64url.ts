/** base64url without padding: safe in URLs, fragments and JSON, for tokens, keys and ciphertext alike. */
export function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export function fromBase64Url(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

/** 128 random bits, base64url: unguessable, so nobody can claim another client's id or secret. */
export function newToken(): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(16)));
}
