/**
 * Alerts: what went wrong without anyone watching (a failed, partial or missed run, damage found by verify, garbage
 * left pending, a VM past its job's RPO), sent to every channel: a webhook (JSON POST) or an e-mail (SMTP through
 * nodemailer; VMDEDUP_SMTP_URL, e.g. smtp://user:pass@mail.example.com:587, and VMDEDUP_SMTP_FROM). A channel that
 * cannot be reached is reported and never stops the work that raised the alert.
 */
import os from 'node:os';
import nodemailer from 'nodemailer';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';

export type AlertEvent = 'job.failed' | 'job.partial' | 'job.missed' | 'verify.failed' | 'verify.coverage' | 'gc.pending' | 'rpo.exceeded' | 'test';
export type Alert = { event: AlertEvent; severity: 'error' | 'warning' | 'info'; subject: string; message: string; at: string; details?: unknown };
export type Delivery = { channel: string; ok: boolean; error?: string };

const SEND_TIMEOUT_MS = 10_000;

export async function addAlertChannel(db: Catalog, kind: string, target: string): Promise<{ id: string }> {
  if (kind === 'webhook') {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      throw new AppError('BAD_INPUT', { message: `webhook '${target}' is not a URL` });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new AppError('BAD_INPUT', { message: `webhook '${target}': http or https only` });
  } else if (kind === 'email') {
    if (!/^[^\s@]+@[^\s@]+$/.test(target)) throw new AppError('BAD_INPUT', { message: `'${target}' is not an e-mail address` });
  } else throw new AppError('BAD_INPUT', { message: `alert channel '${kind}': webhook or email` });
  const existing = await db.alertChannel.findUnique({ where: { kind_target: { kind, target } } });
  if (existing) return { id: existing.id };
  return db.alertChannel.create({ data: { kind, target }, select: { id: true } });
}

export async function listAlertChannels(db: Catalog) {
  return db.alertChannel.findMany({ orderBy: { createdAt: 'asc' }, select: { id: true, kind: true, target: true } });
}

export async function removeAlertChannel(db: Catalog, id: string): Promise<void> {
  const { count } = await db.alertChannel.deleteMany({ where: { OR: [{ id }, { target: id }] } });
  if (count === 0) throw new AppError('NOT_FOUND', { message: `no alert channel '${id}' (see 'vmdedup alert list')` });
}

/** Sends the alert to every channel; returns how each went (never throws for a channel's failure). */
export async function sendAlert(db: Catalog, alert: Omit<Alert, 'at'> & { at?: string }): Promise<Delivery[]> {
  const full: Alert = { ...alert, at: alert.at ?? new Date().toISOString() };
  const channels = await db.alertChannel.findMany({ orderBy: { createdAt: 'asc' } });
  return Promise.all(channels.map(async (channel): Promise<Delivery> => {
    const name = `${channel.kind} ${channel.target}`;
    try {
      if (channel.kind === 'webhook') await postWebhook(channel.target, full);
      else await sendMail(channel.target, full);
      return { channel: name, ok: true };
    } catch (err) {
      return { channel: name, ok: false, error: (err as Error).message };
    }
  }));
}

async function postWebhook(url: string, alert: Alert): Promise<void> {
  const response = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json', 'user-agent': 'vmdedup' },
    body: JSON.stringify({ source: 'vmdedup', host: os.hostname(), ...alert }), signal: AbortSignal.timeout(SEND_TIMEOUT_MS), redirect: 'error',
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
}

async function sendMail(to: string, alert: Alert): Promise<void> {
  const url = process.env.VMDEDUP_SMTP_URL;
  if (!url) throw new Error('VMDEDUP_SMTP_URL is not set (smtp://user:password@host:port)');
  const transport = nodemailer.createTransport(url, { connectionTimeout: SEND_TIMEOUT_MS, greetingTimeout: SEND_TIMEOUT_MS, socketTimeout: SEND_TIMEOUT_MS });
  try {
    await transport.sendMail({
      from: process.env.VMDEDUP_SMTP_FROM || `vmdedup@${os.hostname()}`, to,
      subject: `[vmdedup] ${alert.severity}: ${alert.subject}`,
      text: `${alert.message}\n\n${alert.event} at ${alert.at} on ${os.hostname()}${alert.details === undefined ? '' : `\n\n${JSON.stringify(alert.details, null, 2)}`}\n`,
    });
  } finally {
    transport.close();
  }
}

/**
 * A standing condition (`key`): told once when it arises, forgotten when it clears, so that it is told again if it
 * comes back. Returns whether this call told it.
 */
export async function raiseOnce(db: Catalog, key: string, active: boolean, alert: () => Omit<Alert, 'at'>): Promise<boolean> {
  if (!active) {
    await db.alertRaised.deleteMany({ where: { key } });
    return false;
  }
  const created = await db.alertRaised.createMany({ data: [{ key }], skipDuplicates: true });
  if (created.count === 0) return false;
  await sendAlert(db, alert());
  return true;
}
