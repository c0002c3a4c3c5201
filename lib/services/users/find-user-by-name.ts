import type { Catalog } from '../../catalog/db';

/** The user with this name (names are kept lower case), or null. */
export async function findUserByName(db: Catalog, options: { username: string }) {
  return db.user.findUnique({ where: { username: options.username.toLowerCase() } });
}
