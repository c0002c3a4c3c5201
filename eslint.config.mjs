import next from 'eslint-config-next';

const config = [
  { ignores: ['lib/generated/**', 'dist/**', '.next/**', 'data/**', 'bench/.work/**', 'test-results/**', 'next-env.d.ts'] },
  ...next,
];

export default config;
