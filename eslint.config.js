// Lint: the layer rules below are errors with no exemption list. The same table is in
// docs/ARCHITECTURE.md ("Imports point one way").
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const nodeBuiltins = builtinModules.filter((m) => !m.startsWith('_'));
const up = (dir) => ({ regex: `^(\\.\\./)+${dir}(/|$)`, message: `this layer must not import ${dir}/` });
const pkg = (name, why) => ({ regex: `^${name}(/|$)`, message: why });
const NO_NODE = [{ regex: '^node:', message: 'no Node built-ins here (no I/O in this layer)' },
  { regex: `^(${nodeBuiltins.map((m) => m.replace(/[/]/g, '\\/')).join('|')})$`, message: 'no Node built-ins here' }];
const NO_ELECTRON = pkg('electron', 'only app/ imports electron');
const NO_REACT = [pkg('react', 'only renderer/ imports react'), pkg('react-dom', 'only renderer/ imports react-dom'), pkg('zustand', 'only renderer/ imports zustand')];

// Tests (*.test.ts) are their own layer: they may import node:test and the code they test.
const layer = (files, patterns) => ({
  files,
  ignores: ['**/*.test.ts', '**/*.test.tsx'],
  rules: { 'no-restricted-imports': ['error', { patterns }] },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'renderer/dist/**', 'release/**'] },
  {
    files: ['**/*.ts', '**/*.tsx', '**/*.cts'],
    extends: [tseslint.configs.base],
    rules: {
      'no-debugger': 'error',
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
  layer(['protocol/**/*.ts'], [
    { regex: '^(?!zod$)(?!\\./)', message: 'protocol/ imports only zod and its own files' },
  ]),
  layer(['renderer/**/*.ts', 'renderer/**/*.tsx'], [
    ...NO_NODE, NO_ELECTRON, pkg('ws', 'the renderer uses the browser WebSocket'),
    up('master'), up('worker'), up('app'), up('cli'),
  ]),
  layer(['master/**/*.ts'], [NO_ELECTRON, ...NO_REACT, up('worker'), up('app'), up('renderer'), up('cli')]),
  layer(['worker/**/*.ts'], [NO_ELECTRON, ...NO_REACT, up('master'), up('app'), up('renderer'), up('cli')]),
  layer(['cli/**/*.ts'], [NO_ELECTRON, ...NO_REACT, up('app'), up('renderer')]),
  layer(['app/**/*.ts', 'app/**/*.cts'], [...NO_REACT, up('renderer')]),
);
