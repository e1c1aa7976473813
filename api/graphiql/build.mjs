// Bundle GraphiQL, its explorer plugin and Monaco's workers into ../graphiql/dist (served by
// c360 at /graphiql/assets/). Run by `make install` after `npm ci`; `node build.mjs`.
import * as esbuild from 'esbuild';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const outdir = fileURLToPath(new URL('./dist/', import.meta.url));
rmSync(outdir, { recursive: true, force: true });

const common = {
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  outdir,
  logLevel: 'warning',
  legalComments: 'linked',
  define: { 'process.env.NODE_ENV': '"production"' },
};

await esbuild.build({
  ...common,
  entryPoints: { graphiql: 'src/main.js' },
  // Monaco's codicon font and any image the styles name: files beside the bundle.
  loader: { '.ttf': 'file', '.woff': 'file', '.woff2': 'file', '.svg': 'file', '.png': 'file' },
  assetNames: '[name]-[hash]',
});

await esbuild.build({
  ...common,
  entryPoints: {
    'editor.worker': 'monaco-editor/esm/vs/editor/editor.worker.js',
    'json.worker': 'monaco-editor/esm/vs/language/json/json.worker.js',
    'graphql.worker': 'monaco-graphql/esm/graphql.worker.js',
  },
});
