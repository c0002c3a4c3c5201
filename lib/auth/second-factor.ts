/**
 * The TOTP second factor (RFC 6238 through otplib: SHA-1, 6 digits, 30-second steps, the authenticator apps'
 * defaults). Secrets are sealed before they reach the catalog: AES-256-GCM under a key derived from AUTH_SECRET
 * (HKDF), with the user's id as associated data. A copy of the database (a dump, a backup, a read through an SQL
 * injection) then yields no secret, and a sealed secret copied onto another user's row does not open there;
 * whoever holds AUTH_SECRET can forge sessions anyway, so the key sits with what it protects. The price: a new
 * AUTH_SECRET makes every enrolled secret unreadable, and those users need `vmdedup user reset-2fa`.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { generate, generateSecret, generateURI, verify } from 'otplib';
import QRCode from 'qrcode';

export const TOTP_PERIOD_SECONDS = 30;
/** One step either side: a phone whose clock is up to 30 s off still signs in. */
const TOLERANCE_SECONDS = TOTP_PERIOD_SECONDS;
const SEALED_PREFIX = 'v1';

function sealingKey(): Buffer {
  const secret = process.env.AUTH_SECRET;
  if (!secret) throw new Error('AUTH_SECRET is not set: second-factor secrets cannot be sealed or opened');
  return Buffer.from(hkdfSync('sha256', secret, 'vmdedup', 'totp-secret v1', 32));
}

export function newTotpSecret(): string {
  return generateSecret(); // 20 random bytes, base32 (what authenticator apps take)
}

export function sealTotpSecret(secret: string, userId: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealingKey(), iv);
  cipher.setAAD(Buffer.from(userId));
  const sealed = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
  return [SEALED_PREFIX, iv.toString('base64url'), sealed.toString('base64url'), cipher.getAuthTag().toString('base64url')].join(':');
}

/** The secret, or undefined when it cannot be opened (another AUTH_SECRET, another user's row, damaged). */
export function openTotpSecret(sealed: string, userId: string): string | undefined {
  const [prefix, iv, data, tag] = sealed.split(':');
  if (prefix !== SEALED_PREFIX || !iv || !data || !tag) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealingKey(), Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(userId));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

/**
 * The time step a code is valid for, if it is valid now and newer than `afterStep` (the last one accepted: a
 * code is good once). Anything that is not six digits is simply wrong.
 */
export async function acceptedTotpStep(options: { secret: string; code: string; afterStep?: number | null; now?: Date }): Promise<number | undefined> {
  const code = options.code.replace(/\s+/g, '');
  if (!/^\d{6}$/.test(code)) return undefined;
  try {
    const result = await verify({
      secret: options.secret, token: code, period: TOTP_PERIOD_SECONDS, epochTolerance: TOLERANCE_SECONDS,
      ...(options.now ? { epoch: Math.floor(options.now.getTime() / 1000) } : {}),
      ...(options.afterStep != null ? { afterTimeStep: options.afterStep } : {}),
    });
    return result.valid && 'timeStep' in result ? result.timeStep : undefined;
  } catch {
    return undefined;
  }
}

/** The current code for a secret (tests, and nothing else, need this). */
export function currentTotpCode(secret: string, now = new Date()): Promise<string> {
  return generate({ secret, period: TOTP_PERIOD_SECONDS, epoch: Math.floor(now.getTime() / 1000) });
}

/** What an authenticator app scans or is typed: the otpauth:// URI, and the same as a QR code (an SVG data URL). */
export async function totpEnrolment(options: { secret: string; username: string; issuer?: string }): Promise<{ uri: string; qrCode: string }> {
  const uri = generateURI({ issuer: options.issuer ?? 'vmdedup', label: options.username, secret: options.secret, period: TOTP_PERIOD_SECONDS });
  const svg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  return { uri, qrCode: `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}` };
}
