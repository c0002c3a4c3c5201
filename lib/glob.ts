/** A glob over a whole name: `*` any run of characters, `?` one character, everything else itself. */
export function globMatcher(pattern: string): (name: string) => boolean {
  const regex = new RegExp(`^${pattern.split('').map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&'))).join('')}$`, 's');
  return (name) => regex.test(name);
}
