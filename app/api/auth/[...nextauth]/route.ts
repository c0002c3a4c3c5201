import { handlers } from '@/lib/auth/auth';
import { withBrowserOrigin } from '@/lib/auth/browser-origin';

export const GET = withBrowserOrigin(handlers.GET);
export const POST = withBrowserOrigin(handlers.POST);
