/**
 * Every entry point of the web app, found from the source, and who may use each: the tables that
 * test/access.test.ts (source level) and e2e/access.spec.ts (real requests against the running server) check.
 * A new server action, page or route handler has no entry here until someone writes down who may use it, and
 * both tests fail until then.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import type { Permission } from '../lib/auth/roles';

export const projectRoot = path.resolve(import.meta.dirname, '..');

/** Who may call each server action (by its createAction name). */
export const ACTION_PERMISSIONS: Record<string, Permission> = {
  'request-backup': 'backup',
  'scan-source': 'backup',
  'add-source': 'manage',
  'edit-source': 'manage',
  'remove-source': 'manage',
  'list-vm-backups': 'request-restore',
  'plan-restore': 'request-restore',
  'request-restore': 'request-restore',
  'decide-restore': 'approve-restore',
  'withdraw-restore': 'request-restore',
  'set-approval-policy': 'manage',
  'create-user': 'manage',
  'update-user': 'manage',
  'reset-password': 'manage',
  'reset-second-factor': 'manage',
  // Each user's own second factor (app/(app)/account): everyone signed in, for themselves only.
  'begin-second-factor': 'read',
  'confirm-second-factor': 'read',
  'disable-second-factor': 'read',
  // Schedules & retention (app/(app)/schedules): a prune preview reads only; running a job is a backup's permission.
  'save-scheduled-job': 'manage',
  'remove-scheduled-job': 'manage',
  'run-scheduled-job': 'backup',
  'preview-prune': 'read',
  'prune': 'manage',
};

/** Server actions open to anyone (`file#export`): signing in and out. They are not made with createAction. */
export const PUBLIC_ACTIONS = [
  'app/sign-in/actions.ts#signInAction',
  'app/sign-in/actions.ts#signInWithOidcAction',
  'app/sign-in/actions.ts#signOutAction',
];

export type Access = Permission | 'public';

/** Who may open each page (by its route pattern). */
export const PAGE_ACCESS: Record<string, Access> = {
  '/': 'read',
  '/vms': 'read',
  '/vms/[source]/[name]': 'read',
  '/graph': 'read',
  '/savings': 'read',
  '/backups': 'read',
  '/schedules': 'read',
  '/sources': 'read',
  '/restores': 'read',
  '/restores/[id]': 'read',
  '/restores/new': 'request-restore',
  '/users': 'manage',
  '/audit': 'audit',
  '/account': 'read',
  '/sign-in': 'public',
};

/** Who may call each route handler. */
export const ROUTE_ACCESS: Record<string, Access> = {
  '/api/jobs': 'read',
  '/api/jobs/[id]': 'read',
  '/api/savings': 'read',
  '/api/audit': 'audit',
  '/api/auth/[...nextauth]': 'public', // next-auth: sign-in, callback, session, csrf
};

export type ServerActionExport =
  | { file: string; exportName: string; kind: 'createAction'; name: string; permission: string }
  | { file: string; exportName: string; kind: 'function' };

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(path.join(projectRoot, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.(ts|tsx|js|jsx|mjs)$/.test(entry.name) && !/\.test\.tsx?$/.test(entry.name))
    .map((entry) => path.relative(projectRoot, path.join(entry.parentPath, entry.name)))
    .filter((file) => !file.split(path.sep).includes('generated'))
    .sort();
}

function hasUseServer(statements: readonly ts.Statement[]): boolean {
  for (const statement of statements) {
    if (!ts.isExpressionStatement(statement) || !ts.isStringLiteral(statement.expression)) return false; // directives come first
    if (statement.expression.text === 'use server') return true;
  }
  return false;
}

const isExported = (node: ts.Node) => ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);

/**
 * Every server function of the app: the exports of each 'use server' file (a createAction result or a plain
 * function), and as problems anything that makes a server function another way (an inline 'use server' body,
 * re-exports, a default export, a createAction call whose name or permission is not a literal).
 */
export function findServerActions(): { actions: ServerActionExport[]; problems: string[] } {
  const actions: ServerActionExport[] = [];
  const problems: string[] = [];
  for (const file of ['app', 'components', 'lib'].flatMap(sourceFiles)) {
    const text = fs.readFileSync(path.join(projectRoot, file), 'utf8');
    if (!text.includes('use server')) continue;
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
    const where = (node: ts.Node) => `${file}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
    // A function whose body starts with 'use server' is a server action of its own, outside the tables.
    const visit = (node: ts.Node) => {
      if (ts.isFunctionLike(node) && 'body' in node && node.body && ts.isBlock(node.body as ts.Node) && hasUseServer((node.body as ts.Block).statements)) {
        problems.push(`${where(node)}: an inline 'use server' function; make it with createAction in a 'use server' file`);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
    if (!hasUseServer(source.statements)) continue;
    if (!file.startsWith(`app${path.sep}`)) problems.push(`${file}: a 'use server' file outside app/`);
    for (const statement of source.statements) {
      if (ts.isExportDeclaration(statement) && !statement.isTypeOnly) problems.push(`${where(statement)}: re-exports from a 'use server' file`);
      else if (ts.isExportAssignment(statement)) problems.push(`${where(statement)}: a default export from a 'use server' file`);
      else if (ts.isFunctionDeclaration(statement) && isExported(statement)) {
        actions.push({ file, exportName: statement.name?.text ?? 'default', kind: 'function' });
      } else if (ts.isVariableStatement(statement) && isExported(statement)) {
        for (const declaration of statement.declarationList.declarations) {
          const exportName = declaration.name.getText(source);
          const init = declaration.initializer;
          if (init && ts.isCallExpression(init) && ts.isIdentifier(init.expression) && init.expression.text === 'createAction') {
            const [name, , permission] = init.arguments;
            if (name && permission && ts.isStringLiteral(name) && ts.isStringLiteral(permission)) {
              actions.push({ file, exportName, kind: 'createAction', name: name.text, permission: permission.text });
            } else {
              problems.push(`${where(declaration)}: createAction's name and permission must be string literals`);
            }
          } else {
            actions.push({ file, exportName, kind: 'function' });
          }
        }
      }
    }
  }
  // Every createAction call in app/ must be one of the exports above (none built in a loop, a helper or a page).
  const calls = sourceFiles('app').reduce((count, file) => count + (fs.readFileSync(path.join(projectRoot, file), 'utf8').match(/\bcreateAction\(/g) ?? []).length, 0);
  const found = actions.filter((action) => action.kind === 'createAction').length;
  if (calls !== found) problems.push(`app/ has ${calls} createAction( calls but ${found} exported createAction actions in 'use server' files`);
  return { actions, problems };
}

/** A file's code without its comments (a guard commented out is no guard), as the TypeScript printer gives it. */
export function codeOf(file: string): string {
  const text = fs.readFileSync(path.join(projectRoot, file), 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
  return ts.createPrinter({ removeComments: true }).printFile(source);
}

/** The route pattern of a page.tsx or route.ts file: route groups dropped (`app/(app)/vms/page.tsx` → `/vms`). */
export function routePattern(file: string): string {
  const segments = path.dirname(path.relative(path.join(projectRoot, 'app'), path.join(projectRoot, file))).split(path.sep)
    .filter((segment) => segment !== '.' && !/^\(.*\)$/.test(segment));
  return `/${segments.join('/')}`;
}

/** Every page and route handler of the app, by route pattern. */
export function findEntryPoints(): { pages: Map<string, string>; routes: Map<string, string> } {
  const pages = new Map<string, string>();
  const routes = new Map<string, string>();
  for (const file of sourceFiles('app')) {
    const base = path.basename(file);
    if (/^page\.(tsx|ts|jsx|js)$/.test(base)) pages.set(routePattern(file), file);
    if (/^route\.(tsx|ts|jsx|js)$/.test(base)) routes.set(routePattern(file), file);
  }
  return { pages, routes };
}
