// The chat room has no accounts: a name stands for a user. The page turns the name into
// the user id that `user_login(user_id, name)` elevates to, the same way every time, so
// the same name is the same user in any window (logging in again elsewhere takes over).
//
// The id is the 32-bit FNV-1a hash of the name's UTF-8 bytes, its top bit cleared: a
// positive integer below 2^31 (0 becomes 1). In Python:
//
//     h = 0x811C9DC5
//     for byte in name.encode():
//         h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
//     user_id = (h & 0x7FFFFFFF) or 1

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** The user id of a chat name, e.g. `userIdOf("alice")`. */
export function userIdOf(name) {
  let hash = FNV_OFFSET;
  for (const byte of new TextEncoder().encode(name)) {
    hash = Math.imul(hash ^ byte, FNV_PRIME) >>> 0;
  }
  return (hash & 0x7fffffff) || 1;
}
