/**
 * Roles and what each may do. Plain data, imported by the server (which enforces it) and by the UI (which
 * hides what a role cannot do).
 */
export const ROLES = ['viewer', 'operator', 'approver', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export type Permission =
  | 'read' // see the fleet, backups, jobs and savings
  | 'backup' // start backups
  | 'request-restore'
  | 'approve-restore'
  | 'audit' // read the audit log
  | 'manage'; // users, sources, policies

const PERMISSIONS: Record<Role, readonly Permission[]> = {
  viewer: ['read'],
  operator: ['read', 'backup', 'request-restore'],
  approver: ['read', 'approve-restore', 'audit'],
  admin: ['read', 'backup', 'request-restore', 'approve-restore', 'audit', 'manage'],
};

export function can(role: Role, permission: Permission): boolean {
  return PERMISSIONS[role]?.includes(permission) ?? false;
}

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

export const ROLE_DESCRIPTIONS: Record<Role, string> = {
  viewer: 'reads everything, changes nothing',
  operator: 'runs backups and requests restores',
  approver: 'approves or rejects restore requests, reads the audit log',
  admin: 'everything, plus users, sources and policies',
};
