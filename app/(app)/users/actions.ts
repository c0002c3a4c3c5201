'use server';

import { revalidatePath } from 'next/cache';
import { createAction } from '@/lib/actions/create-action';
import { createUser } from '@/lib/services/users/create-user';
import { resetPassword } from '@/lib/services/users/reset-password';
import { updateUser } from '@/lib/services/users/update-user';
import { resetSecondFactor } from '@/lib/services/users/reset-second-factor';
import { ZCreateUser, ZResetPassword, ZResetSecondFactor, ZUpdateUser } from '@/lib/validation/users';

export const createUserAction = createAction('create-user', ZCreateUser, 'manage', async (user, { user: admin, db }) => {
  const created = await createUser(db, { actor: admin.username, user });
  revalidatePath('/users');
  return created;
});

export const updateUserAction = createAction('update-user', ZUpdateUser, 'manage', async (change, { user: admin, db }) => {
  await updateUser(db, { actor: admin.username, change });
  revalidatePath('/users');
  return null;
});

export const resetPasswordAction = createAction('reset-password', ZResetPassword, 'manage', async (reset, { user: admin, db }) => {
  await resetPassword(db, { actor: admin.username, reset });
  revalidatePath('/users');
  return null;
});

export const resetSecondFactorAction = createAction('reset-second-factor', ZResetSecondFactor, 'manage', async ({ userId }, { user: admin, db }) => {
  const reset = await resetSecondFactor(db, { actor: admin.username, userId });
  revalidatePath('/users');
  return reset;
});
