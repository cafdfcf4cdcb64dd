// @ts-check
import eslint from '@eslint/js';
import prettierConfig from 'eslint-config-prettier';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  {
    ignores: [
      'node_modules/**',
      'dist/**',
      '.bench-build/**',
      'dist-client/**',
      'schema/**',
      'coverage/**',
      'bench/results/**',
      '.tmp/**',
      '.chaos/**',
    ],
  },
  eslint.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    files: ['**/*.ts', '**/*.js', '**/*.mjs'],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      parserOptions: {
        // eslint.config.js is not part of tsconfig.json's program (no allowJs), so it is
        // type-checked through the project service's default project instead.
        projectService: { allowDefaultProject: ['eslint.config.js'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: {
      reportUnusedDisableDirectives: 'error',
    },
    rules: {
      // --- type-safety rules that must stay on ---
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // node:test's describe/it/test return promises that the runner itself tracks.
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['describe', 'it', 'test', 'suite', 'skip', 'only', 'todo'],
            },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true },
      ],
      '@typescript-eslint/no-import-type-side-effects': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-console': 'off',

      // --- tuned for the idioms used in src/ ---
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          args: 'after-used',
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // `map.get(k)!` right after a `has`/`set` is a deliberate idiom here.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // `void promise` marks a deliberately detached promise; no-floating-promises honours it.
      'no-void': 'off',
      // Interfaces are implemented with async methods that do not always await (in-memory engines).
      '@typescript-eslint/require-await': 'off',
      // Template literals with numbers are everywhere in logs/keys; still forbid objects and nullish.
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true, allowNullish: false, allowAny: false },
      ],
      '@typescript-eslint/no-unused-expressions': ['error', { allowShortCircuit: true, allowTernary: true }],
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/prefer-promise-reject-errors': 'error',
    },
  },
  {
    // Tests, chaos/bench harnesses, e2e runs and scripts deal with untyped wire data and mocks.
    files: ['test/**/*.ts', 'chaos/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts', 'e2e/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
  {
    // The session inspector's page script: plain browser JavaScript served as is, outside
    // the TypeScript program (its browser globals are declared in the file).
    files: ['src/inspector/assets/**/*.js'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  // Must be last: switches off stylistic rules that Prettier owns.
  prettierConfig,
);
