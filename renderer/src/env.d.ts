// esbuild bundles CSS imported from TypeScript into dist/renderer/app.css.
declare module '*.css';
