'use server';

import { revalidatePath } from 'next/cache';
import { z } from 'zod';
import { createAction } from '@/lib/actions/create-action';
import { beginSecondFactorEnrolment } from '@/lib/services/users/begin-second-factor-enrolment';
import { confirmSecondFactor } from '@/lib/services/users/confirm-second-factor';
import { disableSecondFactor } from '@/lib/services/users/disable-second-factor';
import { ZConfirmSecondFactor, ZDisableSecondFactor } from '@/lib/validation/users';

// Every role may manage its own second factor; an admin who must enrol first (VMDEDUP_REQUIRE_2FA) may enrol.
export const beginSecondFactorAction = createAction('begin-second-factor', z.object({}), 'read', async (_input, { user, db }) => {
  await beginSecondFactorEnrolment(db, { userId: user.id });
  revalidatePath('/account');
  return null;
}, { beforeSecondFactor: true });

export const confirmSecondFactorAction = createAction('confirm-second-factor', ZConfirmSecondFactor, 'read', async ({ code }, { user, db }) => {
  await confirmSecondFactor(db, { userId: user.id, code });
  revalidatePath('/account');
  return null;
}, { beforeSecondFactor: true });

export const disableSecondFactorAction = createAction('disable-second-factor', ZDisableSecondFactor, 'read', async ({ password, code }, { user, db }) => {
  await disableSecondFactor(db, { userId: user.id, password, code });
  revalidatePath('/account');
  return null;
});
