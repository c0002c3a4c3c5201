import { type PlanView } from './plan-view';
import { type RestoreRequestView, plannedInputOf } from './restore-request-view';
import { type RestorePlanner } from './local-restore-planner';

/** The plan of a pending request as the live state gives it now (what the approver sees beside the confirmed one). */
export async function replanRestoreRequest(planner: RestorePlanner, request: RestoreRequestView): Promise<PlanView | { error: string }> {
  try {
    return await planner(plannedInputOf(request));
  } catch (err) {
    return { error: (err as Error).message };
  }
}
