/**
 * Well-formed UTF-16: no lone surrogate (`"\ud800"` is valid JSON text, but not Unicode).
 * Such a string cannot be encoded as UTF-8: `encodeURIComponent` throws on it (key names),
 * Redis's Lua JSON decoder refuses it (a session record holding one could never change
 * again), and MessagePack sends U+FFFD where JSON sends the escape, so subscribers of the
 * two codecs would see different values. Refused where strings come in.
 */
export function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}
