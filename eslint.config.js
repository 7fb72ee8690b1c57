import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'gen/', 'node_modules/', 'coverage/', 'sdk/typescript/dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // The dashboard's browser modules (served as they are, no build step).
    files: ['dashboard/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: { window: 'readonly', document: 'readonly', location: 'readonly', history: 'readonly', localStorage: 'readonly', fetch: 'readonly', Node: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', URLSearchParams: 'readonly', FormData: 'readonly', Event: 'readonly' },
    },
  },
  {
    // Plain Node scripts of the repository's own tooling.
    files: ['scripts/**/*.mjs'],
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
);
