import { forbidden } from 'next/navigation';
import { UsersAdmin } from '@/components/users/users-admin';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { listUsers } from '@/lib/services/users/list-users';
import { getCatalog } from '@/lib/catalog/db';

export default async function UsersPage() {
  const user = await requireUser();
  if (!can(user.role, 'manage')) forbidden();
  return <UsersAdmin users={await listUsers(await getCatalog())} currentUserId={user.id} />;
}
